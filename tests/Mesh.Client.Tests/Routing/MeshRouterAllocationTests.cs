using Mesh.Client.Discovery;
using Mesh.Client.Routing;

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
}
