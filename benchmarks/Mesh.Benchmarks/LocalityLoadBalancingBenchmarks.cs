using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;

namespace Mesh.Benchmarks;

/// <summary>
/// One endpoint pick over three endpoints: flat round robin (istiod's default locality weights), the same behind EDS
/// priorities (locality failover), and a DestinationRule <c>distribute</c> 80/20 (locality-weighted pick, then round
/// robin within). Target: 0 bytes allocated per pick.
/// </summary>
[MemoryDiagnoser]
public class LocalityLoadBalancingBenchmarks
{
    private ILoadBalancer _flat = null!;
    private ILoadBalancer _priorities = null!;
    private ILoadBalancer _distribute = null!;

    [GlobalSetup]
    public void Setup()
    {
        _flat = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin,
            [new MeshEndpoint("10.0.0.1", 80, locality: "r/a/"), new MeshEndpoint("10.0.1.1", 80, locality: "r/b/"), new MeshEndpoint("10.0.1.2", 80, locality: "r/b/")]);
        _priorities = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin,
            [new MeshEndpoint("10.0.0.1", 80, locality: "r/a/"), new MeshEndpoint("10.0.1.1", 80, locality: "r/b/") { Priority = 1 }, new MeshEndpoint("10.0.1.2", 80, locality: "r/b/") { Priority = 1 }]);
        _distribute = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, ImmutableArray.Create(
            new MeshEndpoint("10.0.0.1", 80, locality: "r/a/") { LocalityWeight = 80 },
            new MeshEndpoint("10.0.1.1", 80, locality: "r/b/") { LocalityWeight = 20 },
            new MeshEndpoint("10.0.1.2", 80, locality: "r/b/") { LocalityWeight = 20 }));
    }

    [Benchmark(Baseline = true)]
    public object? Flat() => _flat.Pick(0, null);

    [Benchmark]
    public object? Priorities() => _priorities.Pick(0, null);

    [Benchmark]
    public object? Distribute() => _distribute.Pick(0, null);
}
