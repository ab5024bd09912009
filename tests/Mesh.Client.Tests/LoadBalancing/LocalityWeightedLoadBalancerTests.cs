using System.Collections.Immutable;
using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;

namespace Mesh.Client.Tests.LoadBalancing;

public sealed class LocalityWeightedLoadBalancerTests
{
    private const long Now = 1_000;

    /// <summary><paramref name="a"/> endpoints in zone a with locality weight <paramref name="weightA"/>, and so on for b.</summary>
    private static (MeshEndpoint[] A, MeshEndpoint[] B) Zones(int a, int weightA, int b, int weightB) =>
        (Enumerable.Range(1, a).Select(i => new MeshEndpoint($"10.0.0.{i}", 80, locality: "r/a/") { LocalityWeight = weightA }).ToArray(),
         Enumerable.Range(1, b).Select(i => new MeshEndpoint($"10.0.1.{i}", 80, locality: "r/b/") { LocalityWeight = weightB }).ToArray());

    [Theory]
    [InlineData(nameof(LoadBalancingPolicy.RoundRobin))]
    [InlineData(nameof(LoadBalancingPolicy.Random))]
    [InlineData(nameof(LoadBalancingPolicy.LeastRequest))]
    public void Pick_Distribute8020_SplitsByLocalityWeightNotEndpointCount(string policy)
    {
        // Three endpoints in b, one in a: a flat pick would give a 25 %; the locality weights say 80 %.
        var (a, b) = Zones(1, 80, 3, 20);
        var random = new Random(7);
        var balancer = LoadBalancerFactory.Create(Enum.Parse<LoadBalancingPolicy>(policy), [.. a, .. b], random.Next);

        var inA = Enumerable.Range(0, 10_000).Count(_ => a.Contains(balancer.Pick(Now, null)));

        Assert.InRange(inA, 7_700, 8_300);
    }

    [Fact]
    public void Pick_LocalityAllEjected_TakesNoTrafficAndComesBack()
    {
        var (a, b) = Zones(2, 80, 2, 20);
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. a, .. b], new Random(3).Next);
        foreach (var endpoint in a)
        {
            Assert.True(endpoint.TryEject(Now, maxMultiplier: 1));
        }

        Assert.All(Enumerable.Range(0, 500), _ => Assert.Contains(balancer.Pick(Now, null)!, b));

        foreach (var endpoint in a)
        {
            endpoint.Uneject();
        }

        Assert.InRange(Enumerable.Range(0, 1_000).Count(_ => a.Contains(balancer.Pick(Now, null))), 700, 900);
    }

    [Fact]
    public void Pick_HalfOfALocalityEjected_KeepsItsWeightTimesOverprovisioning()
    {
        // Zone a at 50 % health: 0.5 × 1.4 = 70 % of its weight 50 → effective 35 against b's 50: 35/85 ≈ 41 %.
        var (a, b) = Zones(2, 50, 1, 50);
        Assert.True(a[0].TryEject(Now, maxMultiplier: 1));
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. a, .. b], new Random(5).Next);

        var inA = Enumerable.Range(0, 10_000).Count(_ => a.Contains(balancer.Pick(Now, null)));

        Assert.InRange(inA, 3_800, 4_450);
    }

    [Fact]
    public void Create_WeightsProportionalToEndpoints_UsesAFlatPick()
    {
        // istiod's default locality weight is the sum of its endpoints' weights: nothing for a locality pick to add.
        var (a, b) = Zones(2, 2, 3, 3);

        Assert.False(LocalityWeightedLoadBalancer.IsNeeded([.. a, .. b]));
        Assert.True(LocalityWeightedLoadBalancer.IsNeeded([.. Zones(2, 50, 3, 50).A, .. Zones(2, 50, 3, 50).B]));
        Assert.False(LocalityWeightedLoadBalancer.IsNeeded([.. a]));
    }

    [Fact]
    public void Pick_WithHash_KeepsTheSameLocalityForTheSameHash()
    {
        var (a, b) = Zones(1, 80, 3, 20);
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RingHash, [.. a, .. b]);

        for (ulong hash = 0; hash < 200; hash++)
        {
            Assert.Same(balancer.Pick(Now, null, hash * 7919), balancer.Pick(Now, null, hash * 7919));
        }
    }

    [Fact]
    public void Pick_PrioritiesAndLocalityWeights_WeightsOnlyWithinTheLevel()
    {
        var (a, b) = Zones(1, 80, 3, 20);
        var remote = new MeshEndpoint("10.0.2.1", 80, locality: "x//") { Priority = 1 };
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. a, .. b, remote], new Random(1).Next);

        var picks = Enumerable.Range(0, 5_000).Select(_ => balancer.Pick(Now, null)).ToList();

        Assert.DoesNotContain(remote, picks);
        Assert.InRange(picks.Count(a.Contains), 3_800, 4_200);
    }

    [Fact]
    public void Pick_AllocatesNothing()
    {
        var (a, b) = Zones(2, 80, 3, 20);
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. a, .. b], new Random(1).Next);
        balancer.Pick(Now, null);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1_000; i++)
        {
            balancer.Pick(Now, null);
            balancer.Pick(Now, null, (ulong)i);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Eds_LocalityWeight_IsDecodedOntoEachEndpoint()
    {
        var assignment = new ClusterLoadAssignment { ClusterName = "c" };
        foreach (var (zone, weight) in new[] { ("a", 80u), ("b", 20u) })
        {
            var locality = new LocalityLbEndpoints { Locality = new Locality { Region = "r", Zone = zone }, LoadBalancingWeight = weight };
            locality.LbEndpoints.Add(new LbEndpoint { Endpoint = new Mesh.Xds.Envoy.Config.Endpoint.V3.Endpoint { Address = new Address { SocketAddress = new SocketAddress { Address = $"10.0.{weight}.1", PortValue = 80 } } } });
            assignment.Endpoints.Add(locality);
        }

        var errors = new List<string>();
        var decoded = (EndpointsResource)Assert.Single(XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Google.Protobuf.WellKnownTypes.Any.Pack(assignment)], errors)!).Value!;

        Assert.Empty(errors);
        Assert.Equal([("r/a/", 80), ("r/b/", 20)], decoded.Endpoints.Select(e => (e.Locality, e.LocalityWeight)).ToArray());
    }
}
