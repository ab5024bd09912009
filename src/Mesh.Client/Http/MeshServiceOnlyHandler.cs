using Mesh.Client.Routing;

namespace Mesh.Client.Http;

/// <summary>
/// The fallback under <see cref="MeshHttpHandler"/> where nothing may leave the mesh (<c>xds:///</c> channels, and
/// <see cref="IMeshOutboundHandlerFactory"/> handlers without a <see cref="MeshOutboundHandlerOptions.NonMeshHandler"/>):
/// a request the mesh cannot route as one (the host is no mesh service, or the mesh is not synced) fails here naming the
/// host, rather than leaving the mesh through DNS. The inner <see cref="IOException"/> makes gRPC report UNAVAILABLE.
/// </summary>
internal sealed class MeshServiceOnlyHandler(MeshRouter router, string controlPlane) : HttpMessageHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var host = request.RequestUri?.IdnHost ?? string.Empty;
        // Nothing was sent: the inner IOException makes gRPC report UNAVAILABLE rather than INTERNAL.
        var unsent = new IOException("The call was not sent.");
        ServiceMeshException exception = router.Snapshot.IsSynced
            ? new ServiceMeshException(host, $"Mesh service '{host}' is unknown to the control plane. Check its ServiceEntry or the control plane's /debug/config_dump.", unsent)
            : new MeshNotSyncedException(host, controlPlane, unsent);
        return Task.FromException<HttpResponseMessage>(exception);
    }
}
