using System.Net;
using System.Net.Sockets;
using Mesh.Client.Tests.Support;
using Mesh.Client.Tests.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Microsoft.Extensions.DependencyInjection;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Http;

/// <summary>
/// A route that mirrors never lets a request leave the mesh when the mirror's cluster or listener goes away. The
/// attacker's path: the client's own primary handler resolves every host name to a trap server (as a hijacked DNS
/// or hosts file would); nothing, neither the caller's request nor its mirror, may ever reach it.
/// </summary>
public sealed class MirrorFailClosedTests : IAsyncLifetime
{
    private TestBackend _orders = null!;
    private TestBackend _shadow = null!;
    private TestBackend _trap = null!;

    public async Task InitializeAsync()
    {
        _orders = await TestBackend.StartAsync("orders");
        _shadow = await TestBackend.StartAsync("shadow");
        _trap = await TestBackend.StartAsync("trap");
    }

    public async Task DisposeAsync()
    {
        await _orders.DisposeAsync();
        await _shadow.DisposeAsync();
        await _trap.DisposeAsync();
    }

    [Fact]
    public async Task Mirror_ClusterAndListenerDropped_MirrorGoesToTheRetainedCluster_NothingReachesDns()
    {
        var first = MeshSnapshotBuilderTests.Build(
            [Listener("orders"), Listener("shadow")],
            [MeshSnapshotBuilderTests.MirroredRoutes("orders", "shadow"), Routes("shadow")],
            [Cluster("orders"), Cluster("shadow")],
            [Endpoints("orders", 80, ("127.0.0.1", _orders.Port, HealthStatus.Healthy)), Endpoints("shadow", 80, ("127.0.0.1", _shadow.Port, HealthStatus.Healthy))]);

        // The shadow service is gone from LDS and CDS while the orders route still mirrors to it.
        var second = MeshSnapshotBuilderTests.Build(
            [Listener("orders")],
            [MeshSnapshotBuilderTests.MirroredRoutes("orders", "shadow")],
            [Cluster("orders")],
            [Endpoints("orders", 80, ("127.0.0.1", _orders.Port, HealthStatus.Healthy))],
            first);
        var source = new FixedSnapshotSource(second);
        await using var provider = BuildClient(source);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        using var response = await client.GetAsync(new Uri("http://orders/items"));

        Assert.Equal("orders", await response.Content.ReadAsStringAsync());
        await Poll.UntilAsync(() => _shadow.Hits == 1, "the mirror to reach the retained shadow cluster");
        Assert.Equal(0, _trap.Hits);
    }

    [Fact]
    public async Task Mirror_ToAClusterNeverSeen_CallerStaysInTheMesh_AndNothingReachesDns()
    {
        var snapshot = MeshSnapshotBuilderTests.Build(
            [Listener("orders")],
            [MeshSnapshotBuilderTests.MirroredRoutes("orders", "shadow")],
            [Cluster("orders")],
            [Endpoints("orders", 80, ("127.0.0.1", _orders.Port, HealthStatus.Healthy))]);
        await using var provider = BuildClient(new FixedSnapshotSource(snapshot));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        for (var i = 0; i < 5; i++)
        {
            using var response = await client.GetAsync(new Uri("http://orders/items"));
            Assert.Equal("orders", await response.Content.ReadAsStringAsync());
        }

        using var shadowHost = await client.GetAsync(new Uri("http://shadow.default.svc.cluster.local/items"));

        // The one request that reached the trap is the one the app itself sent to a host the mesh does not know.
        Assert.Equal(5, _orders.Hits);
        Assert.Equal(0, _shadow.Hits);
        Assert.Equal(1, _trap.Hits);
    }

    private ServiceProvider BuildClient(FixedSnapshotSource source)
    {
        var services = MeshServices.Create(source);
        var trap = _trap.Port;
        services.AddHttpClient("app").ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
        {
            // Every name "resolves" to the trap: a request that leaves the mesh by DNS lands there.
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, trap), cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            },
        });
        return services.BuildServiceProvider();
    }
}
