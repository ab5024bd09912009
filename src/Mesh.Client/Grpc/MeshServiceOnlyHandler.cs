using Mesh.Client.Routing;

namespace Mesh.Client.Grpc;

/// <summary>
/// The fallback under <see cref="Http.MeshHttpHandler"/> for <c>xds:///</c> clients: their target names a mesh service,
/// so a call the mesh cannot route as one (the service is unknown, or the mesh is not synced) fails here with UNAVAILABLE
/// naming the service, rather than leaving the mesh through DNS.
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
