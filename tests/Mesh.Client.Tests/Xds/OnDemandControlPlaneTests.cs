using System.Diagnostics;
using System.Text;
using Mesh.Client.Http;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Mesh.ControlPlane;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Mesh.Client.Tests.Xds;

/// <summary>
/// On-demand subscriptions end to end: a real control plane (in process, its plaintext ADS port, a config folder of
/// generated ServiceEntries), a real Kestrel backend, and a Mesh.Client host calling through IHttpClientFactory.
/// </summary>
public sealed class OnDemandControlPlaneTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Services = 40;
    private string _root = null!;
    private ControlPlaneHost _controlPlane = null!;
    private TestBackend _backend = null!;
    private TestBackend _greeter = null!;

    public async Task InitializeAsync()
    {
        _backend = await TestBackend.StartAsync("backend");
        _greeter = await TestBackend.StartAsync("greeter", grpc: true);
        _root = Directory.CreateTempSubdirectory("mesh-ondemand-").FullName;
        var config = Directory.CreateDirectory(Path.Combine(_root, "config")).FullName;
        await File.WriteAllTextAsync(Path.Combine(config, "services.yaml"), ServiceEntries(Services, _backend.Port));
        await File.WriteAllTextAsync(Path.Combine(config, "greeter.yaml"), $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: greeter, namespace: default}
            spec:
              hosts: [greeter.default.svc.cluster.local]
              ports: [{number: 80, name: grpc, protocol: GRPC}]
              resolution: STATIC
              endpoints: [{address: 127.0.0.1, ports: {grpc: {{{_greeter.Port}}}}}]
            """);
        _controlPlane = await ControlPlaneHost.StartAsync(
        [
            $"--ControlPlane:ConfigDirectory={config}",
            $"--ControlPlane:StateDirectory={Path.Combine(_root, "state")}",
            "--ControlPlane:AdminAddress=http://127.0.0.1:0",
            "--ControlPlane:SecureAddress=https://127.0.0.1:0",
            "--ControlPlane:XdsAddress=http://127.0.0.1:0",
            "--ControlPlane:DebounceInterval=00:00:00.020",
            "--Logging:LogLevel:Default=Warning",
        ]);
    }

    public async Task DisposeAsync()
    {
        await _controlPlane.DisposeAsync();
        await _backend.DisposeAsync();
        await _greeter.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary><paramref name="count"/> STATIC ServiceEntries <c>svc-i</c> on port 80 whose one endpoint is the backend.</summary>
    internal static string ServiceEntries(int count, int port)
    {
        var yaml = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            yaml.Append(System.Globalization.CultureInfo.InvariantCulture, $$$"""
                apiVersion: networking.istio.io/v1
                kind: ServiceEntry
                metadata: {name: svc-{{{i}}}, namespace: default}
                spec:
                  hosts: [svc-{{{i}}}.default.svc.cluster.local]
                  ports: [{number: 80, name: http, protocol: HTTP}]
                  resolution: STATIC
                  endpoints: [{address: 127.0.0.1, ports: {http: {{{port}}}}}]
                ---

                """);
        }

        return yaml.ToString();
    }

    [Fact]
    public async Task FirstCall_HostNotSubscribed_WaitsForItsConfigThenReachesTheBackend_AndOnlyItIsSubscribed()
    {
        using var app = await StartClientAsync();
        var client = app.Services.GetRequiredService<XdsClient>();
        Assert.Empty(client.Current.Services);
        Assert.NotNull(app.Services.GetRequiredService<Mesh.Client.Routing.MeshRouter>().OnDemand);

        var body = await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient().GetStringAsync(new Uri("http://svc-7/"));

        Assert.Equal("backend", body);
        Assert.Equal(["svc-7"], client.OnDemand!.ListenerNames());
        Assert.Equal(["svc-7"], client.Current.Services.Select(s => s.ListenerName));
        Assert.Equal(["outbound|80||svc-7.default.svc.cluster.local"], client.Current.Clusters.Keys.Order());

        // Another spelling of the same service is already known: no second subscription.
        Assert.Equal("backend", await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient().GetStringAsync(new Uri("http://svc-7.default.svc.cluster.local/")));
        Assert.Equal(1, client.OnDemand.SubscribeCount);
    }

    [Fact]
    public async Task ConcurrentFirstCalls_OneSubscription_AllSucceed()
    {
        using var app = await StartClientAsync();
        var client = app.Services.GetRequiredService<XdsClient>();
        var http = app.Services.GetRequiredService<IHttpClientFactory>().CreateClient();

        var bodies = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => http.GetStringAsync(new Uri("http://svc-3/"))));

        Assert.All(bodies, b => Assert.Equal("backend", b));
        Assert.Equal(1, client.OnDemand!.SubscribeCount);
        Assert.Equal(["svc-3"], client.OnDemand.ListenerNames());
    }

    [Fact]
    public async Task NonexistentService_FailsFastWithTheUnknownServiceError_UnsubscribedAndNotLookedUpAgain()
    {
        // A long subscription timeout: only the control plane's answer can make this fast.
        using var app = await StartClientAsync(("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        var client = app.Services.GetRequiredService<XdsClient>();
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());
        await meshOnly.GetStringAsync(new Uri("http://svc-1/")); // the stream is up and has a name

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://nope/")));
        watch.Stop();

        Assert.Contains("Mesh service 'nope' is unknown to the control plane", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.Equal(["svc-1"], client.OnDemand!.ListenerNames());

        // Within the negative TTL: the same error at once, no second subscription.
        await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://nope/")));
        Assert.Equal(2, client.OnDemand.SubscribeCount);
        Assert.Equal(["svc-1"], client.OnDemand.ListenerNames());
        Assert.Equal(["svc-1"], client.Current.Services.Select(s => s.ListenerName));
    }

    [Fact]
    public async Task NonexistentService_FirstNameOfTheStream_FailsFast()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://nope:8080/")));

        Assert.Contains("is unknown to the control plane", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.Empty(app.Services.GetRequiredService<XdsClient>().OnDemand!.ListenerNames());
    }

    [Fact]
    public async Task NonMeshHost_NeverWaits_GoesOutAsBefore()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        var http = app.Services.GetRequiredService<IHttpClientFactory>().CreateClient();

        var body = await http.GetStringAsync(new Uri($"http://127.0.0.1:{_backend.Port}/"));

        Assert.Equal("backend", body);
        Assert.Equal(0, app.Services.GetRequiredService<XdsClient>().OnDemand!.SubscribeCount);
    }

    [Fact]
    public async Task Warm_SubscribedAtStart_InTheFirstSnapshot()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Warm:0", "svc-2"), ("Mesh:ControlPlane:Warm:1", "svc-9.default:80"));
        var client = app.Services.GetRequiredService<XdsClient>();

        await Poll.UntilAsync(() => client.Current.Services.Length == 2, "the warm services are in the snapshot");

        Assert.Equal(["svc-2", "svc-9.default:80"], client.Current.Services.Select(s => s.ListenerName).Order());
        Assert.Equal("backend", await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient().GetStringAsync(new Uri("http://svc-9.default/")));
        Assert.Equal(0, client.OnDemand!.SubscribeCount);
    }

    [Fact]
    public async Task UnusedService_UnsubscribedAfterTheTimeout_AndSubscribedAgainOnTheNextCall()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:UnusedServiceTimeout", "00:00:01"));
        var client = app.Services.GetRequiredService<XdsClient>();
        var http = app.Services.GetRequiredService<IHttpClientFactory>().CreateClient();
        await http.GetStringAsync(new Uri("http://svc-4/"));

        await Poll.UntilAsync(() => client.Current.Services.IsEmpty && client.Current.Clusters.Count == 0, "svc-4 unsubscribed and its cluster dropped");
        Assert.Empty(client.OnDemand!.ListenerNames());

        Assert.Equal("backend", await http.GetStringAsync(new Uri("http://svc-4/")));
        Assert.Equal(2, client.OnDemand.SubscribeCount);
    }

    [Fact]
    public async Task RandomHostNames_SubscriptionSetNeverPassesTheCap_AndTheRealServiceStillWorksAfterwards()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:MaxOnDemandServices", "20"));
        var client = app.Services.GetRequiredService<XdsClient>();
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());
        var random = new Random(7);
        var capped = 0;
        for (var round = 0; round < 20; round++)
        {
            var calls = Enumerable.Range(0, 100).Select(async _ =>
            {
                try
                {
                    await meshOnly.GetStringAsync(new Uri($"http://x{random.Next():x8}/"));
                }
                catch (ServiceMeshException e) when (e.Message.Contains("Mesh:ControlPlane:MaxOnDemandServices", StringComparison.Ordinal))
                {
                    Interlocked.Increment(ref capped);
                }
                catch (ServiceMeshException e) when (e.Message.Contains("is unknown to the control plane", StringComparison.Ordinal))
                {
                }
            }).ToList();
            await Task.WhenAll(calls);
            Assert.True(client.OnDemand!.Count <= 20, $"{client.OnDemand.Count} hosts known");
            Assert.True(client.OnDemand.ListenerNames().Count <= 20);
        }

        Assert.True(capped > 0);
        Assert.True(client.OnDemand!.SubscribeCount <= 2000);

        // Absent names leave the subscription; after the negative TTL a real service subscribes again.
        await Poll.UntilAsync(() => client.OnDemand.ListenerNames().Count == 0, "random names unsubscribed");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        string? body = null;
        while (body is null)
        {
            try
            {
                body = await meshOnly.GetStringAsync(new Uri("http://svc-5/"));
            }
            catch (ServiceMeshException e) when (e.Message.Contains("MaxOnDemandServices", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
            }
        }

        Assert.Equal("backend", body);
    }

    [Fact]
    public async Task XdsChannel_TargetNotSubscribed_FirstCallWaitsThenSucceeds()
    {
        using var app = await StartClientAsync();
        using var channel = app.Services.CreateMeshGrpcChannel("xds:///greeter");

        var reply = await new Mesh.Client.Tests.Grpc.Greeter.GreeterClient(channel).HelloAsync(new Mesh.Client.Tests.Grpc.HelloRequest());

        Assert.Equal("greeter", reply.Backend);
        Assert.Equal(["greeter"], app.Services.GetRequiredService<XdsClient>().OnDemand!.ListenerNames());
    }

    [Fact]
    public async Task XdsChannel_TargetDoesNotExist_FailsFastWithTheUnknownServiceError()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        using var channel = app.Services.CreateMeshGrpcChannel("xds:///nope");

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<global::Grpc.Core.RpcException>(() => new Mesh.Client.Tests.Grpc.Greeter.GreeterClient(channel).HelloAsync(new Mesh.Client.Tests.Grpc.HelloRequest()).ResponseAsync);

        Assert.Equal(global::Grpc.Core.StatusCode.Unavailable, error.StatusCode);
        Assert.Contains("Mesh service 'nope' is unknown to the control plane", error.Status.Detail, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.Empty(app.Services.GetRequiredService<XdsClient>().OnDemand!.ListenerNames());
    }

    private async Task<IHost> StartClientAsync(params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var values = new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = _controlPlane.XdsAddress!.ToString(),
            ["Mesh:ControlPlane:Subscriptions"] = "OnDemand",
            ["Mesh:ControlPlane:InitialReconnectDelay"] = "00:00:00.050",
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:00.200",
            ["Mesh:Service"] = "caller",
        };
        foreach (var (key, value) in settings)
        {
            values[key] = value;
        }

        builder.Configuration.AddInMemoryCollection(values);
        builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Debug).AddProvider(new OutputLoggerProvider(output)));
        builder.AddServiceMesh();
        builder.Services.AddHttpClient(string.Empty);
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    /// <summary>The client's mesh logs in the test output: a failure shows what the xDS stream did.</summary>
    private sealed class OutputLoggerProvider(ITestOutputHelper output) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => categoryName.StartsWith("Mesh.", StringComparison.Ordinal) ? new OutputLogger(output, categoryName) : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public void Dispose()
        {
        }

        private sealed class OutputLogger(ITestOutputHelper output, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                try
                {
                    output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel} {category}: {formatter(state, exception)}");
                }
                catch (InvalidOperationException)
                {
                    // The test is over.
                }
            }
        }
    }
}
