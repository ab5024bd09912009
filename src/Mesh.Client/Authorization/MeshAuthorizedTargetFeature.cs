namespace Mesh.Client.Authorization;

/// <summary>
/// The request target AuthorizationPolicy allowed, set by <see cref="MeshAuthorizationMiddleware"/> when it must be
/// forwarded in another spelling than Kestrel's path (an escaped slash the listener lets through, normalized as the policy
/// that decided normalized it). A proxy forwards exactly this: looking the policy up again could find another
/// normalization pushed since, and forward a path no policy decided on. Absent: Kestrel's path is the one decided on.
/// </summary>
internal sealed class MeshAuthorizedTargetFeature(string target)
{
    /// <summary>Gets the origin-form target: the normalized path and the raw query.</summary>
    public string Target { get; } = target;
}
