namespace Mesh.Xds.Identity;

/// <summary>
/// The control plane's own workload identity: the SVID of its secure port, what clients expect it to present by
/// default, and the identity no bootstrap token may ever name. Spelled once so those three can never drift apart.
/// </summary>
internal static class ControlPlaneIdentity
{
    public const string Namespace = "mesh-system";

    public const string ServiceAccount = "mesh-control-plane";

    /// <summary><c>mesh-system/mesh-control-plane</c>, the form of <c>ControlPlane:Bootstrap:ReservedIdentities</c>.</summary>
    public const string Reserved = Namespace + "/" + ServiceAccount;

    public static WorkloadIdentity In(string trustDomain) => new(trustDomain, Namespace, ServiceAccount);
}
