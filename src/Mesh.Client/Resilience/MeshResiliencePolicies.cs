using System.Collections.Concurrent;
using System.Net;
using Mesh.Client.Discovery;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Resilience;

/// <summary>
/// The resilience options and one circuit breaker per destination service (keyed by <see cref="MeshService.Host"/>),
/// made on first use and kept across snapshots: one failing service never opens the circuit of another. Also the
/// rules of what is a transient failure and what may be sent again.
/// </summary>
internal sealed class MeshResiliencePolicies
{
    private readonly ConcurrentDictionary<string, CircuitBreaker> _breakers = new(StringComparer.OrdinalIgnoreCase);

    public MeshResiliencePolicies(IOptions<ServiceMeshOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        Options = options.Value.Resilience;
        Time = time;
    }

    public MeshResilienceOptions Options { get; }

    public TimeProvider Time { get; }

    /// <summary>The deadline sources of attempts, reused across requests.</summary>
    public CancellationSourcePool CancellationSources { get; } = new();

    public CircuitBreaker GetBreaker(MeshService service)
    {
        // The service object caches its breaker; the owner check keeps one policies' breaker from ever serving another's.
        if (service.CachedBreaker is { } cached && ReferenceEquals(cached.Owner, this))
        {
            return cached;
        }

        var breaker = _breakers.TryGetValue(service.Host, out var known)
            ? known
            : _breakers.GetOrAdd(service.Host, static (_, self) => new CircuitBreaker(
                self.Options.CircuitBreakerFailureRatio,
                self.Options.CircuitBreakerMinimumThroughput,
                self.Options.CircuitBreakerSamplingDuration,
                self.Options.CircuitBreakerBreakDuration,
                self.Time.TimestampFrequency) { Owner = self }, this);
        service.CachedBreaker = breaker;
        return breaker;
    }

    /// <summary>
    /// Whether a failed attempt may be sent again: any request whose connection could not be made (nothing reached a
    /// server, so nothing can run twice: Envoy retries <c>connect-failure</c> whatever the method); otherwise only
    /// idempotent methods or requests with an <c>Idempotency-Key</c>, and when the body cannot be replayed, only if the
    /// failure happened before anything was sent.
    /// </summary>
    /// <remarks>
    /// A unary (or server-streaming) gRPC call under a route retry policy is the exception: its POST is retried as the
    /// route says, as Envoy and gRPC's own retries (gRFC A6) do, the operator having opted in with <c>retryOn</c>; its
    /// body (Grpc.Net.Client's PushUnaryContent) writes the one request message again on each attempt.
    /// </remarks>
    internal static bool CanRetry(HttpRequestMessage request, Exception? exception, bool routeRetries = false)
    {
        if (Http.MeshHttpHandler.IsConnectionFailure(exception))
        {
            return true;
        }

        if (routeRetries && Telemetry.MeteredGrpcRequestContent.Unwrap(request.Content) is { } content && content.GetType().Name.StartsWith(GrpcUnaryContent, StringComparison.Ordinal))
        {
            return true;
        }

        if (!IsIdempotent(request.Method) && !request.Headers.NonValidated.Contains("Idempotency-Key"))
        {
            return false;
        }

        return request.Content is null or ByteArrayContent or ReadOnlyMemoryContent;
    }

    /// <summary>
    /// A transient outcome counts toward the circuit breaker and may be retried: 5xx, 408 and 429 answers, failures to
    /// send (<see cref="HttpRequestException"/>) and attempt timeouts. Mesh errors (not synced, no endpoint, no route,
    /// refused identity) are answers, not transient faults: retrying or counting them would only delay them.
    /// </summary>
    internal static bool IsTransient(HttpResponseMessage? response, Exception? exception, bool attemptTimedOut) =>
        attemptTimedOut
        || (exception is HttpRequestException and not ServiceMeshException)
        || (response is not null && IsTransient(response.StatusCode));

    internal static bool IsTransient(HttpStatusCode status) =>
        (int)status >= 500 || status is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests;

    // Grpc.Net.Client's request content of unary and server-streaming calls (generic: PushUnaryContent`2).
    private const string GrpcUnaryContent = "PushUnaryContent";

    private static bool IsIdempotent(HttpMethod method) =>
        method == HttpMethod.Get || method == HttpMethod.Head || method == HttpMethod.Options
        || method == HttpMethod.Trace || method == HttpMethod.Put || method == HttpMethod.Delete;
}
