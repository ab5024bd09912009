using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;

namespace Mesh.Client.Tests.LoadBalancing;

public sealed class PriorityLoadBalancerTests
{
    private const long Now = 1_000;

    [Theory]
    [InlineData(nameof(LoadBalancingPolicy.RoundRobin))]
    [InlineData(nameof(LoadBalancingPolicy.Random))]
    [InlineData(nameof(LoadBalancingPolicy.LeastRequest))]
    [InlineData(nameof(LoadBalancingPolicy.RingHash))]
    public void AllHealthy_OnlyPriorityZeroTakesTraffic(string policy)
    {
        var (local, remote) = Levels(3, 3);
        var balancer = LoadBalancerFactory.Create(System.Enum.Parse<LoadBalancingPolicy>(policy), [.. local, .. remote]);

        for (var i = 0; i < 500; i++)
        {
            Assert.Contains(balancer.Pick(Now, null, (ulong)i * 7919)!, local);
            Assert.Contains(balancer.Pick(Now, null)!, local);
        }
    }

    [Fact]
    public void LocalPriorityWithoutHealthyEndpoint_FailsOverToTheNext()
    {
        var (local, remote) = Levels(2, 2);
        foreach (var endpoint in local)
        {
            Eject(endpoint);
        }

        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. local, .. remote]);
        for (var i = 0; i < 200; i++)
        {
            Assert.Contains(balancer.Pick(Now, null)!, remote);
        }

        // Recovered: back on the local priority.
        foreach (var endpoint in local)
        {
            endpoint.Uneject();
        }

        Assert.Contains(balancer.Pick(Now, null)!, local);
    }

    [Fact]
    public void PartlyHealthyLocalPriority_KeepsItsShareTimesOverprovisioning()
    {
        // 2 of 5 local endpoints up: 40 % × 1.4 = 56 % of traffic stays local, 44 % fails over (Envoy's priority load).
        var (local, remote) = Levels(5, 5);
        for (var i = 0; i < 3; i++)
        {
            Eject(local[i]);
        }

        var balancer = new PriorityLoadBalancer([.. local, .. remote], level => new RoundRobinLoadBalancer(level), Random.Shared.Next);
        var toLocal = Enumerable.Range(0, 100).Count(ticket => balancer.ChooseLevel(Now, ticket) == 0);
        Assert.Equal(56, toLocal);

        // 4 of 5 up: 80 % × 1.4 ≥ 100 %, so nothing leaves the local priority yet.
        var (healthyEnough, others) = Levels(5, 2);
        Eject(healthyEnough[0]);
        var mostlyUp = new PriorityLoadBalancer([.. healthyEnough, .. others], level => new RoundRobinLoadBalancer(level), Random.Shared.Next);
        Assert.All(Enumerable.Range(0, 100), ticket => Assert.Equal(0, mostlyUp.ChooseLevel(Now, ticket)));
    }

    [Fact]
    public void NothingAvailableAnywhere_PanicsOnPriorityZero()
    {
        var (local, remote) = Levels(2, 2);
        foreach (var endpoint in local.Concat(remote))
        {
            Eject(endpoint);
        }

        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RoundRobin, [.. local, .. remote]);
        Assert.Contains(balancer.Pick(Now, null)!, local);
    }

    [Fact]
    public void Pick_AllocatesNothing()
    {
        var (local, remote) = Levels(3, 3);
        var balancer = LoadBalancerFactory.Create(LoadBalancingPolicy.RingHash, [.. local, .. remote]);
        balancer.Pick(Now, null, 42);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            balancer.Pick(Now, null, (ulong)i);
            balancer.Pick(Now, null);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Eds_LocalityPriority_IsDecodedOntoEachEndpoint()
    {
        var assignment = new ClusterLoadAssignment { ClusterName = "c" };
        for (uint p = 0; p < 2; p++)
        {
            var locality = new LocalityLbEndpoints { Locality = new Locality { Region = $"r{p}" }, LoadBalancingWeight = 1, Priority = p };
            locality.LbEndpoints.Add(new LbEndpoint { Endpoint = new Mesh.Xds.Envoy.Config.Endpoint.V3.Endpoint { Address = new Address { SocketAddress = new SocketAddress { Address = $"10.0.{p}.1", PortValue = 80 } } } });
            assignment.Endpoints.Add(locality);
        }

        var errors = new List<string>();
        var decoded = (EndpointsResource)Assert.Single(XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Any.Pack(assignment)], errors)!).Value!;

        Assert.Empty(errors);
        Assert.Equal([0, 1], decoded.Endpoints.Select(e => e.Priority));
    }

    private static (MeshEndpoint[] Local, MeshEndpoint[] Remote) Levels(int local, int remote) =>
        (Enumerable.Range(1, local).Select(i => new MeshEndpoint($"10.0.0.{i}", 80, locality: "r0//") { Priority = 0 }).ToArray(),
         Enumerable.Range(1, remote).Select(i => new MeshEndpoint($"10.0.1.{i}", 80, locality: "r1//") { Priority = 1 }).ToArray());

    private static void Eject(MeshEndpoint endpoint) => Assert.True(endpoint.TryEject(Now, maxMultiplier: 1));
}
