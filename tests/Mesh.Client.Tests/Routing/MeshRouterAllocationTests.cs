using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Xds;

namespace Mesh.Client.Tests.Routing;

public sealed class MeshRouterAllocationTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Route_SuccessPath_AllocatesNothing(bool leastRequest)
    {
        var policy = leastRequest ? LoadBalancingPolicy.LeastRequest : LoadBalancingPolicy.RoundRobin;
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(9000), TestSnapshots.Endpoint(9001)], policy);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/api");
        var now = TimeProvider.System.GetTimestamp();
        router.Route(request, now, null, out _, out _, out _);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            router.Route(request, now, null, out _, out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>What a VirtualService becomes: a whole-path regex, a header regex and a :method match, then a weighted split.</summary>
    [Fact]
    public void Route_RegexAndMethodMatches_AllocateNothing()
    {
        var v1 = TestSnapshots.Cluster("v1", 80, [TestSnapshots.Endpoint(9000)]);
        var v2 = TestSnapshots.Cluster("v2", 80, [TestSnapshots.Endpoint(9001)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute(null, null, true, [new WeightedCluster(v2, 1)], pathRegex: StringMatch.SafeRegex("/beta/[0-9]+", "p", [])),
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)], [new HeaderMatch("x-user", StringMatch.SafeRegex("beta-[0-9]+", "h", []), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)], [new HeaderMatch(":method", new StringMatch(StringMatchKind.Exact, "POST", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(v1, 90), new WeightedCluster(v2, 10)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [v1, v2]);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/beta/12x");
        request.Headers.Add("x-user", "gamma");
        var now = TimeProvider.System.GetTimestamp();
        Assert.Equal(RouteStatus.Routed, router.Route(request, now, null, out _, out _, out _));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            router.Route(request, now, null, out _, out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
