using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Xds;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Grpc;

/// <summary><c>xds:///</c> channels (CreateMeshGrpcChannel and AddGrpcClient) against real h2c Kestrel backends.</summary>
public sealed class XdsChannelTests : IAsyncLifetime
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

    [Fact]
    public async Task Call_RouteTable_AppliedPerCall_HeaderRouteAndWeightedSplit()
    {
        // Route 0 sends x-beta: 1 to v2; route 1 splits 90/10. The channel published only route 0's endpoints and
        // balanced round robin before, so both the header route and the split were lost.
        var v1 = new MeshCluster("outbound|80|v1|inventory.default.svc.cluster.local", "inventory.default.svc.cluster.local", LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(_backends[0].Port)]);
        var v2 = new MeshCluster("outbound|80|v2|inventory.default.svc.cluster.local", "inventory.default.svc.cluster.local", LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(_backends[1].Port)]);
        var service = TestSnapshots.Service(
            "inventory",
            80,
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)], [new HeaderMatch("x-beta", new StringMatch(StringMatchKind.Exact, "1", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(v1, 90), new WeightedCluster(v2, 10)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("inventory", service), [v1, v2]);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);

        var beta = new Metadata { { "x-beta", "1" } };
        var misroutes = 0;
        for (var i = 0; i < 100; i++)
        {
            misroutes += (await client.HelloAsync(new HelloRequest(), beta)).Backend == "inventory-1" ? 0 : 1;
        }

        const int Calls = 1000;
        var toV2 = 0;
        for (var i = 0; i < Calls; i++)
        {
            toV2 += (await client.HelloAsync(new HelloRequest())).Backend == "inventory-1" ? 1 : 0;
        }

        Assert.Equal(0, misroutes);
        Assert.InRange(toV2 / (double)Calls, 0.06, 0.14);
    }

    [Fact]
    public async Task Call_RouteRetryPolicy_RetriesUnavailableOnAnotherEndpoint_AndWithoutItCallsFail()
    {
        await using var failing = await TestBackend.StartAsync("failing", grpc: true, grpcFailure: StatusCode.Unavailable);

        // Outlier detection off: it would eject the failing endpoint (see the test below), and this one is about retries.
        var cluster = TestSnapshots.Cluster("inventory", 80, [TestSnapshots.Endpoint(failing.Port), TestSnapshots.Endpoint(_backends[0].Port)],
            outlier: OutlierDetectionSettings.EnvoyDefaults with { Consecutive5xx = 0 });
        MeshSnapshot Snapshot(RouteRetryPolicy? retry) => new(
            "test",
            TestSnapshots.Bind("inventory", TestSnapshots.Service("inventory", 80, new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])
            {
                Resilience = retry is null ? null : new RouteResilience(timeout: null, retry),
            })),
            [cluster]);
        var source = new FixedSnapshotSource(Snapshot(new RouteRetryPolicy(RetryOn.GrpcUnavailable, 2, null, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10))));
        await using var provider = MeshServices.Create(source).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);

        // The route retries UNAVAILABLE (a trailers-only grpc-status) and the retry avoids the endpoint that failed.
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("inventory-0", (await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.True(failing.Hits > 0, "no call went to the failing endpoint, so nothing was retried");

        // Without the route's policy, Mesh:Resilience decides, and it does not retry gRPC statuses: some calls fail.
        source.Set(Snapshot(retry: null));
        var failed = await CountUnavailableAsync(client, calls: 20);

        Assert.True(failed > 0, "without a route retry policy every call still succeeded");
    }

    [Fact]
    public async Task Call_EndpointAnswersEveryCallTrailersOnlyUnavailable_IsEjectedAfterConsecutive5xx()
    {
        // As Envoy's router feeds outlier detection: a grpc-status in the response headers counts as its HTTP mapping
        // (UNAVAILABLE → 503), so a gRPC server failing every call is ejected, though each answer is an HTTP 200.
        await using var failing = await TestBackend.StartAsync("failing", grpc: true, grpcFailure: StatusCode.Unavailable);
        var bad = TestSnapshots.Endpoint(failing.Port);
        var cluster = TestSnapshots.Cluster("inventory", 80, [bad, TestSnapshots.Endpoint(_backends[0].Port)],
            outlier: OutlierDetectionSettings.EnvoyDefaults with { Consecutive5xx = 3, MaxEjectionPercent = 100, PanicThresholdPercent = 0 });
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("inventory", TestSnapshots.Service("inventory", 80, cluster)), [cluster]);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        using var channel = Channel("xds:///inventory", provider);
        var client = new Greeter.GreeterClient(channel);

        var failed = await CountUnavailableAsync(client, calls: 20);

        Assert.Equal(3, failed);
        Assert.Equal(3, failing.Hits);
        Assert.True(bad.IsEjected(TimeProvider.System.GetTimestamp()), "three trailers-only UNAVAILABLE answers in a row did not eject the endpoint");
    }

    [Theory]
    [InlineData("application/grpc", "14", 503)]
    [InlineData("application/grpc", "13", 500)]
    [InlineData("application/grpc", "4", 504)]
    [InlineData("application/grpc", "0", 200)]
    [InlineData("application/grpc", null, 200)]
    [InlineData("application/json", "14", 200)]
    public void OutlierStatus_TrailersOnlyGrpcStatus_CountsAsItsHttpMapping(string requestType, string? grpcStatus, int expected)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://inventory/greet.Greeter/Hello")
        {
            Content = new ByteArrayContent([]) { Headers = { ContentType = new(requestType) } },
        };
        using var response = new HttpResponseMessage(System.Net.HttpStatusCode.OK);
        if (grpcStatus is not null)
        {
            response.Headers.TryAddWithoutValidation("grpc-status", grpcStatus);
        }

        Assert.Equal(expected, Mesh.Client.Http.MeshHttpHandler.OutlierStatus(request, response));
    }

    /// <summary>Makes <paramref name="calls"/> calls and counts those that failed UNAVAILABLE.</summary>
    private static async Task<int> CountUnavailableAsync(Greeter.GreeterClient client, int calls)
    {
        var failed = 0;
        for (var i = 0; i < calls; i++)
        {
            try
            {
                await client.HelloAsync(new HelloRequest());
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
            {
                failed++;
            }
        }

        return failed;
    }

    [Fact]
    public async Task Call_HandBuiltXdsChannel_FailsUnavailableSayingHowToCreateAMeshChannel()
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot(_backends))).BuildServiceProvider();
        using var channel = GrpcChannel.ForAddress("xds:///inventory", new GrpcChannelOptions { ServiceProvider = provider, Credentials = ChannelCredentials.Insecure });

        var exception = await Assert.ThrowsAsync<RpcException>(async () => await new Greeter.GreeterClient(channel).HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, exception.StatusCode);
        Assert.Contains("CreateMeshGrpcChannel", exception.Status.Detail, StringComparison.Ordinal);
        Assert.All(_backends, backend => Assert.Equal(0, backend.Hits));
    }

    [Fact]
    public async Task CreateMeshGrpcChannel_OwnHttpHandlerOrNoServiceName_Throws()
    {
        await using var provider = MeshServices.Create(new FixedSnapshotSource(InventorySnapshot(_backends))).BuildServiceProvider();

        var handler = Assert.Throws<ArgumentException>(() => provider.CreateMeshGrpcChannel("xds:///inventory", o => o.HttpHandler = new SocketsHttpHandler()));
        var empty = Assert.Throws<ArgumentException>(() => provider.CreateMeshGrpcChannel("xds:///"));

        Assert.Contains("HttpHandler", handler.Message, StringComparison.Ordinal);
        Assert.Contains("does not name a mesh service", empty.Message, StringComparison.Ordinal);
    }

    private static GrpcChannel Channel(string address, IServiceProvider provider) => provider.CreateMeshGrpcChannel(address);

    private static MeshSnapshot InventorySnapshot(IEnumerable<TestBackend> backends) =>
        TestSnapshots.Snapshot(("inventory", 80, [.. backends.Select(b => TestSnapshots.Endpoint(b.Port))]));
}
