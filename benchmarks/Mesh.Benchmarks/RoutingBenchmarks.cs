using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Microsoft.Extensions.Primitives;

namespace Mesh.Benchmarks;

/// <summary>
/// The per-request path of an outbound call: host → service → route → weighted cluster → endpoint,
/// in a mesh of 200 services with 3 endpoints each. Target: 0 bytes allocated per request.
/// </summary>
[MemoryDiagnoser]
public class RoutingBenchmarks
{
    private readonly HttpRequestMessage _shortName = new(HttpMethod.Get, "http://orders/orders/42");
    private readonly HttpRequestMessage _qualified = new(HttpMethod.Get, "http://orders.default.svc.cluster.local/orders/42");
    private readonly HttpRequestMessage _leastRequest = new(HttpMethod.Get, "http://inventory:50051/demo.inventory.v1.Inventory/Reserve");
    private readonly HttpRequestMessage _notMesh = new(HttpMethod.Get, "http://example.org/");
    private readonly HttpRequestMessage _ringHash = new(HttpMethod.Get, "http://sessions/cart");
    private MeshRouter _router = null!;

    [GlobalSetup]
    public void Setup()
    {
        var bindings = new List<KeyValuePair<string, MeshService>>();
        var clusters = new List<MeshCluster>();
        for (var i = 0; i < 200; i++)
        {
            var name = i switch { 0 => "orders", 1 => "inventory", 2 => "sessions", _ => $"service-{i}" };
            var port = i == 1 ? 50051 : 80;
            var fqdn = $"{name}.default.svc.cluster.local";
            var endpoints = ImmutableArray.Create(
                new MeshEndpoint("10.0.0.1", 8000 + i),
                new MeshEndpoint("10.0.0.2", 8000 + i),
                new MeshEndpoint("10.0.0.3", 8000 + i));
            var policy = i switch { 1 => LoadBalancingPolicy.LeastRequest, 2 => LoadBalancingPolicy.RingHash, _ => LoadBalancingPolicy.RoundRobin };
            var cluster = new MeshCluster($"outbound|{port}||{fqdn}", fqdn, policy, endpoints);
            clusters.Add(cluster);

            // The sessions service is a DestinationRule consistentHash by header: the route hashes x-user onto the ring.
            var hashPolicy = i == 2 ? new RouteHashPolicy([new HashKey(HashKeyKind.Header, "x-user", Terminal: false)], sourceKey: 0) : null;
            var service = new MeshService($"{fqdn}:{port}", fqdn, port, [new MeshRoute("", null, true, [new WeightedCluster(cluster, 100)]) { HashPolicy = hashPolicy }]);
            foreach (var alias in new[] { name, $"{name}.default", $"{name}.default.svc", fqdn })
            {
                bindings.Add(new(alias, service));
            }
        }

        _ringHash.Headers.Add("x-user", "user-1234567");
        _router = new MeshRouter(new FixedSource(new MeshSnapshot("1", bindings, clusters)), new MeshHostNames("default", "cluster.local"));
    }

    [Benchmark(Baseline = true)]
    public object? RoundRobin_ShortName() => Route(_shortName);

    [Benchmark]
    public object? RoundRobin_QualifiedName() => Route(_qualified);

    [Benchmark]
    public object? LeastRequest_ExplicitPort() => Route(_leastRequest);

    [Benchmark]
    public object? NotAMeshHost() => Route(_notMesh);

    /// <summary>RING_HASH: hash the x-user header (xxHash64) and binary-search a 1024-point ring. Target: 0 B.</summary>
    [Benchmark]
    public object? RingHash_HeaderKey() => Route(_ringHash);

    private object? Route(HttpRequestMessage request)
    {
        _router.Route(request, 0, null, out _, out _, out var endpoint);
        return endpoint;
    }

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
