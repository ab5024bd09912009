namespace Mesh.Client.Http;

/// <summary>
/// Creates the mesh's outbound request path as an <see cref="HttpMessageHandler"/>, for code that does not get its
/// <see cref="HttpClient"/> from IHttpClientFactory: a reverse proxy (YARP's <c>IHttpForwarder</c> takes an
/// <see cref="HttpMessageInvoker"/>), a hand-built <see cref="HttpClient"/>, a library that asks for a handler.
/// </summary>
/// <remarks>
/// A handler runs exactly what every IHttpClientFactory client of the mesh runs, in the same order: route features
/// (faults, mirrors, rewrites, header changes, metrics, access log) once per request, then the route's timeout and
/// retries, then per attempt the route match, weighted cluster pick, load balancer pick and the endpoint's own
/// connection pool (mTLS with the workload's SVID and the peer's SPIFFE ID checked). Handlers share the mesh's
/// connection pools, circuit breakers and outlier state, so create one per use site and keep it (as with a
/// <see cref="SocketsHttpHandler"/>); creating one is cheap, but it is not a per-request object.
/// Registered by <c>AddServiceMesh()</c>.
/// </remarks>
public interface IMeshOutboundHandlerFactory
{
    /// <summary>Creates a handler that sends requests for mesh hosts through the mesh.</summary>
    /// <param name="options">What to do with requests for hosts that are not mesh services; null for the defaults.</param>
    /// <returns>
    /// A new handler. Disposing it disposes <see cref="MeshOutboundHandlerOptions.NonMeshHandler"/> (as a
    /// <see cref="DelegatingHandler"/> disposes its inner handler), never the mesh's shared connection pools.
    /// </returns>
    HttpMessageHandler CreateHandler(MeshOutboundHandlerOptions? options = null);
}
