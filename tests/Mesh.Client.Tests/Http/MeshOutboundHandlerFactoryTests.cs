using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Http;

/// <summary>
/// The public outbound handler (<see cref="IMeshOutboundHandlerFactory"/>), as a reverse proxy or a hand-built HttpClient
/// uses it: the same routing as IHttpClientFactory clients, and by default nothing leaves the mesh.
/// </summary>
public sealed class MeshOutboundHandlerFactoryTests : IAsyncLifetime
{
    private readonly List<TestBackend> _backends = [];

    public async Task InitializeAsync()
    {
        for (var i = 0; i < 3; i++)
        {
            _backends.Add(await TestBackend.StartAsync($"orders-{i}"));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var backend in _backends)
        {
            await backend.DisposeAsync();
        }
    }

    [Fact]
    public async Task CreateHandler_AsInvoker_RoutesMeshHostAcrossEveryEndpointWithLogicalHost()
    {
        await using var provider = Provider(OrdersSnapshot());
        using var invoker = new HttpMessageInvoker(provider.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());

        var seen = new HashSet<string>();
        for (var i = 0; i < 6; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://orders.default/api"));
            using var response = await invoker.SendAsync(request, CancellationToken.None);
            seen.Add(await response.Content.ReadAsStringAsync());
        }

        Assert.Equal(["orders-0", "orders-1", "orders-2"], seen.Order());
        Assert.All(_backends, backend => Assert.Equal(["orders.default", "orders.default"], backend.Hosts));
    }

    [Theory]
    [InlineData("http://127.0.0.1:{0}/")]
    [InlineData("http://localhost:{0}/")]
    [InlineData("http://[::ffff:127.0.0.1]:{0}/")]
    public async Task CreateHandler_NoNonMeshHandler_RefusesOtherHostsNamingThem_NothingSent(string template)
    {
        await using var provider = Provider(OrdersSnapshot());
        using var client = new HttpClient(provider.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());
        var uri = new Uri(string.Format(System.Globalization.CultureInfo.InvariantCulture, template, _backends[0].Port));

        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => client.GetStringAsync(uri));

        Assert.Contains($"'{uri.IdnHost}'", error.Message, StringComparison.Ordinal);
        Assert.All(_backends, backend => Assert.Equal(0, backend.Hits));
    }

    [Fact]
    public async Task CreateHandler_NotSynced_MeshLookingHostFailsAtOnceEvenWithNonMeshHandler()
    {
        await using var provider = Provider(MeshSnapshot.Empty);
        using var client = new HttpClient(provider.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler(
            new MeshOutboundHandlerOptions { NonMeshHandler = new SocketsHttpHandler() }));

        var error = await Assert.ThrowsAsync<MeshNotSyncedException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.Equal("orders", error.Service);
    }

    [Fact]
    public async Task CreateHandler_WithNonMeshHandler_OtherHostsGoThroughIt()
    {
        await using var provider = Provider(OrdersSnapshot());
        using var client = new HttpClient(provider.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler(
            new MeshOutboundHandlerOptions { NonMeshHandler = new SocketsHttpHandler() }));

        var body = await client.GetStringAsync(new Uri($"http://127.0.0.1:{_backends[2].Port}/"));

        Assert.Equal("orders-2", body);
        Assert.Equal(1, _backends[2].Hits);
    }

    [Fact]
    public async Task Dispose_DisposesNonMeshHandler_KeepsSharedPoolsServingOtherClients()
    {
        await using var provider = Provider(OrdersSnapshot());
        var factory = provider.GetRequiredService<IMeshOutboundHandlerFactory>();
        var nonMesh = new TrackingHandler();
        var first = new HttpClient(factory.CreateHandler(new MeshOutboundHandlerOptions { NonMeshHandler = nonMesh }));
        Assert.StartsWith("orders-", await first.GetStringAsync(new Uri("http://orders/")), StringComparison.Ordinal);

        first.Dispose();
        using var second = new HttpClient(factory.CreateHandler());
        var fromFactoryClient = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.True(nonMesh.Disposed);
        Assert.StartsWith("orders-", await second.GetStringAsync(new Uri("http://orders/")), StringComparison.Ordinal);
        Assert.StartsWith("orders-", await fromFactoryClient.GetStringAsync(new Uri("http://orders/")), StringComparison.Ordinal);
    }

    private static ServiceProvider Provider(MeshSnapshot snapshot) =>
        MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();

    private MeshSnapshot OrdersSnapshot()
    {
        var endpoints = _backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray();
        var cluster = TestSnapshots.Cluster("orders", 80, endpoints, outlier: OutlierDetectionSettings.Default with { Consecutive5xx = 3 });
        return new MeshSnapshot("test", [.. TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster))], [cluster]);
    }

    private sealed class TrackingHandler : HttpMessageHandler
    {
        public bool Disposed { get; private set; }

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage(HttpStatusCode.NoContent));

        protected override void Dispose(bool disposing)
        {
            Disposed = true;
            base.Dispose(disposing);
        }
    }
}
