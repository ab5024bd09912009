using Mesh.Client.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Kestrel endpoint options of the service mesh (in ASP.NET Core's namespace for <see cref="ListenOptions"/> extensions, as <c>UseHttps</c>).</summary>
public static class ServiceMeshListenOptionsExtensions
{
    /// <summary>
    /// Keeps this endpoint out of the service mesh, as Istio's <c>excludeInboundPorts</c>: connections are not mesh mTLS
    /// (whatever the PeerAuthentication mode), requests are not authorized by AuthorizationPolicy nor counted in the
    /// destination metrics, and the port is not registered as an endpoint of the workload's service. For listeners that
    /// only local processes reach (a sidecar's outbound proxy port, a metrics or admin port bound to 127.0.0.1): anyone
    /// who can connect to an excluded endpoint reaches the app without the mesh's checks.
    /// Without <c>AddServiceMesh()</c> it does nothing.
    /// </summary>
    /// <param name="listen">The endpoint, in <c>Listen(…, listen => listen.ExcludeFromServiceMesh())</c>.</param>
    /// <returns>The endpoint options, for chaining.</returns>
    public static ListenOptions ExcludeFromServiceMesh(this ListenOptions listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        listen.ApplicationServices?.GetService<MeshExcludedListeners>()?.Add(listen);
        return listen;
    }
}
