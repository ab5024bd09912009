using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;

namespace Mesh.Client.Tests.LoadBalancing;

public sealed class RandomLoadBalancerTests
{
    private const long Now = 1_000;

    [Fact]
    public void Pick_SpreadsByWeight()
    {
        var endpoints = new[] { new MeshEndpoint("10.0.0.1", 80, weight: 1), new MeshEndpoint("10.0.0.2", 80, weight: 3) };
        var balancer = new RandomLoadBalancer([.. endpoints], new Random(7).Next);
        var counts = endpoints.ToDictionary(e => e, _ => 0);
        for (var i = 0; i < 8000; i++)
        {
            counts[balancer.Pick(Now, null)!]++;
        }

        Assert.InRange(counts[endpoints[0]], 2000 * 0.9, 2000 * 1.1);
        Assert.InRange(counts[endpoints[1]], 6000 * 0.95, 6000 * 1.05);
    }

    [Fact]
    public void Pick_SkipsUnavailableAndAvoided_PanicsWhenNoneIsAvailable()
    {
        var sick = new MeshEndpoint("10.0.0.1", 80, isHealthy: false);
        var good = new MeshEndpoint("10.0.0.2", 80);
        var other = new MeshEndpoint("10.0.0.3", 80);
        var balancer = new RandomLoadBalancer([sick, good, other], Random.Shared.Next);
        for (var i = 0; i < 200; i++)
        {
            Assert.Same(other, balancer.Pick(Now, good));
            Assert.NotSame(sick, balancer.Pick(Now, null));
        }

        var allSick = new RandomLoadBalancer([sick], Random.Shared.Next);
        Assert.Same(sick, allSick.Pick(Now, null));
        Assert.Null(new RandomLoadBalancer([], Random.Shared.Next).Pick(Now, null));
    }

    [Fact]
    public void Pick_IgnoresTheRequestHash()
    {
        var endpoints = RingHashLoadBalancerTests.Endpoints(3);
        ILoadBalancer balancer = new RandomLoadBalancer([.. endpoints], Random.Shared.Next);
        var seen = new HashSet<MeshEndpoint>();
        for (var i = 0; i < 300; i++)
        {
            seen.Add(balancer.Pick(Now, null, 42UL)!);
        }

        Assert.Equal(3, seen.Count);
    }
}
