using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.Client.Security;

/// <summary>
/// The Kestrel endpoint a connection came in on, set on every connection by the mesh's connection middleware (secure
/// mode): the one answer to "which endpoint is this", read by the request path (is it excluded from the mesh?) and by
/// hosts with several endpoints (the sidecar). A port number is not an answer: two endpoints may share one on different
/// addresses. One instance per endpoint; <see cref="Excluded"/> is read when asked, because <c>ExcludeFromServiceMesh()</c>
/// marks an endpoint after the mesh's endpoint defaults added the middleware.
/// </summary>
internal sealed class MeshEndpointFeature(ListenOptions endpoint, MeshExcludedListeners excluded)
{
    public ListenOptions Endpoint { get; } = endpoint;

    /// <summary>Gets whether the endpoint is excluded from the mesh (<c>ExcludeFromServiceMesh()</c>).</summary>
    public bool Excluded => excluded.Contains(Endpoint);
}
