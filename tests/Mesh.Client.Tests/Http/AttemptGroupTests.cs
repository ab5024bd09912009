using Mesh.Client.Discovery;
using Mesh.Client.Http;

namespace Mesh.Client.Tests.Http;

/// <summary>The attempts of one logical request take distinct endpoints, and fall back to any endpoint when all are taken.</summary>
public sealed class AttemptGroupTests
{
    // A balancer that always draws the first endpoint: without the group, every attempt would land there.
    private static MeshCluster Cluster(params MeshEndpoint[] endpoints) =>
        new("outbound|80||orders.default.svc.cluster.local", "orders.default.svc.cluster.local", LoadBalancingPolicy.Random, [.. endpoints], random: _ => 0);

    [Fact]
    public void Take_SameBalancerPickForEachAttempt_EachAttemptGetsAnotherEndpoint()
    {
        var cluster = Cluster(TestSnapshots.Endpoint(1), TestSnapshots.Endpoint(2), TestSnapshots.Endpoint(3));
        var group = new AttemptGroup();

        var taken = Enumerable.Range(0, 3).Select(_ => group.Take(cluster, cluster.PickEndpoint(0, 1, avoid: null)!, 0, 1)).ToList();

        Assert.Equal([1, 2, 3], taken.Select(e => e.Port).Order());
        Assert.Equal(3, group.Count);
    }

    [Fact]
    public void Take_AllEndpointsTaken_FallsBackToTheBalancersPick()
    {
        var cluster = Cluster(TestSnapshots.Endpoint(1), TestSnapshots.Endpoint(2));
        var group = new AttemptGroup();
        group.Take(cluster, cluster.Endpoints[0], 0, 1);
        group.Take(cluster, cluster.Endpoints[0], 0, 1);

        var third = group.Take(cluster, cluster.Endpoints[1], 0, 1);

        Assert.Same(cluster.Endpoints[1], third);
        Assert.Equal(2, group.Count);
    }

    [Fact]
    public void Take_UnhealthyEndpointNotTaken_IsStillNeverChosen()
    {
        var cluster = Cluster(TestSnapshots.Endpoint(1), TestSnapshots.Endpoint(2, healthy: false), TestSnapshots.Endpoint(3));
        var group = new AttemptGroup();

        var first = group.Take(cluster, cluster.Endpoints[0], 0, 1);
        var second = group.Take(cluster, cluster.Endpoints[0], 0, 1);
        var third = group.Take(cluster, cluster.Endpoints[0], 0, 1);

        Assert.Equal(1, first.Port);
        Assert.Equal(3, second.Port);
        Assert.Equal(1, third.Port); // all healthy ones taken: the balancer's pick, never the unhealthy endpoint
    }

    [Fact]
    public void Take_SameServerInAnotherSubsetCluster_CountsAsTaken()
    {
        // Subset clusters hold their own endpoint instances for the same servers: distinct means distinct servers.
        var v1 = Cluster(TestSnapshots.Endpoint(1), TestSnapshots.Endpoint(2));
        var v2 = new MeshCluster("outbound|80|v2|orders.default.svc.cluster.local", "orders.default.svc.cluster.local", LoadBalancingPolicy.Random, [TestSnapshots.Endpoint(1), TestSnapshots.Endpoint(2)], random: _ => 0);
        var group = new AttemptGroup();

        group.Take(v1, v1.Endpoints[0], 0, 1);
        var second = group.Take(v2, v2.Endpoints[0], 0, 1);

        Assert.Equal(2, second.Port);
    }

    [Fact]
    public async Task Take_ConcurrentAttempts_NeverShareAnEndpoint()
    {
        var cluster = Cluster([.. Enumerable.Range(1, 8).Select(port => TestSnapshots.Endpoint(port))]);
        for (var round = 0; round < 50; round++)
        {
            var group = new AttemptGroup();
            using var start = new ManualResetEventSlim();
            var attempts = Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
            {
                start.Wait();
                return group.Take(cluster, cluster.PickEndpoint(0, 1, avoid: null)!, 0, 1).Port;
            })).ToArray();
            start.Set();

            var ports = await Task.WhenAll(attempts);

            Assert.Equal(8, ports.Distinct().Count());
        }
    }
}
