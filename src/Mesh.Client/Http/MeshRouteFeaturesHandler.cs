using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Http;

/// <summary>
/// The outermost handler of mesh-enabled clients: what a route does besides picking a cluster, once per request and
/// before retries (as Envoy's fault filter and router do): a redirect or direct response answers at once; a fault
/// delays, then aborts, a share of requests; the path, authority and headers are rewritten; a share of requests is
/// copied to mirror clusters, fire-and-forget; response headers are mutated. A snapshot without any such route costs a
/// field read and a branch per request.
/// </summary>
/// <remarks>
/// Being outermost, it also records Istio's request metrics for reporter <c>source</c>, once per request whatever the
/// retries (<see cref="IstioRequestMetrics"/>): only while something listens, else it costs one check. An HTTP request
/// is recorded when its response headers arrive; a gRPC call that streams a body when that body ends, with the status
/// from its trailers and its message counts (<see cref="MeteredGrpcResponseContent"/>), as Istio records at stream end.
/// <para>
/// Mirrors: the caller never waits for one; at most <see cref="MaxMirrorsInFlight"/> run at once per handler (more are
/// dropped); each counts against the mirror cluster's <c>max_requests</c> as any request to it (over it, the mirror is
/// dropped, as Envoy's shadow overflows); each is bounded by <see cref="MirrorTimeout"/>; its response is discarded and
/// its failure only logged. Only a request whose body can be read twice is mirrored: no body, or a buffered one
/// (ByteArrayContent, StringContent, FormUrlEncodedContent, ReadOnlyMemoryContent) of at most
/// <see cref="MaxMirrorBodyBytes"/>. A streamed body (StreamContent, gRPC calls, JsonContent) is sent once to the
/// caller's destination and not mirrored: buffering it would change when the caller's request is sent.
/// </para>
/// </remarks>
internal sealed partial class MeshRouteFeaturesHandler : DelegatingHandler
{
    /// <summary>The most mirrored requests one handler keeps in flight; a mirror beyond it is dropped.</summary>
    public const int MaxMirrorsInFlight = 64;

    /// <summary>
    /// The largest request body a mirror copies (1 MiB, Envoy's default buffer limit per request): Envoy shadows only
    /// what it buffered and gives up the shadow of a larger request; so does this client, and the caller's request goes on.
    /// </summary>
    public const int MaxMirrorBodyBytes = 1024 * 1024;

    /// <summary>How long a mirrored request may take before it is cancelled.</summary>
    public static readonly TimeSpan MirrorTimeout = TimeSpan.FromSeconds(30);

    // The route a request was matched to before its path or headers were rewritten: the inner handlers route on it.
    private static readonly ConditionalWeakTable<HttpRequestMessage, Pin> Pins = [];

    // The trails of measured requests whose attempts the resilience loop sends itself: reused, so measuring allocates nothing.
    private static readonly Microsoft.Extensions.ObjectPool.ObjectPool<AttemptTrail> Trails =
        new Microsoft.Extensions.ObjectPool.DefaultObjectPool<AttemptTrail>(new Microsoft.Extensions.ObjectPool.DefaultPooledObjectPolicy<AttemptTrail>(), 1024);

    // Responses a fault abort answered (the FI flag of the request metrics).
    private static readonly ConditionalWeakTable<HttpResponseMessage, object> Aborts = [];
    private static readonly object Marker = new();

    private readonly MeshRouter _router;
    private readonly EndpointConnectionPools _pools;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Func<int, int> _random;
    private readonly IstioRequestMetrics? _metrics;
    private readonly MeshAccessLog? _accessLog;
    private int _mirrorsInFlight;

    public MeshRouteFeaturesHandler(MeshRouter router, EndpointConnectionPools pools, TimeProvider time, ILogger logger, Func<int, int>? random = null, IstioRequestMetrics? metrics = null, MeshAccessLog? accessLog = null)
    {
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(pools);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _router = router;
        _pools = pools;
        _time = time;
        _logger = logger;
        _random = random ?? Random.Shared.Next;
        _metrics = metrics;
        _accessLog = accessLog;
    }

    /// <summary>Gets the number of mirrored requests in flight (for tests and diagnostics).</summary>
    public int MirrorsInFlight => Volatile.Read(ref _mirrorsInFlight);

    /// <summary>The route <paramref name="request"/> was pinned to, if it was pinned for this very service.</summary>
    internal static MeshRoute? PinnedRoute(HttpRequestMessage request, MeshService service) =>
        Pins.TryGetValue(request, out var pin) && ReferenceEquals(pin.Service, service) ? pin.Route : null;

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);

        // On demand, the first call to a host the snapshot does not know subscribes and waits for it here, outermost, so
        // that this call too gets its route's features and resilience. Wildcard mode pays one null check.
        if (_router.OnDemand is { } onDemand
            && request.RequestUri is { IsAbsoluteUri: true } target
            && !_router.Snapshot.TryGetService(target.IdnHost, target.Port, target.IsDefaultPort, out _)
            && onDemand.Accepts(target))
        {
            return SendAfterSubscriptionAsync(onDemand, target, request, cancellationToken);
        }

        return SendKnownAsync(request, cancellationToken);
    }

    private async Task<HttpResponseMessage> SendAfterSubscriptionAsync(Xds.OnDemandSubscriptions onDemand, Uri target, HttpRequestMessage request, CancellationToken cancellationToken)
    {
        await onDemand.WaitAsync(target, cancellationToken).ConfigureAwait(false);
        return await SendKnownAsync(request, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The request once its host is known or known not to be a mesh service.</summary>
    private Task<HttpResponseMessage> SendKnownAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var snapshot = _router.Snapshot;
        var metrics = _metrics is { Enabled: true } ? _metrics : null;
        var accessLog = _accessLog is { Enabled: true } ? _accessLog : null;
        if ((metrics is not null || accessLog is not null)
            && request.RequestUri is { IsAbsoluteUri: true } uri
            && snapshot.TryGetService(uri.IdnHost, uri.Port, uri.IsDefaultPort, out var measured))
        {
            // The access log follows a request only when sampled (or when failures are always logged).
            var record = accessLog?.BeginOutbound(request, measured);
            if (metrics is not null || record is not null)
            {
                return SendMeasuredAsync(metrics, record, snapshot, measured, request, cancellationToken).AsTask();
            }
        }

        if (!snapshot.HasRouteFeatures)
        {
            return base.SendAsync(request, cancellationToken);
        }

        return Match(snapshot, request) is ({ } service, { } route)
            ? SendWithFeaturesAsync(service, route, route.Features!, DelayHits(route.Features!), request, trail: null, cancellationToken)
            : base.SendAsync(request, cancellationToken);
    }

    /// <summary>
    /// A request to a mesh service while request metrics are listened to or the access log follows it: sent as
    /// <see cref="SendAsync"/> would, then recorded and logged once with the outcome the caller sees (the last attempt's,
    /// after any retries).
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<HttpResponseMessage> SendMeasuredAsync(
        IstioRequestMetrics? metrics,
        OutboundAccessRecord? record,
        MeshSnapshot snapshot,
        MeshService service,
        HttpRequestMessage request,
        CancellationToken cancellationToken)
    {
        var start = _time.GetTimestamp();
        var grpc = OutboundOutcome.IsGrpc(request);
        var flags = ResponseFlags.None;

        // Where the attempts went: the destination workload the metrics report is the last attempt's endpoint's.
        var trail = RentTrail(record, measured: metrics is not null);

        // A gRPC body is counted as it is written (bytes and messages), whatever the retries below send of it.
        var sent = grpc && request.Content is { } body ? new MeteredGrpcRequestContent(body) : null;
        if (sent is not null)
        {
            request.Content = sent;
        }

        try
        {
            HttpResponseMessage response;
            if (snapshot.HasRouteFeatures && service.HasRouteFeatures && MeshRouter.MatchRoute(service, request, request.RequestUri!) is { Features: { } features } route)
            {
                var delayed = DelayHits(features);
                flags |= delayed ? ResponseFlags.DelayInjected : ResponseFlags.None;
                response = await SendWithFeaturesAsync(service, route, features, delayed, request, trail, cancellationToken).ConfigureAwait(false);
                if (Aborts.TryGetValue(response, out _))
                {
                    flags |= ResponseFlags.FaultInjected;
                }
            }
            else
            {
                response = await SendInnerAsync(request, trail, cancellationToken).ConfigureAwait(false);
            }

            if (trail is not null && !SendsAttemptsItself)
            {
                // The app's handlers sent the attempts (its hedging may run several at once): the answer names its endpoint.
                trail.Settle(response);
            }

            // Whatever the code: a route may retry 409 (retriable-4xx) or listed codes such as 429, and Envoy flags URX (or
            // UO for a retry its budget refused) on any answer its retries ended on.
            var code = (int)response.StatusCode;
            flags |= MeshResilienceHandler.RetryOutcome(request);

            var grpcStatus = grpc ? OutboundOutcome.GrpcStatus(response) : -1;
            var upstream = VerifiedPeer(trail);
            if (grpc && grpcStatus < 0 && code == 200)
            {
                // Its status comes in the trailers, after the messages: recorded (and logged) when the body ends, as Istio
                // records at the stream's end (the only wrapper allocated per call, and only while something listens).
                var access = record is null ? null : new OutboundAccess(_accessLog!, record, request, upstream);
                response.Content = new MeteredGrpcResponseContent(response, metrics, service, trail?.Endpoint?.Workload, upstream, sent, _time, start, flags, access);
                return response;
            }

            // HTTP (and a gRPC answer without a streamed body) is recorded at its headers, allocation-free; the body's end
            // would cost a wrapper per request and time the caller's reading as much as the call (src/Mesh.Client/README.md).
            var elapsed = _time.GetElapsedTime(start).TotalMilliseconds;
            var counted = sent?.Counted;
            var requestBytes = counted?.Bytes ?? OutboundOutcome.RequestBytes(request);
            var responseBytes = OutboundOutcome.ResponseBytes(response);
            metrics?.RecordOutbound(
                service,
                trail?.Endpoint?.Workload,
                upstream,
                grpc,
                code,
                grpcStatus,
                flags,
                elapsed,
                requestBytes,
                responseBytes,
                counted?.Messages ?? 0);
            if (record is not null)
            {
                _accessLog!.LogOutbound(record, request, response, null, grpc, code, grpcStatus, flags, elapsed, requestBytes, responseBytes, upstream);
            }

            return response;
        }
        catch (Exception exception)
        {
            var (code, failure) = OutboundOutcome.Classify(exception, cancellationToken);
            flags |= failure;
            flags |= MeshResilienceHandler.RetryOutcome(request);

            // No response: no gRPC status from the server either; the label maps the code as Envoy's getGrpcStatus does.
            var elapsed = _time.GetElapsedTime(start).TotalMilliseconds;
            var counted = sent?.Counted;
            var requestBytes = counted?.Bytes ?? OutboundOutcome.RequestBytes(request);
            // Principals only for a failure on an established connection: a connection that failed (or was never made) had
            // no TLS, whatever the pool's earlier handshake verified.
            var upstream = (failure & (ResponseFlags.UpstreamConnectionTermination | ResponseFlags.UpstreamRemoteReset | ResponseFlags.UpstreamProtocolError)) != 0
                ? VerifiedPeer(trail)
                : null;
            metrics?.RecordOutbound(service, trail?.Endpoint?.Workload, upstream, grpc, code, -1, flags, elapsed, requestBytes, 0, counted?.Messages ?? 0);
            if (record is not null)
            {
                _accessLog!.LogOutbound(record, request, null, exception, grpc, code, -1, flags, elapsed, requestBytes, 0, upstream);
            }

            throw;
        }
        finally
        {
            ReturnTrail(trail, record);
        }
    }

    /// <summary>
    /// The SPIFFE ID the mTLS handshake with the last attempt's endpoint verified (<c>destination_principal</c>); null for a
    /// plaintext cluster without a lookup, so that plaintext requests pay nothing for it.
    /// </summary>
    private string? VerifiedPeer(AttemptTrail? trail) =>
        trail is { Endpoint: { } endpoint, Cluster: { Tls: not null } cluster } ? _pools.VerifiedPeer(endpoint, cluster) : null;

    /// <summary>Whether a fault delay applies to this request (decided before sending, so the caller knows it was delayed).</summary>
    private bool DelayHits(RouteFeatures features) => features.Delay is { } delay && !features.AnswersLocally && delay.Share.Hit(_random);

    /// <summary>Synchronous sends pass through as before; a route with features (delays, mirrors) is applied asynchronously only.</summary>
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var snapshot = _router.Snapshot;
        if (snapshot.HasRouteFeatures && Match(snapshot, request) is ({ } service, _))
        {
            throw new NotSupportedException($"The route of mesh service '{service.Host}' injects faults, mirrors or rewrites requests, which this client applies on SendAsync only.");
        }

        return base.Send(request, cancellationToken);
    }

    private static (MeshService? Service, MeshRoute? Route) Match(MeshSnapshot snapshot, HttpRequestMessage request)
    {
        var uri = request.RequestUri;
        return uri is { IsAbsoluteUri: true }
            && snapshot.TryGetService(uri.IdnHost, uri.Port, uri.IsDefaultPort, out var service)
            && service.HasRouteFeatures
            && MeshRouter.MatchRoute(service, request, uri) is { Features: not null } route
            ? (service, route)
            : (null, null);
    }

    private async Task<HttpResponseMessage> SendWithFeaturesAsync(
        MeshService service,
        MeshRoute route,
        RouteFeatures features,
        bool delayed,
        HttpRequestMessage request,
        AttemptTrail? trail,
        CancellationToken cancellationToken)
    {
        if (features.AnswersLocally)
        {
            var local = features.Redirect is { } redirect ? Redirect(request, route, redirect) : Direct(request, features.DirectResponse!);
            features.ResponseHeaders?.Apply(local.Headers, local.Content.Headers);
            return local;
        }

        if (delayed && features.Delay is { } delay)
        {
            Log.FaultDelayed(_logger, service.Host, delay.Delay);
            await Task.Delay(delay.Delay, _time, cancellationToken).ConfigureAwait(false);
        }

        if (features.Abort is { } abort && abort.Share.Hit(_random))
        {
            Log.FaultAborted(_logger, service.Host, abort.HttpStatus);
            var aborted = Aborted(request, abort);
            if (_metrics is not null)
            {
                // Marks the response as the fault filter's own (FI); only aborted responses are added.
                Aborts.AddOrUpdate(aborted, Marker);
            }

            return aborted;
        }

        if (features.MutatesRequest)
        {
            Pins.AddOrUpdate(request, new Pin(service, route));
            Mutate(request, route, features);
        }

        foreach (var mirror in features.Mirrors)
        {
            if (mirror.Share.Hit(_random))
            {
                StartMirror(request, mirror, service);
            }
        }

        var response = await SendInnerAsync(request, trail, cancellationToken).ConfigureAwait(false);
        features.ResponseHeaders?.Apply(response.Headers, response.Content.Headers);
        return response;
    }

    /// <summary>The request down the chain; with a trail, straight into the mesh's resilience loop, which records each attempt in it.</summary>
    private Task<HttpResponseMessage> SendInnerAsync(HttpRequestMessage request, AttemptTrail? trail, CancellationToken cancellationToken) =>
        trail is not null && InnerHandler is MeshResilienceHandler resilience
            ? resilience.SendAsync(request, trail, cancellationToken)
            : base.SendAsync(request, cancellationToken);

    /// <summary>
    /// The trail a measured request carries: the access log's record when it follows the request; else one from the pool
    /// when the resilience loop sends its attempts itself (nothing else can hold it once the response came back); else a
    /// new one, which the loop attaches to the request for the handlers of the app that run before the routing handler.
    /// </summary>
    private AttemptTrail? RentTrail(OutboundAccessRecord? record, bool measured) =>
        record ?? (!measured ? null : SendsAttemptsItself ? Trails.Get() : new AttemptTrail());

    /// <summary>Gives a pooled trail back; an attached one is left to the GC (a hedged attempt of the app's may still write to it).</summary>
    private void ReturnTrail(AttemptTrail? trail, OutboundAccessRecord? record)
    {
        if (trail is not null && trail != record && SendsAttemptsItself)
        {
            trail.Reset();
            Trails.Return(trail);
        }
    }

    /// <summary>Whether the mesh's resilience loop right below sends each attempt to the routing handler itself (no handler of the app's between).</summary>
    private bool SendsAttemptsItself => InnerHandler is MeshResilienceHandler { InnerHandler: MeshHttpHandler };

    private static void Mutate(HttpRequestMessage request, MeshRoute route, RouteFeatures features)
    {
        var uri = request.RequestUri!;
        if (features.PrefixRewrite is not null || features.RegexRewrite is not null)
        {
            // Built from the scheme and authority, never resolved as a relative reference: a rewritten path starting with
            // "//" (prefix /api rewritten to / on /api//evil.example/x) must stay a path, as Envoy sends it, not a new host.
            var rewritten = features.RewritePath(route, uri.AbsolutePath, uri.Query);
            request.RequestUri = new Uri($"{uri.Scheme}://{uri.Authority}{(rewritten.StartsWith('/') ? string.Empty : "/")}{rewritten}", UriKind.Absolute);
        }

        if (features.HostRewrite is { } host)
        {
            request.Headers.Host = host;
        }

        features.RequestHeaders?.Apply(request.Headers, request.Content?.Headers);
    }

    private void StartMirror(HttpRequestMessage request, RouteMirror mirror, MeshService service)
    {
        // A buffered gRPC body under the metering wrapper is still buffered (the wrapper reads it again on each send).
        if (MeteredGrpcRequestContent.Unwrap(request.Content) is not (null or ByteArrayContent or ReadOnlyMemoryContent))
        {
            Log.MirrorSkipped(_logger, service.Host, mirror.Cluster.Name, "the request body is streamed and cannot be sent twice");
            return;
        }

        // Buffered contents know their length; an unknown one is not copied either.
        if (request.Content is { } content && content.Headers.ContentLength is not <= MaxMirrorBodyBytes)
        {
            Log.MirrorSkipped(_logger, service.Host, mirror.Cluster.Name, $"the request body is larger than {MaxMirrorBodyBytes} bytes");
            return;
        }

        if (Interlocked.Increment(ref _mirrorsInFlight) > MaxMirrorsInFlight)
        {
            Interlocked.Decrement(ref _mirrorsInFlight);
            Log.MirrorSkipped(_logger, service.Host, mirror.Cluster.Name, $"{MaxMirrorsInFlight} mirrored requests are already in flight");
            return;
        }

        // The mirror cluster's max_requests, as for every request to it: the mirror overflows, never the caller's request.
        var cluster = mirror.Cluster;
        if (!cluster.Traffic.TryStartRequest(cluster.Limits.MaxRequests))
        {
            Interlocked.Decrement(ref _mirrorsInFlight);
            Log.MirrorSkipped(_logger, service.Host, cluster.Name, $"{cluster.Limits.MaxRequestsName} {cluster.Limits.MaxRequests} reached (upstream overflow)");
            return;
        }

        HttpRequestMessage copy;
        try
        {
            copy = Copy(request);
        }
        catch (Exception exception) when (exception is InvalidOperationException or HttpRequestException or IOException)
        {
            cluster.Traffic.EndRequest(cluster.Limits.MaxRequests);
            Interlocked.Decrement(ref _mirrorsInFlight);
            Log.MirrorFailed(_logger, service.Host, cluster.Name, exception);
            return;
        }

        // Not awaited: the caller never waits for a mirror, and nothing of it reaches the caller.
        _ = SendMirrorAsync(copy, cluster, service.Host);
    }

    private async Task SendMirrorAsync(HttpRequestMessage copy, MeshCluster cluster, string serviceHost)
    {
        // Leave the caller's thread at once: the mirror's connection set-up must not delay the caller's own request.
        await Task.Yield();
        using var timeout = new CancellationTokenSource(MirrorTimeout, _time);
        try
        {
            var endpoint = cluster.PickEndpoint(_time.GetTimestamp(), _time.TimestampFrequency, avoid: null);
            if (endpoint is null)
            {
                Log.MirrorSkipped(_logger, serviceHost, cluster.Name, "the mirror cluster has no endpoint");
                return;
            }

            if (cluster.Limits.OneRequestPerConnection)
            {
                copy.Headers.ConnectionClose = true;
            }

            using var response = await _pools.Get(endpoint, cluster).SendAsync(copy, timeout.Token).ConfigureAwait(false);
            Log.Mirrored(_logger, serviceHost, cluster.Name, (int)response.StatusCode);
        }
        catch (Exception exception)
        {
            // A mirror's failure is the mirror's business only.
            Log.MirrorFailed(_logger, serviceHost, cluster.Name, exception);
        }
        finally
        {
            copy.Dispose();
            cluster.Traffic.EndRequest(cluster.Limits.MaxRequests);
            Interlocked.Decrement(ref _mirrorsInFlight);
        }
    }

    /// <summary>A copy of the (already rewritten) request; Istio ≥ 1.28 sends it with the same authority (no "-shadow").</summary>
    private static HttpRequestMessage Copy(HttpRequestMessage request)
    {
        var copy = new HttpRequestMessage(request.Method, request.RequestUri) { Version = request.Version, VersionPolicy = request.VersionPolicy };
        foreach (var (name, values) in request.Headers.NonValidated)
        {
            foreach (var value in values)
            {
                copy.Headers.TryAddWithoutValidation(name, value);
            }
        }

        if (request.Content is { } content)
        {
            // Buffered contents serialize from their buffer: reading them does not consume the caller's body.
            using var buffer = new MemoryStream();
            content.CopyTo(buffer, context: null, CancellationToken.None);
            if (buffer.Length > MaxMirrorBodyBytes)
            {
                // A Content-Length header set by hand below the body's size: the cap holds for what is really there.
                throw new InvalidOperationException($"The request body is larger than {MaxMirrorBodyBytes} bytes.");
            }

            copy.Content = new ByteArrayContent(buffer.ToArray());
            foreach (var (name, values) in content.Headers.NonValidated)
            {
                foreach (var value in values)
                {
                    copy.Content.Headers.TryAddWithoutValidation(name, value);
                }
            }
        }

        return copy;
    }

    private static HttpResponseMessage Aborted(HttpRequestMessage request, FaultAbort abort)
    {
        var response = new HttpResponseMessage((HttpStatusCode)abort.HttpStatus) { RequestMessage = request, Version = request.Version };
        if (abort.GrpcStatus is { } grpcStatus && OutboundOutcome.IsGrpc(request))
        {
            response.Content = new ByteArrayContent([]);
            // A gRPC trailers-only response: HTTP 200, the status in the headers (what Envoy's fault filter sends a gRPC call).
            response.StatusCode = HttpStatusCode.OK;
            response.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
            response.Headers.TryAddWithoutValidation("grpc-status", grpcStatus.ToString(System.Globalization.CultureInfo.InvariantCulture));
            response.Headers.TryAddWithoutValidation("grpc-message", "fault filter abort");
            return response;
        }

        response.Content = new StringContent("fault filter abort");
        return response;
    }

    private static HttpResponseMessage Direct(HttpRequestMessage request, RouteDirectResponse direct)
    {
        var response = new HttpResponseMessage(direct.Status) { RequestMessage = request, Version = request.Version, Content = new ByteArrayContent(direct.Body ?? []) };
        if (direct.Body is { Length: > 0 })
        {
            // As Envoy's direct_response with a body.
            response.Content.Headers.ContentType = new MediaTypeHeaderValue("text/plain");
        }

        return response;
    }

    /// <summary>
    /// A 3xx with Location: the request's URL with the redirect's scheme, host, port, path and query, as Envoy's
    /// Http::Utility::newUri builds it: a host_redirect replaces the Host with its port (only port_redirect adds one); without
    /// it the request's Host keeps its port, dropped only for a port_redirect or when the scheme changes and the port is the
    /// old scheme's default (processRequestHost).
    /// </summary>
    private static HttpResponseMessage Redirect(HttpRequestMessage request, MeshRoute route, RouteRedirect redirect)
    {
        var uri = request.RequestUri!;
        var scheme = redirect.Scheme ?? uri.Scheme;
        var port = redirect.Port > 0 ? ":" + redirect.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) : string.Empty;
        var host = redirect.Host is { } redirected
            ? (Uri.CheckHostName(redirected) == UriHostNameType.IPv6 && !redirected.StartsWith('[') ? $"[{redirected}]" : redirected)
            : RequestHost(HeaderMatch.Authority(request, uri), uri.Scheme, scheme, port);
        string path;
        var query = redirect.StripQuery ? string.Empty : uri.Query;
        if (redirect.PathRedirect is { } target)
        {
            var mark = target.IndexOf('?', StringComparison.Ordinal);
            path = mark < 0 ? target : target[..mark];
            if (mark >= 0)
            {
                // A query in path_redirect replaces the request's.
                query = target[mark..];
            }
        }
        else if (redirect.PrefixRewrite is { } prefix)
        {
            var matched = route.Prefix is { } routePrefix ? Math.Min(routePrefix.Length, uri.AbsolutePath.Length) : uri.AbsolutePath.Length;
            path = prefix + uri.AbsolutePath[matched..];
        }
        else
        {
            path = uri.AbsolutePath;
        }

        var rest = $"{port}{path}{(query.Length > 1 ? query : string.Empty)}";

        // A Host header set without validation that makes no URI: the request URI's host instead, rather than throwing. Never
        // for a host_redirect (the decoder took only a host name or address): that would send the caller back to this service.
        if (!Uri.TryCreate($"{scheme}://{host}{rest}", UriKind.Absolute, out var location))
        {
            if (redirect.Host is not null)
            {
                throw new InvalidOperationException($"the route's redirect to {host} makes no URI: {scheme}://{host}{rest}");
            }

            location = new Uri($"{scheme}://{RequestHost(uri.IsDefaultPort ? uri.IdnHost : uri.Authority, uri.Scheme, scheme, port)}{rest}", UriKind.Absolute);
        }

        var response = new HttpResponseMessage(redirect.Status) { RequestMessage = request, Version = request.Version, Content = new ByteArrayContent([]) };
        response.Headers.Location = location;
        return response;
    }

    /// <summary>Envoy's processRequestHost: the request's Host, without its port when a new port comes or the scheme changes away from the port's default.</summary>
    private static string RequestHost(string requestHost, string requestScheme, string newScheme, string newPort)
    {
        var hostEnd = requestHost.StartsWith('[') ? requestHost.LastIndexOf("]:", StringComparison.Ordinal) is >= 0 and var bracket ? bracket + 1 : -1
            : requestHost.LastIndexOf(':');
        if (hostEnd < 0)
        {
            return requestHost;
        }

        var requestPort = requestHost.AsSpan(hostEnd);
        var removePort = newPort.Length > 0
            || (!string.Equals(newScheme, requestScheme, StringComparison.OrdinalIgnoreCase)
                && ((requestScheme == Uri.UriSchemeHttps && requestPort is ":443") || (requestScheme == Uri.UriSchemeHttp && requestPort is ":80")));
        return removePort ? requestHost[..hostEnd] : requestHost;
    }

    private sealed record Pin(MeshService Service, MeshRoute Route);
}
