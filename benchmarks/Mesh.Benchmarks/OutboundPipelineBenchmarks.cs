using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Options;
using Polly;
using Microsoft.Extensions.Primitives;

namespace Mesh.Benchmarks;

/// <summary>
/// What the mesh's resilience layer (total timeout, retry, circuit breaker, attempt timeout) adds to one successful
/// request, without the network: an <see cref="HttpMessageInvoker"/> over a terminal handler that answers at once or
/// after a thread-pool hop,
/// with and without <see cref="MeshResilienceHandler"/> in front, default options; and, for comparison, the same
/// strategies (total timeout → retry → circuit breaker → attempt timeout, same options) as a Polly v8 pipeline from
/// Microsoft.Extensions.Http.Resilience executed directly with a pooled context — how the mesh ran them before.
/// </summary>
[MemoryDiagnoser]
public class OutboundPipelineBenchmarks
{
    private readonly HttpRequestMessage _request = new(HttpMethod.Get, "http://orders/orders/42");
    private HttpMessageInvoker _direct = null!;
    private HttpMessageInvoker _resilient = null!;
    private HttpMessageInvoker _polly = null!;
    private HttpMessageInvoker _features = null!;

    [GlobalSetup]
    public void Setup()
    {
        const string fqdn = "orders.default.svc.cluster.local";
        var cluster = new MeshCluster($"outbound|80||{fqdn}", fqdn, LoadBalancingPolicy.RoundRobin, ImmutableArray.Create(new MeshEndpoint("10.0.0.1", 8000)));
        var service = new MeshService($"{fqdn}:80", fqdn, 80, [new MeshRoute("", null, true, [new WeightedCluster(cluster, 100)])]);
        var snapshot = new MeshSnapshot("1", [new("orders", service), new(fqdn, service)], [cluster]);
        var router = new MeshRouter(new FixedSource(snapshot), new MeshHostNames("default", "cluster.local"));
        var policies = new MeshResiliencePolicies(Options.Create(new ServiceMeshOptions()), TimeProvider.System);
        _direct = new HttpMessageInvoker(new Answer(this));
        _resilient = new HttpMessageInvoker(new MeshResilienceHandler(router, policies, NullLogger.Instance) { InnerHandler = new Answer(this) });
        _polly = new HttpMessageInvoker(new PollyPipelineHandler(new ServiceMeshOptions().Resilience) { InnerHandler = new Answer(this) });

        // Route features (fault, mirror, rewrite…) in front, on a snapshot whose routes have none: what every request pays for them.
        var pools = new Mesh.Client.Http.EndpointConnectionPools(new FixedSource(snapshot), TimeProvider.System, NullLogger<Mesh.Client.Http.EndpointConnectionPools>.Instance);
        _features = new HttpMessageInvoker(new Mesh.Client.Http.MeshRouteFeaturesHandler(router, pools, TimeProvider.System, NullLogger.Instance)
        {
            InnerHandler = new MeshResilienceHandler(router, policies, NullLogger.Instance) { InnerHandler = new Answer(this) },
        });
    }

    /// <summary>Whether the terminal handler completes later (as the network does: every async layer then allocates its state machine) or at once.</summary>
    [Params(false, true)]
    public bool InnerCompletesLater { get; set; }

    [Benchmark(Baseline = true)]
    public Task<HttpResponseMessage> Direct() => _direct.SendAsync(_request, CancellationToken.None);

    [Benchmark]
    public Task<HttpResponseMessage> MeshResilience() => _resilient.SendAsync(_request, CancellationToken.None);

    [Benchmark]
    public Task<HttpResponseMessage> MeshRouteFeaturesNone_ThenMeshResilience() => _features.SendAsync(_request, CancellationToken.None);

    [Benchmark]
    public Task<HttpResponseMessage> PollyPipeline_SameStrategies() => _polly.SendAsync(_request, CancellationToken.None);

    [GlobalCleanup]
    public void Cleanup()
    {
        _direct.Dispose();
        _resilient.Dispose();
        _polly.Dispose();
        _features.Dispose();
    }

    private sealed class PollyPipelineHandler : DelegatingHandler
    {
        private readonly ResiliencePipeline<HttpResponseMessage> _pipeline;

        public PollyPipelineHandler(MeshResilienceOptions options) => _pipeline = new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddTimeout(new HttpTimeoutStrategyOptions { Timeout = options.TotalTimeout })
            .AddRetry(new HttpRetryStrategyOptions { MaxRetryAttempts = options.MaxRetryAttempts, Delay = options.RetryDelay })
            .AddCircuitBreaker(new HttpCircuitBreakerStrategyOptions
            {
                FailureRatio = options.CircuitBreakerFailureRatio,
                MinimumThroughput = options.CircuitBreakerMinimumThroughput,
                SamplingDuration = options.CircuitBreakerSamplingDuration,
                BreakDuration = options.CircuitBreakerBreakDuration,
            })
            .AddTimeout(new HttpTimeoutStrategyOptions { Timeout = options.AttemptTimeout })
            .Build();

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var context = ResilienceContextPool.Shared.Get(cancellationToken);
            try
            {
                var outcome = await _pipeline.ExecuteOutcomeAsync(
                    static async (context, state) =>
                    {
                        try
                        {
                            return Outcome.FromResult(await state.Self.SendInnerAsync(state.Request, context.CancellationToken).ConfigureAwait(false));
                        }
                        catch (Exception exception)
                        {
                            return Outcome.FromException<HttpResponseMessage>(exception);
                        }
                    },
                    context,
                    (Self: this, Request: request)).ConfigureAwait(false);
                outcome.ThrowIfException();
                return outcome.Result!;
            }
            finally
            {
                ResilienceContextPool.Shared.Return(context);
            }
        }

        private Task<HttpResponseMessage> SendInnerAsync(HttpRequestMessage request, CancellationToken cancellationToken) => base.SendAsync(request, cancellationToken);
    }

    private sealed class Answer(OutboundPipelineBenchmarks benchmark) : HttpMessageHandler
    {
        private static readonly HttpResponseMessage Ok = new(System.Net.HttpStatusCode.OK);
        private readonly Task<HttpResponseMessage> _ok = Task.FromResult(Ok);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            benchmark.InnerCompletesLater ? Later() : _ok;

        private static async Task<HttpResponseMessage> Later()
        {
            await Task.Yield();
            return Ok;
        }
    }

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
