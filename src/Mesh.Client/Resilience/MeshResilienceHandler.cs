using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Microsoft.Extensions.Http.Logging;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Resilience;

/// <summary>
/// The outermost handler of mesh-enabled clients. A request to a mesh service runs as a loop of attempts, each going
/// down to <see cref="Http.MeshHttpHandler"/> (which routes and picks an endpoint again, avoiding the one that just
/// failed): the service's circuit breaker admits the attempt; one deadline — the attempt timeout or what is left of
/// the total timeout, whichever is sooner — cancels it; a transient failure of a call that may be sent again is
/// retried after Envoy's fully jittered exponential backoff while the total budget lasts. Other requests pass straight
/// through.
/// </summary>
/// <remarks>
/// The same semantics as total timeout → retry → circuit breaker → attempt timeout in a Polly pipeline, in one async
/// method: a request that succeeds costs one Task (its state machine), one registration on the caller's token and one
/// timer re-arm on a pooled <see cref="CancellationTokenSource"/>. Right above <see cref="Http.MeshHttpHandler"/> (no
/// handler of the app's in between) the loop sends each attempt itself, so routing adds no async method of its own.
/// </remarks>
internal sealed partial class MeshResilienceHandler : DelegatingHandler
{
    private static readonly Action<object?> CancelSource = static source => ((CancellationTokenSource)source!).Cancel();

    // Requests whose last attempt still failed when their retries ran out (Envoy's URX flag) or when the retry budget or
    // max_retries refused one more (UO). Only such requests are added, so the success path never touches the table.
    private static readonly ConditionalWeakTable<HttpRequestMessage, object> RetriesEnded = [];
    private static readonly object Exhausted = Telemetry.ResponseFlags.UpstreamRetryLimitExceeded;
    private static readonly object Overflowed = Telemetry.ResponseFlags.UpstreamOverflow;

    private readonly MeshRouter _router;
    private readonly MeshResiliencePolicies _policies;
    private readonly CancellationSourcePool _sources;
    private readonly ILogger _logger;
    private int _innerLetsGoOfToken;

    public MeshResilienceHandler(MeshRouter router, MeshResiliencePolicies policies, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(logger);
        _router = router;
        _policies = policies;
        _sources = policies.CancellationSources;
        _logger = logger;
    }

    /// <summary>
    /// Gets whether the client has its own Microsoft.Extensions.Http.Resilience pipeline: then the app's pipeline owns
    /// retries and hedging and the mesh sends each of its attempts once (timeouts and the circuit breaker still apply),
    /// so the two never multiply. Each attempt the app sends is still routed again, to an endpoint no earlier attempt of
    /// the call took (<see cref="Http.AttemptGroup"/>). Only the total timeout bounds the call here; the app's pipeline
    /// times its own attempts.
    /// </summary>
    public bool AppOwnsRetries { get; init; }

    /// <summary>
    /// How <paramref name="request"/>'s retries ended when its last attempt still failed: its route's (or
    /// Mesh:Resilience's) attempts ran out (Envoy's URX), or the retry budget or <c>max_retries</c> refused a retry (UO,
    /// as Envoy flags a retry overflow); else none.
    /// </summary>
    internal static Telemetry.ResponseFlags RetryOutcome(HttpRequestMessage request) =>
        RetriesEnded.TryGetValue(request, out var flags) ? (Telemetry.ResponseFlags)flags : Telemetry.ResponseFlags.None;

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, trail: null, cancellationToken);

    /// <summary>As <see cref="SendAsync(HttpRequestMessage, CancellationToken)"/>, recording where each attempt goes in <paramref name="trail"/>.</summary>
    internal Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, Http.AttemptTrail? trail, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = request.RequestUri;
        return uri is { IsAbsoluteUri: true } && _router.Snapshot.TryGetService(uri.IdnHost, uri.Port, uri.IsDefaultPort, out var service)
            ? SendWithResilienceAsync(service!, request, trail, cancellationToken)
            : base.SendAsync(request, cancellationToken);
    }

    /// <summary>Synchronous sends reach only hosts outside the mesh; a mesh service's attempt loop is asynchronous (no sync-over-async).</summary>
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = request.RequestUri;
        if (uri is { IsAbsoluteUri: true } && _router.Snapshot.TryGetService(uri.IdnHost, uri.Port, uri.IsDefaultPort, out var service))
        {
            throw Http.MeshHttpHandler.SyncSendNotSupported(uri, service.Host);
        }

        return base.Send(request, cancellationToken);
    }

    // A Task, not a pooled ValueTask behind AsTask: DelegatingHandler.SendAsync must return a Task, and the wrapper AsTask
    // puts around a pooled state machine completes the caller one callback later. Measured side by side
    // (docs/performance.md, 2026-12-04): the Task costs 256 B more per request and 0.1-0.2 us less CPU.
    private async Task<HttpResponseMessage> SendWithResilienceAsync(MeshService service, HttpRequestMessage request, Http.AttemptTrail? trail, CancellationToken cancellationToken)
    {
        var options = _policies.Options;
        var time = _policies.Time;
        var breaker = _policies.GetBreaker(service);

        // What the route sets wins; what it leaves unset, Mesh:Resilience decides. The route is matched only when the
        // service's routes differ in what they set, so a service whose routes set nothing or all the same (istiod's
        // default retry policy on each) is matched once per attempt, by the router, not here as well.
        var route = service.ResilienceIsUniform ? null : MeshRouter.MatchRoute(service, request, request.RequestUri!);
        var routePolicy = service.ResilienceIsUniform ? service.UniformResilience : route?.Resilience;
        var retryPolicy = routePolicy?.Retry;
        var totalTimeout = routePolicy?.Timeout ?? options.TotalTimeout;

        // A route that sets a timeout or retries owns the time budget: its attempts are bounded by its per_try_timeout
        // alone (as Envoy), so Mesh:Resilience:AttemptTimeout never cuts a call the VirtualService allows.
        // When the app's own pipeline retries, the one "attempt" the mesh sees spans all of the app's attempts: only the
        // total budget bounds it, and the app's pipeline times its attempts.
        var attemptTimeout = AppOwnsRetries ? TimeSpan.MaxValue
            : routePolicy is null ? options.AttemptTimeout : retryPolicy?.PerTryTimeout ?? TimeSpan.MaxValue;
        var maxRetries = AppOwnsRetries ? 0 : retryPolicy?.NumRetries ?? options.MaxRetryAttempts;
        var start = time.GetTimestamp();
        var now = start;

        // The cluster whose retry budget this request holds a retry of, from the decision to retry until that retry
        // attempt ends (as Envoy holds its retry resource through the back-off).
        MeshCluster? heldRetry = null;
        try
        {
            for (var attempt = 0; ; attempt++)
            {
                var remaining = totalTimeout - time.GetElapsedTime(start, now);
                var totalBinds = remaining <= attemptTimeout;
                var timeout = totalBinds ? remaining : attemptTimeout;
                if (timeout <= TimeSpan.Zero)
                {
                    throw TimedOut(service, request, route, routePolicy, totalBinds: true);
                }

                // A runtime timer waits at most ~49.7 days: a longer budget is no deadline at all in practice.
                timeout = timeout < CancellationSourcePool.MaxDelay ? timeout : CancellationSourcePool.MaxDelay;

                if (!breaker.TryAdmit(now, out var trial))
                {
                    throw new CircuitOpenException(request.RequestUri!.Host, service.Host, options.CircuitBreakerBreakDuration);
                }

                HttpResponseMessage? response = null;
                Exception? error = null;
                var timedOut = false;
                var deadline = _sources.Rent(timeout);
                var link = cancellationToken.UnsafeRegister(CancelSource, deadline);
                try
                {
                    var token = deadline.Token;
                    if (InnerHandler is not Http.MeshHttpHandler mesh)
                    {
                        // The app's handlers run before the routing handler: the trail goes with the request.
                        if (trail is not null && attempt == 0)
                        {
                            Http.AttemptTrail.Attach(request, trail);
                        }

                        response = await base.SendAsync(request, token).ConfigureAwait(false);
                    }
                    else if (mesh.TryStartAttempt(request, attempt == 0 ? service : null, ReferenceEquals(mesh.Time, time) ? now : mesh.Time.GetTimestamp(), trail, token, out var started, out var otherwise))
                    {
                        // Right above the routing handler, the attempt is sent from this loop (one async method per
                        // request, not two) at this loop's timestamp.
                        try
                        {
                            response = await started.Invoker.SendAsync(request, token).ConfigureAwait(false);
                            mesh.Complete(request, started, response);
                        }
                        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
                        {
                            if (mesh.Fail(request, started, e) is { } failure)
                            {
                                throw failure;
                            }

                            throw;
                        }
                        finally
                        {
                            Http.MeshHttpHandler.End(started);
                        }
                    }
                    else
                    {
                        response = await otherwise.ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException e) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
                {
                    error = e;
                    timedOut = true;
                }
                catch (Exception e)
                {
                    error = e;
                }
                finally
                {
                    // Dispose (not Unregister) waits for a running caller-cancellation callback, so a pooled source is never
                    // cancelled after it went back to the pool.
                    link.Dispose();
                    Release(deadline, request, response);
                    heldRetry?.Traffic.EndRetry();
                    heldRetry = null;
                }

                now = time.GetTimestamp();
                if (timedOut && Http.MeshHttpHandler.CommitTimeout(request, now) is { } ejected)
                {
                    Log.EjectedAfterTimeouts(_logger, ejected.Authority, service.Host);
                }

                if (error is OperationCanceledException && !timedOut)
                {
                    // The caller gave up: not the service's fault, and nothing to retry.
                    breaker.OnAbandoned(trial);
                    ExceptionDispatchInfo.Throw(error);
                }

                // The circuit breaker counts failures by the app's rule whatever the route retries on.
                var transient = MeshResiliencePolicies.IsTransient(response, error, timedOut);
                if (breaker.OnResult(now, transient, trial))
                {
                    Log.CircuitOpened(_logger, service.Host, options.CircuitBreakerBreakDuration);
                }

                var retriable = retryPolicy is null ? transient : retryPolicy.ShouldRetry(response, error, timedOut);

                // An attempt cut short by the total timeout spent the budget: nothing is left to retry with (the timer may
                // fire a fraction of a millisecond before the clock agrees, so this is decided by which deadline bound it).
                if (retriable && !(timedOut && totalBinds) && attempt < maxRetries && MeshResiliencePolicies.CanRetry(request, error, routeRetries: retryPolicy is not null))
                {
                    var delay = retryPolicy is null ? Backoff(options.RetryDelay, attempt + 1) : retryPolicy.Backoff(attempt + 1);
                    var budgetAllows = TryTakeRetry(service, request, delay < totalTimeout - time.GetElapsedTime(start, now), out heldRetry);
                    if (budgetAllows is true)
                    {
                        Log.Retrying(_logger, service.Host, attempt + 1, response is null ? 0 : (int)response.StatusCode, timedOut ? "attempt timeout" : error?.GetType().Name ?? "status");
                        if (Telemetry.MeshTracing.IsEnabled)
                        {
                            // For the next attempt's span (only while the mesh's spans are listened to): its number and what failed this one.
                            Telemetry.MeshTracing.OnRetry(request, attempt + 1, Telemetry.MeshTracing.ErrorTypeOf(response, error, timedOut));
                        }

                        response?.Dispose();
                        if (delay > TimeSpan.Zero)
                        {
                            await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
                            now = time.GetTimestamp();
                        }

                        continue;
                    }

                    if (budgetAllows is false)
                    {
                        RetriesEnded.AddOrUpdate(request, Overflowed);
                    }
                }

                if (retriable && maxRetries > 0 && attempt >= maxRetries)
                {
                    RetriesEnded.AddOrUpdate(request, Exhausted);
                }

                if (timedOut)
                {
                    throw TimedOut(service, request, route, routePolicy, totalBinds);
                }

                if (error is not null)
                {
                    ExceptionDispatchInfo.Throw(error);
                }

                return response!;
            }
        }
        finally
        {
            heldRetry?.Traffic.EndRetry();
        }
    }

    /// <summary>
    /// Whether the retry budget of the cluster the last attempt failed in allows one more retry in flight (Envoy's
    /// <c>retry_budget</c>; on by default at 20 % of the requests in flight, at least 3). A denied retry is not sent:
    /// the caller gets the failed attempt's outcome, as Envoy answers on retry overflow.
    /// </summary>
    /// <returns>True when the retry may go; false when the budget refused it; null when it was not asked (no time left for the back-off).</returns>
    private bool? TryTakeRetry(MeshService service, HttpRequestMessage request, bool timeLeft, out MeshCluster? held)
    {
        held = null;
        if (!timeLeft)
        {
            return null;
        }

        held = Http.MeshHttpHandler.GetFailedCluster(request);
        if (held is null || held.Traffic.TryStartRetry(held.Limits))
        {
            return true;
        }

        Log.RetryBudgetExhausted(_logger, service.Host, held.Name, held.Traffic.ActiveRetries, held.Traffic.ActiveRequests);
        held = null;
        return false;
    }

    /// <summary>Envoy's retry backoff: uniformly random in [0, (2^n − 1) × base), capped at 10 × base.</summary>
    internal static TimeSpan Backoff(TimeSpan baseDelay, int retry) => Mesh.Xds.Retry.Backoff.Retry(baseDelay, baseDelay * 10, retry, Random.Shared.NextDouble());

    // A deadline source is reused only when nothing can hold its token after the attempt (a reset source that a late
    // reader still polls would show it another request's cancellation); otherwise it is only disarmed and left to the GC.
    // A buffered body or none is never read after SendAsync returns. A streamed one (gRPC's, StreamContent, JsonContent)
    // neither, once a response came back over HTTP/2 from SocketsHttpHandler with only pass-through handlers between:
    // it sends a duplex body (gRPC's) without the request's token and finishes any other body before it returns.
    private void Release(CancellationTokenSource deadline, HttpRequestMessage request, HttpResponseMessage? response)
    {
        var knownChain = InnerLetsGoOfToken();
        if (request.Content is null or ByteArrayContent or ReadOnlyMemoryContent
            || (response is { Version.Major: 2 } && knownChain))
        {
            // Kept armed (no reset) only under a chain of known handlers: a reset also drops any registration a handler
            // of the app's left on the token, which must never fire for a later request.
            _sources.Return(deadline, keepArmed: knownChain);
        }
        else
        {
            deadline.CancelAfter(Timeout.InfiniteTimeSpan);
        }
    }

    private bool InnerLetsGoOfToken()
    {
        // Decided on the first request, when the client's handler chain is complete; the chain never changes after.
        var known = Volatile.Read(ref _innerLetsGoOfToken);
        if (known == 0)
        {
            known = LetsGoOfToken(InnerHandler) ? 1 : -1;
            Volatile.Write(ref _innerLetsGoOfToken, known);
        }

        return known > 0;
    }

    /// <summary>
    /// Whether every handler from <paramref name="handler"/> down is known to keep no hold of a request's token once its
    /// SendAsync returned an HTTP/2 response: the factory's logging handlers, the mesh's routing handler, and at the bottom
    /// SocketsHttpHandler (the mesh's endpoint pools, or the client's own primary handler) or the xds:/// channel's end.
    /// Any other handler (the app's own) might, so a chain holding one never reuses sources for streamed bodies.
    /// </summary>
    internal static bool LetsGoOfToken(HttpMessageHandler? handler)
    {
        for (; handler is not null; handler = (handler as DelegatingHandler)?.InnerHandler)
        {
            switch (handler)
            {
                case Http.MeshHttpHandler or LoggingHttpMessageHandler or LoggingScopeHttpMessageHandler:
                    continue;
                case SocketsHttpHandler or Http.MeshServiceOnlyHandler:
                    return true;
                case HttpClientHandler:
                    // Over SocketsHttpHandler only: on iOS, Android and the browser it wraps a native stack, which may
                    // hold the token while the body streams.
                    return SocketsHttpHandler.IsSupported;
                default:
                    return false;
            }
        }

        return false;
    }

    private TaskCanceledException TimedOut(MeshService service, HttpRequestMessage request, MeshRoute? route, RouteResilience? policy, bool totalBinds)
    {
        var options = _policies.Options;

        // A uniform policy was read without matching: the message still names the request's route.
        route ??= policy is null ? null : MeshRouter.MatchRoute(service, request, request.RequestUri!);
        var (budget, key) = totalBinds
            ? policy?.Timeout is { } routeTimeout
                ? (routeTimeout, $"timeout of route {RouteName(route)}")
                : (options.TotalTimeout, "Mesh:Resilience:TotalTimeout")
            : policy?.Retry?.PerTryTimeout is { } perTry
                ? (perTry, $"retry_policy.per_try_timeout of route {RouteName(route)}")
                : (options.AttemptTimeout, "Mesh:Resilience:AttemptTimeout");
        var message = string.Create(CultureInfo.InvariantCulture,
            $"The request to mesh service '{request.RequestUri!.Host}' ({service.Host}) timed out after {budget.TotalSeconds:0.###} s ({key}).");

        // As HttpClient reports its own Timeout: a TaskCanceledException whose inner exception is a TimeoutException.
        return new TaskCanceledException(message, new TimeoutException(message));
    }

    private static string RouteName(MeshRoute? route) =>
        route is null ? "(none matches now)" : route.Name.Length > 0 ? $"'{route.Name}'" : $"'{route.Prefix ?? route.Path}'";
}
