namespace Mesh.Client.Http;

/// <summary>Options of one handler made by <see cref="IMeshOutboundHandlerFactory"/>.</summary>
public sealed class MeshOutboundHandlerOptions
{
    /// <summary>
    /// Sends requests whose host is not a mesh service. Null, the default: such a request fails with a
    /// <see cref="ServiceMeshException"/> naming the host (a <see cref="MeshNotSyncedException"/> before the mesh first
    /// synced), and nothing leaves the mesh. Set it to a <see cref="SocketsHttpHandler"/> to let other hosts through.
    /// Before the first sync, a host that looks like a mesh service (<c>orders</c>, <c>orders.ns.svc…</c>) fails with
    /// <see cref="MeshNotSyncedException"/> either way rather than leaving the mesh.
    /// </summary>
    public HttpMessageHandler? NonMeshHandler { get; set; }
}
