using Mesh.Client.Discovery;
using Mesh.Client.Http;
using Mesh.Client.Routing;
using Mesh.Client.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Client.Tests.Http;

/// <summary>Where a request's attempts went, carried in its options only when handlers of the app run between the mesh's loop and its routing.</summary>
public sealed class AttemptTrailTests
{
    [Fact]
    public void DirectAttempt_Unmeasured_AfterAnyTrailWasAttached_AllocatesNothing()
    {
        // Once any request carried a trail (a sampled access-log entry, a client with app handlers), a request the mesh's
        // own loop sends unmeasured must not have its options created to look for one.
        using var other = new HttpRequestMessage(HttpMethod.Get, new Uri("http://orders/"));
        AttemptTrail.Attach(other, new AttemptTrail());
        var endpoint = TestSnapshots.Endpoint(9000);
        var router = new MeshRouter(new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [endpoint]))), TestSnapshots.Names);
        using var pools = new EndpointConnectionPools(new FixedSnapshotSource(router.Snapshot), TimeProvider.System, NullLogger<EndpointConnectionPools>.Instance);
        using var mesh = new MeshHttpHandler(router, pools, TimeProvider.System, NullLogger.Instance, "cp") { InnerHandler = new SocketsHttpHandler() };
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://orders/"));
        Assert.True(router.Snapshot.TryGetService("orders", 80, isDefaultPort: true, out var service));

        Attempt(mesh, request, service); // warm-up: the pool and the JIT
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Attempt(mesh, request, service);
        }

        // Nothing per attempt (an options dictionary would be about 100 B each); a one-off of the runtime's is not the request's.
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 1000, $"{allocated} B for 1000 attempts");

        // HttpRequestMessage.Options is created on first read: the request's was never read.
        var options = typeof(HttpRequestMessage).GetField("_options", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic);
        Assert.NotNull(options);
        Assert.Null(options.GetValue(request));
    }

    private static void Attempt(MeshHttpHandler mesh, HttpRequestMessage request, MeshService service)
    {
        Assert.True(mesh.TryStartAttempt(request, service, TimeProvider.System.GetTimestamp(), trail: null, CancellationToken.None, out var attempt, out _));
        MeshHttpHandler.End(attempt);
    }
}
