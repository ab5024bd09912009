using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Discovery;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Grpc;

public sealed class XdsResolverTests : IAsyncLifetime
{
    private readonly List<TestBackend> _backends = [];

    public async Task InitializeAsync()
    {
        for (var i = 0; i < 2; i++)
        {
            _backends.Add(await TestBackend.StartAsync($"inventory-{i}", grpc: true));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var backend in _backends)
        {
            await backend.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("xds:///inventory")]
    [InlineData("xds:///inventory.default.svc.cluster.local:80")]
    public async Task Call_XdsAddress_ReachesEveryBackend(string address)
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot(_backends))).BuildServiceProvider();
        using var channel = Channel(address, provider);
        var client = new Greeter.GreeterClient(channel);

        var seen = new HashSet<string>();
        for (var i = 0; i < 10; i++)
        {
            seen.Add((await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.Equal(["inventory-0", "inventory-1"], seen.Order());
    }

    [Fact]
    public async Task Call_EndpointRemovedFromSnapshot_StopsReachingIt()
    {
        var source = new FixedSnapshotSource(InventorySnapshot(_backends));
        await using var provider = MeshServices.Create(source).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);
        for (var i = 0; i < 4; i++)
        {
            await client.HelloAsync(new HelloRequest());
        }

        Assert.True(_backends[0].Hits > 0);
        source.Set(InventorySnapshot([_backends[1]]));

        // The balancer applies the new address list asynchronously; poll until calls settle on the remaining backend.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        var consecutive = 0;
        while (consecutive < 10)
        {
            Assert.True(DateTime.UtcNow < deadline, "calls kept reaching the removed endpoint");
            var reply = await client.HelloAsync(new HelloRequest());
            consecutive = reply.Backend == "inventory-1" ? consecutive + 1 : 0;
        }

        var hitsBefore = _backends[0].Hits;
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("inventory-1", (await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.Equal(hitsBefore, _backends[0].Hits);
    }

    [Fact]
    public async Task Call_NotSynced_FailsUnavailableNamingTheService()
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(MeshSnapshot.Empty)).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);

        var exception = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, exception.StatusCode);
        Assert.Contains("'inventory'", exception.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("not yet synced", exception.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Call_UnknownService_FailsUnavailableNamingIt()
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot(_backends))).BuildServiceProvider();
        using var channel = Channel("xds:///billing", provider);
        var client = new Greeter.GreeterClient(channel);

        var exception = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, exception.StatusCode);
        Assert.Contains("'billing'", exception.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Call_ServiceWithoutEndpoints_FailsNoHealthyEndpoint()
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot([]))).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);

        var exception = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, exception.StatusCode);
        Assert.Contains("no healthy endpoint", exception.Status.Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("http://inventory")]
    [InlineData("xds:///inventory")]
    public async Task ClientFactory_MeshAddress_BalancesPerCall(string address)
    {
        var services = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot(_backends)));
        services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri(address))
            .ConfigureChannel(o => o.Credentials = ChannelCredentials.Insecure);
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<Greeter.GreeterClient>();

        var seen = new HashSet<string>();
        for (var i = 0; i < 10; i++)
        {
            seen.Add((await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.Equal(["inventory-0", "inventory-1"], seen.Order());
        Assert.All(_backends, backend => Assert.True(backend.Hits >= 3, $"{backend.Name} got {backend.Hits} of 10 calls"));
    }

    private static GrpcChannel Channel(string address, IServiceProvider provider) =>
        GrpcChannel.ForAddress(address, new GrpcChannelOptions { ServiceProvider = provider, Credentials = ChannelCredentials.Insecure });

    private static MeshSnapshot InventorySnapshot(IEnumerable<TestBackend> backends) =>
        TestSnapshots.Snapshot(("inventory", 80, [.. backends.Select(b => TestSnapshots.Endpoint(b.Port))]));
}
