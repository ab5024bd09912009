using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Http;

/// <summary>
/// The routing handler at the bottom of every mesh chain (IHttpClientFactory clients, <see cref="IMeshOutboundHandlerFactory"/>
/// handlers, <c>xds:///</c> channels). Requests to mesh hosts are routed per attempt
/// (host → route → cluster → endpoint) and sent through the endpoint's connection pool with their URI untouched;
/// every other request goes to <see cref="DelegatingHandler.InnerHandler"/>, the client's own primary handler.
/// </summary>
internal sealed partial class MeshHttpHandler : DelegatingHandler
{
    // The endpoint whose attempt failed last, per request. A weak table rather than request.Options: reading Options
    // allocates its dictionary on every request, and this must cost nothing on the success path.
    private static readonly ConditionalWeakTable<HttpRequestMessage, FailedAttempt> FailedEndpoints = [];

    private readonly MeshRouter _router;
    private readonly EndpointConnectionPools _pools;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _controlPlane;

    public MeshHttpHandler(MeshRouter router, EndpointConnectionPools pools, TimeProvider time, ILogger logger, string controlPlane)
    {
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(pools);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentNullException.ThrowIfNull(controlPlane);
        _router = router;
        _pools = pools;
        _time = time;
        _logger = logger;
        _controlPlane = controlPlane;
    }

    /// <summary>
    /// Gets whether the client has an app resilience pipeline whose attempts carry an <see cref="AttemptGroup"/>: then
    /// each attempt goes to an endpoint its siblings did not take. Off, requests never read their options (no allocation).
    /// </summary>
    public bool SpreadsAttempts { get; init; }

    /// <summary>Gets the clock of the attempts' timestamps.</summary>
    internal TimeProvider Time => _time;

    /// <summary>Gets the endpoint a previous attempt of <paramref name="request"/> failed on, if any.</summary>
    internal static MeshEndpoint? GetFailedEndpoint(HttpRequestMessage request) =>
        FailedEndpoints.TryGetValue(request, out var failed) ? failed.Endpoint : null;

    /// <summary>Gets the cluster a previous attempt of <paramref name="request"/> failed in, if any: its retry budget decides the retry.</summary>
    internal static MeshCluster? GetFailedCluster(HttpRequestMessage request) =>
        FailedEndpoints.TryGetValue(request, out var failed) ? failed.Cluster : null;

    /// <summary>
    /// Counts the last attempt of <paramref name="request"/>, which ended in a cancellation the resilience handler found
    /// to be the attempt's own timeout, toward outlier ejection as a 504. Returns the endpoint when that ejected it.
    /// </summary>
    internal static MeshEndpoint? CommitTimeout(HttpRequestMessage request, long now)
    {
        if (!FailedEndpoints.TryGetValue(request, out var failed) || !failed.TimeoutPending)
        {
            return null;
        }

        failed.TimeoutPending = false;
        return failed.Cluster.Outlier.OnError(failed.Endpoint, 504, now) ? failed.Endpoint : null;
    }

    /// <summary>Gets whether <paramref name="exception"/> means the connection could not be made, so the request was not sent.</summary>
    internal static bool IsConnectionFailure(Exception? exception) => exception is HttpRequestException e
        && (e.HttpRequestError == HttpRequestError.ConnectionError
            || e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused });

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        // Sent by handlers of the app (or straight by HttpClient): a measured request's trail travels in its options.
        return TryStartAttempt(request, firstAttemptTo: null, _time.GetTimestamp(), AttemptTrail.Of(request), cancellationToken, out var attempt, out var otherwise, attached: true)
            ? SendStartedAsync(request, attempt, cancellationToken)
            : otherwise.AsTask();
    }

    /// <summary>
    /// Routes one attempt at <paramref name="now"/> (a timestamp of <see cref="Time"/>). True when it went to an endpoint,
    /// was admitted by the cluster's limits and is not traced: the caller sends it through
    /// <see cref="EndpointAttempt.Invoker"/> itself, then reports the outcome (<see cref="Complete"/> or <see cref="Fail"/>)
    /// and always <see cref="End"/>s it. The resilience loop right above does, so that an attempt costs no async method of
    /// its own. False: <paramref name="otherwise"/> is the attempt as <see cref="SendAsync"/> sends it (traced, to a host
    /// outside the mesh, or failed). <paramref name="firstAttemptTo"/> is the service of a request's first attempt, which
    /// the caller just looked up: no endpoint failed yet, so none is avoided. Null for a retry (or an unknown service): the
    /// snapshot is read again and the endpoint that failed last is avoided. <paramref name="trail"/> records where the attempt
    /// went (null: the request is not measured); <paramref name="attached"/> says it came with the request, through handlers
    /// of the app that may run attempts side by side, so each attempt's request is stamped with where it went.
    /// </summary>
    internal bool TryStartAttempt(
        HttpRequestMessage request,
        MeshService? firstAttemptTo,
        long now,
        AttemptTrail? trail,
        CancellationToken cancellationToken,
        out EndpointAttempt attempt,
        out ValueTask<HttpResponseMessage> otherwise,
        bool attached = false)
    {
        attempt = default;
        otherwise = default;
        MeshService? service;
        MeshCluster? cluster;
        MeshEndpoint? endpoint;
        RouteStatus status;
        if (firstAttemptTo is not null)
        {
            service = firstAttemptTo;
            status = _router.Route(service, request, request.RequestUri!, now, _time.TimestampFrequency, avoid: null, out cluster, out endpoint);
        }
        else
        {
            status = _router.Route(request, now, _time.TimestampFrequency, GetFailedEndpoint(request), out service, out cluster, out endpoint);
        }

        var heldRetry = false;
        var attemptNumber = 0;
        if (SpreadsAttempts && status == RouteStatus.Routed && AttemptGroup.Of(request) is { } group)
        {
            // A second attempt of the app's pipeline (its retry or hedge) is a retry to the cluster, as Envoy counts
            // hedged requests: the retry budget and max_retries bound it, so an app's hedging cannot multiply an outage.
            // The app's pipeline retries: its attempt number is how many endpoints the group took before this one.
            attemptNumber = group.Count;
            if (attemptNumber > 0)
            {
                if (!cluster!.Traffic.TryStartRetry(cluster.Limits))
                {
                    var limits = cluster.Limits;
                    otherwise = ValueTask.FromException<HttpResponseMessage>(Overflow(
                        request,
                        cluster,
                        limits.HasRetryBudget ? "retry_budget (DestinationRule retryBudget; the app's retries and hedges count as retries)" : "max_retries (DestinationRule connectionPool.http.maxRetries; the app's retries and hedges count as retries)",
                        cluster.Traffic.ActiveRetries));
                    return false;
                }

                heldRetry = true;
            }

            endpoint = group.Take(cluster!, endpoint!, now, _time.TimestampFrequency);
        }

        // The request's metrics and access log report where its last attempt went (or, attached, the one that answered).
        if (attached)
        {
            trail?.Record(request, cluster, status == RouteStatus.Routed ? endpoint : null);
        }
        else
        {
            trail?.Record(cluster, status == RouteStatus.Routed ? endpoint : null);
        }

        switch (status)
        {
            case RouteStatus.Routed when MeshTracing.IsEnabled:
                otherwise = SendTracedAsync(request, service!, cluster!, endpoint!, heldRetry, attemptNumber, cancellationToken);
                return false;
            case RouteStatus.Routed when TryStart(request, cluster!, endpoint!, heldRetry, out attempt):
                return true;
            case RouteStatus.Routed:
                otherwise = ValueTask.FromException<HttpResponseMessage>(Overflow(request, cluster!, cluster!.Limits.MaxRequestsName, cluster.Limits.MaxRequests));
                return false;
            case RouteStatus.NotMeshHost:
                otherwise = new ValueTask<HttpResponseMessage>(base.SendAsync(request, cancellationToken));
                return false;
            default:
                otherwise = ValueTask.FromException<HttpResponseMessage>(CreateException(status, request, service, cluster));
                return false;
        }
    }

    /// <summary>Synchronous sends reach only hosts outside the mesh, through the client's own primary handler (no sync-over-async).</summary>
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var status = _router.Route(request, _time.GetTimestamp(), _time.TimestampFrequency, avoid: null, out var service, out _, out _);
        return status == RouteStatus.NotMeshHost
            ? base.Send(request, cancellationToken)
            : throw SyncSendNotSupported(request.RequestUri!, service?.Host);
    }

    /// <summary>The error of a synchronous <c>HttpClient.Send</c> to a mesh host.</summary>
    internal static NotSupportedException SyncSendNotSupported(Uri uri, string? service) => new(
        $"HttpClient.Send (synchronous) to mesh host '{uri.Host}'{(service is null ? string.Empty : $" ({service})")} is not supported: "
        + "the mesh's routing, retries, timeouts and connection pools are asynchronous. Use SendAsync.");

    /// <summary>
    /// One attempt inside its span (<see cref="MeshTracing.StartAttempt"/>): the span is the current activity while the
    /// endpoint's SocketsHttpHandler runs, so .NET's System.Net.Http span of this attempt is its child. Started and stopped
    /// in this async method, so the caller's <see cref="System.Diagnostics.Activity.Current"/> is never changed.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpResponseMessage> SendTracedAsync(
        HttpRequestMessage request,
        MeshService service,
        MeshCluster cluster,
        MeshEndpoint endpoint,
        bool heldRetry,
        int attempt,
        CancellationToken cancellationToken)
    {
        // The mesh's own retries (MeshResilienceHandler) left their number and reason on the request; an app pipeline's
        // attempts are numbered by their attempt group (their reason is the app's to know).
        string? retryReason = null;
        if (attempt == 0)
        {
            (attempt, retryReason) = MeshTracing.RetryOf(request);
        }

        var activity = MeshTracing.StartAttempt(request, service, cluster, endpoint, attempt, retryReason);
        if (activity is null)
        {
            return await SendToEndpointAsync(request, cluster, endpoint, heldRetry, cancellationToken).ConfigureAwait(false);
        }

        if (attempt > 0)
        {
            // .NET's DiagnosticsHandler leaves a trace header already on the request alone: the previous attempt's would be
            // sent again, and this attempt's server span would hang under the previous attempt's client span.
            request.Headers.Remove("traceparent");
            request.Headers.Remove("tracestate");
            request.Headers.Remove("Request-Id");
        }

        HttpResponseMessage response;
        try
        {
            response = await SendToEndpointAsync(request, cluster, endpoint, heldRetry, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            MeshTracing.FailAttempt(activity, exception, timedOut: false);
            throw;
        }

        MeshTracing.EndAttempt(activity, response, activity.IsAllDataRequested ? _pools.VerifiedPeer(endpoint, cluster) : null);
        return response;
    }

    /// <summary>An attempt of the traced path: started (or refused by the cluster's limits) and sent.</summary>
    private ValueTask<HttpResponseMessage> SendToEndpointAsync(
        HttpRequestMessage request,
        MeshCluster cluster,
        MeshEndpoint endpoint,
        bool heldRetry,
        CancellationToken cancellationToken) =>
        TryStart(request, cluster, endpoint, heldRetry, out var attempt)
            ? new ValueTask<HttpResponseMessage>(SendStartedAsync(request, attempt, cancellationToken))
            : ValueTask.FromException<HttpResponseMessage>(Overflow(request, cluster, cluster.Limits.MaxRequestsName, cluster.Limits.MaxRequests));

    // A Task, not a pooled ValueTask: DelegatingHandler.SendAsync returns one, and AsTask around a pooled state machine would
    // cost a second completion on each attempt. (The resilience loop right above sends its attempts without this method.)
    private async Task<HttpResponseMessage> SendStartedAsync(HttpRequestMessage request, EndpointAttempt attempt, CancellationToken cancellationToken)
    {
        try
        {
            var response = await attempt.Invoker.SendAsync(request, cancellationToken).ConfigureAwait(false);
            Complete(request, attempt, response);
            return response;
        }
        catch (Exception exception) when (exception is HttpRequestException or OperationCanceledException)
        {
            if (Fail(request, attempt, exception) is { } failure)
            {
                throw failure;
            }

            throw;
        }
        finally
        {
            End(attempt);
        }
    }

    /// <summary>
    /// Admits an attempt to <paramref name="endpoint"/> by its cluster's limits and takes the endpoint's connection pool.
    /// False when the cluster is at Envoy's <c>max_requests</c> (DestinationRule <c>http2MaxRequests</c>): the attempt fails
    /// at once (UO), it never waits, and a retry it held is given back. The count is the cluster's and survives config pushes.
    /// </summary>
    private bool TryStart(HttpRequestMessage request, MeshCluster cluster, MeshEndpoint endpoint, bool heldRetry, out EndpointAttempt attempt)
    {
        var traffic = cluster.Traffic;
        var limits = cluster.Limits;
        if (!traffic.TryStartRequest(limits))
        {
            if (heldRetry)
            {
                traffic.EndRetry();
            }

            attempt = default;
            return false;
        }

        // Only least-request reads the in-flight count; round robin skips two contended atomics per request. Decided
        // once per request, so a policy change mid-flight never unbalances the count.
        var counted = cluster.Policy == LoadBalancingPolicy.LeastRequest;
        if (counted)
        {
            endpoint.OnRequestStarted();
        }

        attempt = new EndpointAttempt(cluster, endpoint, null!, heldRetry, counted);
        try
        {
            if (limits.OneRequestPerConnection)
            {
                request.Headers.ConnectionClose = true;
            }

            attempt = attempt with { Invoker = _pools.Get(endpoint, cluster) };
            return true;
        }
        catch
        {
            End(attempt);
            throw;
        }
    }

    /// <summary>
    /// An answer came back: a 5xx counts toward the endpoint's ejection, anything else clears its error streak. A gRPC call
    /// answered with its status in the headers (trailers-only: the server failed it before any message) counts as that
    /// status's HTTP equivalent, as Envoy's router feeds outlier detection (UNAVAILABLE as a 503, INTERNAL as a 500,
    /// DEADLINE_EXCEEDED as a 504): a gRPC server failing every call is ejected like an HTTP one. A status in the trailers,
    /// after messages, is not counted (nor is it by Envoy).
    /// </summary>
    internal void Complete(HttpRequestMessage request, in EndpointAttempt attempt, HttpResponseMessage response)
    {
        var status = OutlierStatus(request, response);
        if (status >= 500)
        {
            OnFailure(request, attempt.Cluster, attempt.Endpoint, status, exception: null);
        }
        else
        {
            OutlierDetector.OnSuccess(attempt.Endpoint);
        }
    }

    /// <summary>The status outlier detection counts for <paramref name="response"/>: its HTTP status, or for a trailers-only gRPC answer its gRPC status mapped to HTTP.</summary>
    internal static int OutlierStatus(HttpRequestMessage request, HttpResponseMessage response)
    {
        var code = (int)response.StatusCode;
        return code == 200 && OutboundOutcome.IsGrpc(request) && OutboundOutcome.GrpcStatus(response) is >= 0 and var grpcStatus
            ? RouteFeatures.GrpcToHttpStatus(grpcStatus)
            : code;
    }

    /// <summary>
    /// The attempt failed with <paramref name="exception"/> (an <see cref="HttpRequestException"/> or a cancellation): counts
    /// it toward outlier ejection and returns the exception the caller must see instead, if any (a failed mTLS handshake).
    /// </summary>
    internal ServiceMeshException? Fail(HttpRequestMessage request, in EndpointAttempt attempt, Exception exception)
    {
        // As Envoy counts local-origin failures when it does not split them from answers: a failed connection or a
        // reset as a 503, an attempt timeout as a 504. A cancellation here is either the attempt's timeout or the
        // caller giving up, which only the resilience handler outside can tell: it counts a timeout through
        // CommitTimeout, and a caller's cancellation never counts (Envoy ignores downstream resets), so callers that
        // disconnect cannot get healthy endpoints ejected.
        var (cluster, endpoint) = (attempt.Cluster, attempt.Endpoint);
        if (exception is OperationCanceledException)
        {
            FailedEndpoints.AddOrUpdate(request, new FailedAttempt(cluster, endpoint) { TimeoutPending = true });
            Log.AttemptFailed(_logger, cluster.ServiceHost, endpoint.Authority, 0, exception);
        }
        else
        {
            OnFailure(request, cluster, endpoint, 503, exception);
        }

        // Secure naming or certificate failure: the message names the service and both identities. The connection was
        // never made, so the chain carries an IOException: gRPC clients report UNAVAILABLE for it (as for any failed
        // connection, and as on the xds:/// path) rather than INTERNAL.
        return exception.InnerException is Security.MeshTlsException tls
            ? new ServiceMeshException(request.RequestUri?.Host ?? cluster.ServiceHost, tls.Message, new IOException(tls.Message, exception))
            : null;
    }

    /// <summary>Gives back what <see cref="TryStart"/> took: the cluster's request count, the endpoint's, a held retry.</summary>
    internal static void End(in EndpointAttempt attempt)
    {
        if (attempt.Counted)
        {
            attempt.Endpoint.OnRequestCompleted();
        }

        attempt.Cluster.Traffic.EndRequest(attempt.Cluster.Limits.MaxRequests);
        if (attempt.HeldRetry)
        {
            attempt.Cluster.Traffic.EndRetry();
        }
    }

    private void OnFailure(HttpRequestMessage request, MeshCluster cluster, MeshEndpoint endpoint, int statusCode, Exception? exception)
    {
        FailedEndpoints.AddOrUpdate(request, new FailedAttempt(cluster, endpoint));
        if (cluster.Outlier.OnError(endpoint, statusCode, _time.GetTimestamp()))
        {
            Log.EndpointEjected(_logger, endpoint.Authority, cluster.ServiceHost, endpoint.EjectionMultiplier, cluster.Outlier.EjectedCount);
        }

        Log.AttemptFailed(_logger, cluster.ServiceHost, endpoint.Authority, statusCode, exception);
    }

    private UpstreamOverflowException Overflow(HttpRequestMessage request, MeshCluster cluster, string limit, int value)
    {
        var exception = new UpstreamOverflowException(request.RequestUri?.Host ?? cluster.ServiceHost, cluster.Name, limit, value);
        Log.Overflow(_logger, cluster.Name, limit, value);
        return exception;
    }

    private ServiceMeshException CreateException(RouteStatus status, HttpRequestMessage request, MeshService? service, MeshCluster? cluster)
    {
        var uri = request.RequestUri!;

        // Nothing was sent: the inner IOException makes gRPC callers see UNAVAILABLE, as grpc-js reports an unmatched route.
        var unsent = new IOException("The request was not sent.");
        var exception = status switch
        {
            RouteStatus.NotSynced => new MeshNotSyncedException(uri.Host, _controlPlane, unsent),
            RouteStatus.NoEndpoint => new NoHealthyEndpointException(uri.Host, cluster?.Name ?? string.Empty, cluster?.Endpoints.Length ?? 0, unsent),
            _ => (ServiceMeshException)new NoRouteException(uri.Host, uri.AbsolutePath, unsent),
        };
        Log.NotRouted(_logger, uri.Host, status, exception.Message);
        return exception;
    }

    /// <summary>An attempt admitted to an endpoint (<see cref="TryStartAttempt"/>), until it is <see cref="End"/>ed.</summary>
    internal readonly record struct EndpointAttempt(MeshCluster Cluster, MeshEndpoint Endpoint, HttpMessageInvoker Invoker, bool HeldRetry, bool Counted);

    private sealed record FailedAttempt(MeshCluster Cluster, MeshEndpoint Endpoint)
    {
        /// <summary>Gets or sets whether the attempt ended in a cancellation not yet counted (see <see cref="CommitTimeout"/>).</summary>
        public bool TimeoutPending { get; set; }
    }
}
