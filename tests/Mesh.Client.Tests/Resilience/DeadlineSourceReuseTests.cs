using Mesh.Client.Discovery;
using Mesh.Client.Grpc;
using Mesh.Client.Http;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Tests.Grpc;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Client.Tests.Resilience;

/// <summary>
/// When the resilience handler may reuse an attempt's deadline source: only when nothing under it can still hold the
/// token once the attempt returned (a reused source would show a late reader another request's cancellation).
/// </summary>
public sealed class DeadlineSourceReuseTests : IAsyncLifetime
{
    private TestBackend _backend = null!;

    public async Task InitializeAsync() => _backend = await TestBackend.StartAsync("inventory-0", grpc: true);

    public async Task DisposeAsync() => await _backend.DisposeAsync();

    [Fact]
    public async Task XdsChannel_UnaryCalls_ReuseOneDeadlineSource()
    {
        await using var provider = Provider();
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);
        var sources = provider.GetRequiredService<MeshResiliencePolicies>().CancellationSources;

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("inventory-0", (await client.HelloAsync(new HelloRequest())).Backend);
        }

        // One call at a time: each returned its source and the next took it again (not 20 sources and 20 timers).
        Assert.Equal(1, sources.Count);
    }

    [Fact]
    public async Task GrpcClientFactory_MeshAddress_UnaryCalls_ReuseOneDeadlineSource()
    {
        await using var provider = Provider(services => services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("http://inventory"))
            .ConfigureChannel(o => o.Credentials = global::Grpc.Core.ChannelCredentials.Insecure));
        var client = provider.GetRequiredService<Greeter.GreeterClient>();
        var sources = provider.GetRequiredService<MeshResiliencePolicies>().CancellationSources;

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal("inventory-0", (await client.HelloAsync(new HelloRequest())).Backend);
        }

        // The factory's logging handlers sit between the mesh's handlers: they let go of the token too.
        Assert.Equal(1, sources.Count);
    }

    [Fact]
    public async Task StreamedBody_AppHandlerUnderTheMesh_SourceNotReused()
    {
        await using var provider = Provider(services => services.AddHttpClient("app").AddHttpMessageHandler(() => new AppHandler()));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");
        var sources = provider.GetRequiredService<MeshResiliencePolicies>().CancellationSources;

        for (var i = 0; i < 3; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Put, new Uri("http://inventory/"))
            {
                Version = System.Net.HttpVersion.Version20,
                VersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Content = new StreamContent(new MemoryStream([1, 2, 3])),
            };
            using var response = await client.SendAsync(request);
            Assert.Equal(2, response.Version.Major);
        }

        // The app's handler might still read the body with the attempt's token: its sources are left to the GC.
        Assert.Equal(0, sources.Count);
    }

    [Fact]
    public void LetsGoOfToken_OnlyChainsOfKnownHandlers()
    {
        var router = new MeshRouter(new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(_backend.Port)]))), TestSnapshots.Names);
        using var pools = new EndpointConnectionPools(new FixedSnapshotSource(router.Snapshot), TimeProvider.System, NullLogger<EndpointConnectionPools>.Instance);
        MeshHttpHandler Mesh(HttpMessageHandler inner) => new(router, pools, TimeProvider.System, NullLogger.Instance, "cp") { InnerHandler = inner };

        Assert.True(MeshResilienceHandler.LetsGoOfToken(Mesh(new MeshServiceOnlyHandler(router, "cp"))));
        Assert.True(MeshResilienceHandler.LetsGoOfToken(new LoggingHttpMessageHandler(NullLogger.Instance) { InnerHandler = Mesh(new SocketsHttpHandler()) }));
        Assert.True(MeshResilienceHandler.LetsGoOfToken(Mesh(new HttpClientHandler())));

        // The app's own handlers, above the mesh's routing or as the client's primary handler, are unknown.
        Assert.False(MeshResilienceHandler.LetsGoOfToken(new AppHandler { InnerHandler = Mesh(new SocketsHttpHandler()) }));
        Assert.False(MeshResilienceHandler.LetsGoOfToken(Mesh(new AppPrimaryHandler())));
        Assert.False(MeshResilienceHandler.LetsGoOfToken(null));
    }

    private ServiceProvider Provider(Action<IServiceCollection>? configure = null)
    {
        var services = MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(_backend.Port)]))));
        configure?.Invoke(services);
        return services.BuildServiceProvider();
    }

    private sealed class AppHandler : DelegatingHandler;

    private sealed class AppPrimaryHandler : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(new HttpResponseMessage());
    }
}
