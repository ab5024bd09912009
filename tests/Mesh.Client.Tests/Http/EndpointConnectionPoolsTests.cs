using Mesh.Client.Discovery;
using Mesh.Client.Http;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Http;

public sealed class EndpointConnectionPoolsTests
{
    [Fact]
    public void Get_SameAuthority_SharesOnePool()
    {
        var source = new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(9000)])));
        using var pools = new EndpointConnectionPools(source, new FakeTimeProvider(), NullLogger<EndpointConnectionPools>.Instance);

        var first = pools.Get(new MeshEndpoint("127.0.0.1", 9000));
        var second = pools.Get(new MeshEndpoint("127.0.0.1", 9000));

        Assert.Same(first, second);
        Assert.NotSame(first, pools.Get(new MeshEndpoint("127.0.0.1", 9001)));
    }

    [Fact]
    public void Sweep_EndpointLeftSnapshot_PoolDisposedOnlyAfterDrainTime()
    {
        var kept = TestSnapshots.Endpoint(9000);
        var removed = TestSnapshots.Endpoint(9001);
        var source = new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [kept, removed])));
        var time = new FakeTimeProvider();
        using var pools = new EndpointConnectionPools(source, time, NullLogger<EndpointConnectionPools>.Instance);
        pools.Get(kept);
        var removedPool = pools.Get(removed);

        source.Set(TestSnapshots.Snapshot(("orders", 80, [kept])));
        Assert.Equal(2, pools.Count);

        time.Advance(EndpointConnectionPools.DrainTime / 2);
        Assert.Equal(2, pools.Count);

        time.Advance(EndpointConnectionPools.DrainTime);
        Assert.Equal(1, pools.Count);
        Assert.NotSame(removedPool, pools.Get(removed));
    }

    [Fact]
    public void Get_TlsCluster_SeparatePoolPerTlsSettingsAndLookupAllocatesNothing()
    {
        var endpoint = TestSnapshots.Endpoint(9000);
        var plain = TestSnapshots.Cluster("orders", 80, [endpoint]);
        var tls = new MeshCluster(plain.Name, plain.ServiceHost, plain.Policy, [endpoint], tls: new UpstreamTlsSettings([new StringMatch(StringMatchKind.Exact, "spiffe://cluster.local/ns/default/sa/orders", false)]));
        var other = new MeshCluster(plain.Name, plain.ServiceHost, plain.Policy, [endpoint], tls: new UpstreamTlsSettings([new StringMatch(StringMatchKind.Exact, "spiffe://cluster.local/ns/default/sa/payments", false)]));
        var source = new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [endpoint])));
        using var pools = new EndpointConnectionPools(source, new FakeTimeProvider(), NullLogger<EndpointConnectionPools>.Instance);

        var tlsPool = pools.Get(endpoint, tls);
        Assert.NotSame(pools.Get(endpoint, plain), tlsPool);
        Assert.NotSame(tlsPool, pools.Get(endpoint, other));
        Assert.Same(pools.Get(endpoint), pools.Get(endpoint, plain));

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            pools.Get(endpoint, tls);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(3, pools.Count);
    }
}
