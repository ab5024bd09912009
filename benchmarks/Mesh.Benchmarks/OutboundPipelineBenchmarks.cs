using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Mesh.Benchmarks;

/// <summary>
/// What the mesh's resilience layer (total timeout, retry, circuit breaker, attempt timeout) adds to one successful
/// request, without the network: an <see cref="HttpMessageInvoker"/> over a terminal handler that answers at once,
/// with and without <see cref="MeshResilienceHandler"/> in front, default options.
/// </summary>
[MemoryDiagnoser]
public class OutboundPipelineBenchmarks
{
    private readonly HttpRequestMessage _request = new(HttpMethod.Get, "http://orders/orders/42");
    private HttpMessageInvoker _direct = null!;
    private HttpMessageInvoker _resilient = null!;

    [GlobalSetup]
    public void Setup()
    {
        const string fqdn = "orders.default.svc.cluster.local";
        var cluster = new MeshCluster($"outbound|80||{fqdn}", fqdn, LoadBalancingPolicy.RoundRobin, ImmutableArray.Create(new MeshEndpoint("10.0.0.1", 8000)));
        var service = new MeshService($"{fqdn}:80", fqdn, 80, [new MeshRoute("", null, true, [new WeightedCluster(cluster, 100)])]);
        var snapshot = new MeshSnapshot("1", [new("orders", service), new(fqdn, service)], [cluster]);
        var router = new MeshRouter(new FixedSource(snapshot), new MeshHostNames("default", "cluster.local"));
        var policies = new MeshResiliencePolicies(Options.Create(new ServiceMeshOptions()), TimeProvider.System);
        _direct = new HttpMessageInvoker(new AnswerAtOnce());
        _resilient = new HttpMessageInvoker(new MeshResilienceHandler(router, policies, NullLogger.Instance) { InnerHandler = new AnswerAtOnce() });
    }

    [Benchmark(Baseline = true)]
    public Task<HttpResponseMessage> Direct() => _direct.SendAsync(_request, CancellationToken.None);

    [Benchmark]
    public Task<HttpResponseMessage> MeshResilience() => _resilient.SendAsync(_request, CancellationToken.None);

    [GlobalCleanup]
    public void Cleanup()
    {
        _direct.Dispose();
        _resilient.Dispose();
    }

    private sealed class AnswerAtOnce : HttpMessageHandler
    {
        private readonly Task<HttpResponseMessage> _ok = Task.FromResult(new HttpResponseMessage(System.Net.HttpStatusCode.OK));

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) => _ok;
    }

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
