using System.Collections.Concurrent;
using Mesh.Client.Discovery;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;

namespace Mesh.Client.Resilience;

/// <summary>
/// One resilience pipeline per destination service (keyed by <see cref="MeshService.Host"/>), built on first use and
/// kept: each service gets its own circuit breaker, so one failing service never opens the circuit of another.
/// Order as in the standard HTTP resilience handler: total timeout → retry → circuit breaker → attempt timeout.
/// </summary>
internal sealed class MeshResiliencePipelines
{
    /// <summary>The property that carries the request to the retry predicate.</summary>
    internal static readonly ResiliencePropertyKey<HttpRequestMessage> RequestKey = new("Mesh.Request");

    private readonly ConcurrentDictionary<string, ResiliencePipeline<HttpResponseMessage>> _pipelines = new(StringComparer.OrdinalIgnoreCase);
    private readonly MeshResilienceOptions _options;
    private readonly TimeProvider _time;

    public MeshResiliencePipelines(IOptions<ServiceMeshOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        _options = options.Value.Resilience;
        _time = time;
    }

    public ResiliencePipeline<HttpResponseMessage> Get(MeshService service) =>
        _pipelines.TryGetValue(service.Host, out var pipeline)
            ? pipeline
            : _pipelines.GetOrAdd(service.Host, static (_, self) => self.Build(), this);

    /// <summary>
    /// Whether a failed attempt may be sent again: only idempotent methods or requests with an <c>Idempotency-Key</c>;
    /// and when the body cannot be replayed, only if the failure happened before anything was sent.
    /// </summary>
    internal static bool CanRetry(HttpRequestMessage request, Outcome<HttpResponseMessage> outcome)
    {
        if (!IsIdempotent(request.Method) && !request.Headers.NonValidated.Contains("Idempotency-Key"))
        {
            return false;
        }

        return request.Content is null or ByteArrayContent or ReadOnlyMemoryContent
            || Http.MeshHttpHandler.IsConnectionFailure(outcome.Exception);
    }

    private static bool IsIdempotent(HttpMethod method) =>
        method == HttpMethod.Get || method == HttpMethod.Head || method == HttpMethod.Options
        || method == HttpMethod.Trace || method == HttpMethod.Put || method == HttpMethod.Delete;

    // Mesh errors (not synced, no endpoint, no route) are answers, not transient faults: retrying or counting them
    // toward the breaker would only delay them.
    private static bool IsTransient(Outcome<HttpResponseMessage> outcome) =>
        outcome.Exception is not ServiceMeshException && HttpClientResiliencePredicates.IsTransient(outcome);

    private ResiliencePipeline<HttpResponseMessage> Build()
    {
        var options = _options;
        var builder = new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = _time };
        if (options.TotalTimeout > TimeSpan.Zero)
        {
            builder.AddTimeout(new HttpTimeoutStrategyOptions { Name = "TotalTimeout", Timeout = options.TotalTimeout });
        }

        if (options.MaxRetryAttempts > 0)
        {
            builder.AddRetry(new HttpRetryStrategyOptions
            {
                MaxRetryAttempts = options.MaxRetryAttempts,
                Delay = options.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = static args => new ValueTask<bool>(
                    IsTransient(args.Outcome)
                    && args.Context.Properties.TryGetValue(RequestKey, out var request)
                    && CanRetry(request, args.Outcome)),
            });
        }

        builder.AddCircuitBreaker(new HttpCircuitBreakerStrategyOptions
        {
            FailureRatio = options.CircuitBreakerFailureRatio,
            MinimumThroughput = options.CircuitBreakerMinimumThroughput,
            SamplingDuration = options.CircuitBreakerSamplingDuration,
            BreakDuration = options.CircuitBreakerBreakDuration,
            ShouldHandle = static args => new ValueTask<bool>(IsTransient(args.Outcome)),
        });

        if (options.AttemptTimeout > TimeSpan.Zero)
        {
            builder.AddTimeout(new HttpTimeoutStrategyOptions { Name = "AttemptTimeout", Timeout = options.AttemptTimeout });
        }

        return builder.Build();
    }
}
