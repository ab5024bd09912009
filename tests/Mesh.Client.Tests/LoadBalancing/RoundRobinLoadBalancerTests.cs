using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;

namespace Mesh.Client.Tests.LoadBalancing;

public sealed class RoundRobinLoadBalancerTests
{
    private const long Now = 1_000;

    [Fact]
    public void Pick_EqualWeights_SpreadsEvenly()
    {
        var endpoints = Endpoints(1, 1, 1);
        var balancer = new RoundRobinLoadBalancer([.. endpoints]);

        var counts = Count(balancer, 300);

        Assert.All(endpoints, e => Assert.Equal(100, counts[e]));
    }

    [Fact]
    public void Pick_ManyEqualWeights_EveryEndpointOncePerRound()
    {
        // A large service (the loop that builds weighted schedules costs endpoints² steps: minutes at this size).
        var endpoints = Enumerable.Range(0, 100_000).Select(i => new MeshEndpoint($"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", 8080, 1, true)).ToArray();
        var balancer = new RoundRobinLoadBalancer([.. endpoints]);

        var counts = Count(balancer, endpoints.Length);

        Assert.Equal(endpoints.Length, counts.Count);
        Assert.All(counts.Values, c => Assert.Equal(1, c));
    }

    [Fact]
    public void Pick_Weights_RespectsProportions()
    {
        var endpoints = Endpoints(3, 1);
        var balancer = new RoundRobinLoadBalancer([.. endpoints]);

        var counts = Count(balancer, 400);

        Assert.Equal(300, counts[endpoints[0]]);
        Assert.Equal(100, counts[endpoints[1]]);
    }

    [Fact]
    public void Pick_EjectedAndUnhealthyEndpoints_AreSkipped()
    {
        var ejected = new MeshEndpoint("10.0.0.1", 80);
        var unhealthy = new MeshEndpoint("10.0.0.2", 80, isHealthy: false);
        var good = new MeshEndpoint("10.0.0.3", 80);
        Assert.True(ejected.TryEject(Now, maxMultiplier: 1));
        var balancer = new RoundRobinLoadBalancer([ejected, unhealthy, good]);

        for (var i = 0; i < 10; i++)
        {
            Assert.Same(good, balancer.Pick(Now, avoid: null));
        }
    }

    [Fact]
    public void Pick_Avoid_PicksAnotherWhenThereIsOne()
    {
        var endpoints = Endpoints(1, 1);
        var balancer = new RoundRobinLoadBalancer([.. endpoints]);

        for (var i = 0; i < 10; i++)
        {
            Assert.Same(endpoints[1], balancer.Pick(Now, endpoints[0]));
        }

        var single = Endpoints(1);
        Assert.Same(single[0], new RoundRobinLoadBalancer([.. single]).Pick(Now, single[0]));
    }

    [Fact]
    public void Pick_NoneAvailable_PanicsAndPicksAmongAll()
    {
        var endpoints = new[] { new MeshEndpoint("10.0.0.1", 80, isHealthy: false), new MeshEndpoint("10.0.0.2", 80, isHealthy: false) };
        var balancer = new RoundRobinLoadBalancer([.. endpoints]);

        var counts = Count(balancer, 10);

        Assert.All(endpoints, e => Assert.Equal(5, counts[e]));
    }

    [Fact]
    public void Pick_EmptyCluster_ReturnsNull()
    {
        Assert.Null(new RoundRobinLoadBalancer([]).Pick(Now, avoid: null));
        Assert.Null(new LeastRequestLoadBalancer([], new Random(1).Next).Pick(Now, avoid: null));
    }

    [Fact]
    public void LeastRequest_Pick_PrefersTheLessLoaded()
    {
        var endpoints = Endpoints(1, 1);
        var balancer = new LeastRequestLoadBalancer([.. endpoints], new Random(42).Next);
        for (var i = 0; i < 5; i++)
        {
            endpoints[0].OnRequestStarted();
        }

        for (var i = 0; i < 50; i++)
        {
            Assert.Same(endpoints[1], balancer.Pick(Now, avoid: null));
        }
    }

    [Fact]
    public void LeastRequest_Pick_HonoursAvoidAndSkipsEjected()
    {
        var endpoints = Endpoints(1, 1, 1);
        Assert.True(endpoints[2].TryEject(Now, maxMultiplier: 1));
        var balancer = new LeastRequestLoadBalancer([.. endpoints], new Random(7).Next);

        for (var i = 0; i < 50; i++)
        {
            Assert.Same(endpoints[1], balancer.Pick(Now, endpoints[0]));
        }
    }

    internal static MeshEndpoint[] Endpoints(params int[] weights) =>
        [.. weights.Select((weight, i) => new MeshEndpoint($"10.0.0.{i + 1}", 8080, weight))];

    private static Dictionary<MeshEndpoint, int> Count(RoundRobinLoadBalancer balancer, int picks)
    {
        var counts = new Dictionary<MeshEndpoint, int>();
        for (var i = 0; i < picks; i++)
        {
            var endpoint = balancer.Pick(Now, avoid: null)!;
            counts[endpoint] = counts.GetValueOrDefault(endpoint) + 1;
        }

        return counts;
    }
}
