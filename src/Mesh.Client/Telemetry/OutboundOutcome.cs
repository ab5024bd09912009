using System.Net.Http.Headers;
using System.Net.Sockets;

namespace Mesh.Client.Telemetry;

/// <summary>The <c>response_code</c>, <c>response_flags</c> and gRPC status of an outbound request, as Envoy would report them.</summary>
internal static class OutboundOutcome
{
    /// <summary>
    /// What Envoy would have answered a request that failed with <paramref name="exception"/>: its local reply's status
    /// (404 for no route, 503 for no endpoint, overflow or a failed connection, 504 for a timeout) and flag; 0 when the
    /// caller gave up (Envoy reports 0 when no response began).
    /// </summary>
    public static (int Code, ResponseFlags Flags) Classify(Exception exception, CancellationToken callerToken)
    {
        switch (exception)
        {
            case OperationCanceledException when callerToken.IsCancellationRequested:
                return (0, ResponseFlags.DownstreamConnectionTermination);
            case TaskCanceledException { InnerException: TimeoutException }:
                // The resilience handler's route (or Mesh:Resilience) timeout, as Envoy's route timeout: 504 UT.
                return (504, ResponseFlags.UpstreamRequestTimeout);
            case NoRouteException:
                return (404, ResponseFlags.NoRouteFound);
            case NoHealthyEndpointException:
                return (503, ResponseFlags.NoHealthyUpstream);
            case MeshNotSyncedException:
                return (503, ResponseFlags.NoClusterFound);
            case UpstreamOverflowException or CircuitOpenException:
                return (503, ResponseFlags.UpstreamOverflow);
            case ServiceMeshException { InnerException: IOException } when exception.GetType() == typeof(ServiceMeshException):
                // The endpoint's certificate failed secure naming or validation: the connection was never made.
                return (503, ResponseFlags.UpstreamConnectionFailure);
            case HttpProtocolException:
                return (503, ResponseFlags.UpstreamRemoteReset);
            case HttpRequestException http:
                return http.HttpRequestError switch
                {
                    HttpRequestError.ConnectionError or HttpRequestError.SecureConnectionError => (503, ResponseFlags.UpstreamConnectionFailure),
                    HttpRequestError.NameResolutionError => (503, ResponseFlags.DnsResolutionFailed),
                    HttpRequestError.ResponseEnded => (503, ResponseFlags.UpstreamConnectionTermination),
                    HttpRequestError.HttpProtocolError when http.InnerException is HttpProtocolException => (503, ResponseFlags.UpstreamRemoteReset),
                    HttpRequestError.HttpProtocolError or HttpRequestError.InvalidResponse => (503, ResponseFlags.UpstreamProtocolError),
                    _ when http.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused } => (503, ResponseFlags.UpstreamConnectionFailure),
                    _ => (503, ResponseFlags.None),
                };
            default:
                return (0, ResponseFlags.None);
        }
    }

    /// <summary>Whether the request is a gRPC call (Istio's <c>request_protocol</c> is decided by the request's content type).</summary>
    public static bool IsGrpc(HttpRequestMessage request) =>
        GrpcContentType.Is(request.Content?.Headers.ContentType?.MediaType);

    /// <summary>
    /// The gRPC status in the response headers (a trailers-only response: a local reply or an immediate error), else -1:
    /// the status of a call that streams a body arrives in its trailers after the handler chain returned.
    /// </summary>
    public static int GrpcStatus(HttpResponseMessage response) =>
        response.Headers.NonValidated.TryGetValues("grpc-status", out var values) && ParseSingle(values) is >= 0 and <= 16 and var status ? (int)status : -1;

    /// <summary>
    /// The gRPC status of a call whose body has ended: in the response headers (trailers-only) or, as Envoy reads it,
    /// in the trailers HttpClient has read by the body's end; -1 when neither has one (a call cut short).
    /// </summary>
    public static int GrpcStatusAtEnd(HttpResponseMessage response)
    {
        var status = GrpcStatus(response);
        return status >= 0 ? status
            : response.TrailingHeaders.NonValidated.TryGetValues("grpc-status", out var values) && ParseSingle(values) is >= 0 and <= 16 and var trailer ? (int)trailer
            : -1;
    }

    /// <summary>
    /// The response body's length: its Content-Length as received, read without parsing it into the header store (no
    /// allocation); else the length of a body the mesh made (a fault abort's, a direct response's); 0 for a streamed
    /// body of unknown length (chunked). A gRPC body is counted as it is read instead (<see cref="MeteredGrpcResponseContent"/>).
    /// </summary>
    public static long ResponseBytes(HttpResponseMessage response) =>
        response.Content.Headers.NonValidated.TryGetValues("Content-Length", out var values) ? Math.Max(ParseSingle(values), 0)
        : response.Content is ByteArrayContent ? response.Content.Headers.ContentLength ?? 0
        : 0;

    /// <summary>The request body's length (HttpClient computed it when sending a buffered body); 0 without a body or when streamed.</summary>
    public static long RequestBytes(HttpRequestMessage request) => request.Content?.Headers.ContentLength ?? 0;

    private static long ParseSingle(HeaderStringValues values)
    {
        foreach (var value in values)
        {
            return long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed) ? parsed : -1;
        }

        return -1;
    }
}
