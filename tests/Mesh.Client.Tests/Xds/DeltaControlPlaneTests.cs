using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
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
/// Mesh.Client on delta ADS (<c>Mesh:ControlPlane:Protocol=Delta</c>) end to end: a real control plane in process (its
/// plaintext ADS port, a config folder of ServiceEntries; restartable on the same port), a real Kestrel backend, and a
/// Mesh.Client host calling through IHttpClientFactory, in wildcard and on-demand mode.
/// </summary>
public sealed class DeltaControlPlaneTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Services = 20;
    private string _root = null!;
    private string _config = null!;
    private int _xdsPort;
    private ControlPlaneHost? _controlPlane;
    private TestBackend _backend = null!;
    private TestBackend _other = null!;
    private readonly ConcurrentQueue<(string EventName, IReadOnlyList<KeyValuePair<string, object?>> State)> _events = new();

    public async Task InitializeAsync()
    {
        _backend = await TestBackend.StartAsync("backend");
        _other = await TestBackend.StartAsync("other");
        _root = Directory.CreateTempSubdirectory("mesh-delta-").FullName;
        _config = Directory.CreateDirectory(Path.Combine(_root, "config")).FullName;
        await File.WriteAllTextAsync(Path.Combine(_config, "services.yaml"), OnDemandControlPlaneTests.ServiceEntries(Services, _backend.Port));
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            _xdsPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        await StartControlPlaneAsync();
    }

    public async Task DisposeAsync()
    {
        if (_controlPlane is not null)
        {
            await _controlPlane.DisposeAsync();
        }

        await _backend.DisposeAsync();
        await _other.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public async Task Wildcard_SyncsEveryService_AndAnEndpointChangeReachesTheClient()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "Wildcard"));
        var client = app.Services.GetRequiredService<XdsClient>();
        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(Services, client.Current.Services.Length);
        Assert.Contains(_events, e => e.EventName == "DeltaAccepted"); // it is the delta wire that synced
        var http = app.Services.GetRequiredService<IHttpClientFactory>().CreateClient();
        Assert.Equal("backend", await http.GetStringAsync(new Uri("http://svc-3/")));

        // svc-3's endpoint moves to the other backend: only that change travels, and the next call follows it.
        await File.WriteAllTextAsync(Path.Combine(_config, "services.yaml"), Without(OnDemandControlPlaneTests.ServiceEntries(Services, _backend.Port), "svc-3"));
        await File.WriteAllTextAsync(Path.Combine(_config, "svc-3.yaml"), ServiceEntry("svc-3", _other.Port));
        await Poll.UntilAsync(() => EndpointPort(client, "svc-3") == _other.Port, "svc-3's new endpoint in the snapshot", TimeSpan.FromSeconds(30));

        Assert.Equal("other", await http.GetStringAsync(new Uri("http://svc-3/")));
        Assert.Equal("backend", await http.GetStringAsync(new Uri("http://svc-4/")));
        Assert.Null(client.LastNack);
    }

    [Fact]
    public async Task Wildcard_EmptyMesh_FirstSnapshotIsEmpty_ThenTheFirstServiceArrives()
    {
        // A control plane started on an empty folder: the client must sync (and turn ready) on "nothing exists".
        await _controlPlane!.DisposeAsync();
        File.Delete(Path.Combine(_config, "services.yaml"));
        await StartControlPlaneAsync();

        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "Wildcard"));
        var client = app.Services.GetRequiredService<XdsClient>();
        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Empty(client.Current.Services);

        await File.WriteAllTextAsync(Path.Combine(_config, "svc-1.yaml"), ServiceEntry("svc-1", _backend.Port));
        await Poll.UntilAsync(() => client.Current.Services.Length == 1, "the first service in the snapshot", TimeSpan.FromSeconds(30));
        var http = app.Services.GetRequiredService<IHttpClientFactory>().CreateClient();
        Assert.Equal("backend", await http.GetStringAsync(new Uri("http://svc-1/")));
    }

    [Fact]
    public async Task Wildcard_ServiceDeleted_DisappearsFromTheSnapshot_AndCallsGetTheUnknownServiceError()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "Wildcard"));
        var client = app.Services.GetRequiredService<XdsClient>();
        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(client.Current.TryGetService("svc-5", 80, true, out _));

        await File.WriteAllTextAsync(Path.Combine(_config, "services.yaml"), OnDemandControlPlaneTests.ServiceEntries(5, _backend.Port));
        await Poll.UntilAsync(() => client.Current.Services.Length == 5, "the deleted services gone from the snapshot", TimeSpan.FromSeconds(30));

        Assert.False(client.Current.TryGetService("svc-5", 80, true, out _));
        Assert.DoesNotContain(client.Current.Clusters.Keys, k => k.Contains("svc-5.", StringComparison.Ordinal));
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://svc-5.default.svc.cluster.local/")));
        Assert.Contains("svc-5", error.Message, StringComparison.Ordinal);
        Assert.Equal("backend", await meshOnly.GetStringAsync(new Uri("http://svc-4/")));
    }

    [Fact]
    public async Task OnDemand_FirstCallSubscribesAndReachesTheBackend_NonexistentServiceFailsFastWithTheUnknownServiceError()
    {
        // A long subscription timeout: only the control plane's removed_resources can make the miss fast.
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "OnDemand"), ("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        var client = app.Services.GetRequiredService<XdsClient>();
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());

        Assert.Equal("backend", await meshOnly.GetStringAsync(new Uri("http://svc-7/")));
        Assert.Equal(["svc-7"], client.OnDemand!.ListenerNames());
        Assert.Equal(["svc-7"], client.Current.Services.Select(s => s.ListenerName));
        Assert.Equal(["outbound|80||svc-7.default.svc.cluster.local"], client.Current.Clusters.Keys.Order());

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://nope/")));
        watch.Stop();

        Assert.Contains("Mesh service 'nope' is unknown to the control plane", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.Equal(["svc-7"], client.OnDemand.ListenerNames());
        Assert.Equal("backend", await meshOnly.GetStringAsync(new Uri("http://svc-7/")));
    }

    [Fact]
    public async Task OnDemand_NonexistentServiceAsTheFirstNameOfTheStream_FailsFast()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "OnDemand"), ("Mesh:ControlPlane:SubscriptionTimeout", "00:00:30"));
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://nope:8080/")));

        Assert.Contains("is unknown to the control plane", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"took {watch.Elapsed}");
        Assert.Empty(app.Services.GetRequiredService<XdsClient>().OnDemand!.ListenerNames());
    }

    [Fact]
    public async Task OnDemand_SubscribedServiceDeleted_DisappearsFromTheSnapshot_UnusedOneUnsubscribed()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "OnDemand"), ("Mesh:ControlPlane:UnusedServiceTimeout", "00:00:01"));
        var client = app.Services.GetRequiredService<XdsClient>();
        using var meshOnly = new HttpClient(app.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());
        Assert.Equal("backend", await meshOnly.GetStringAsync(new Uri("http://svc-15/")));

        await File.WriteAllTextAsync(Path.Combine(_config, "services.yaml"), OnDemandControlPlaneTests.ServiceEntries(10, _backend.Port));
        await Poll.UntilAsync(() => client.Current.Services.IsEmpty && client.Current.Clusters.Count == 0, "svc-15 gone from the snapshot", TimeSpan.FromSeconds(30));

        await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://svc-15/")));
        await Poll.UntilAsync(() => client.OnDemand!.ListenerNames().Count == 0, "svc-15 unsubscribed");
        Assert.Equal("backend", await meshOnly.GetStringAsync(new Uri("http://svc-2/")));
    }

    [Fact]
    public async Task OnDemand_Warm_SubscribedAtStart_InTheFirstSnapshot_NoCallWaits()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "OnDemand"), ("Mesh:ControlPlane:Warm:0", "svc-2"), ("Mesh:ControlPlane:Warm:1", "svc-9.default:80"));
        var client = app.Services.GetRequiredService<XdsClient>();

        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(["svc-2", "svc-9.default:80"], client.Current.Services.Select(s => s.ListenerName).Order());
        Assert.Equal("backend", await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient().GetStringAsync(new Uri("http://svc-9.default/")));
        Assert.Equal(0, client.OnDemand!.SubscribeCount);
    }

    [Fact]
    public async Task ControlPlaneRestart_ClientResyncs_OnlyWhatChangedMeanwhileComesBack()
    {
        using var app = await StartClientAsync(("Mesh:ControlPlane:Subscriptions", "Wildcard"));
        var client = app.Services.GetRequiredService<XdsClient>();
        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(30));
        var synced = client.Current;
        Assert.Equal(Services, synced.Services.Length);

        await _controlPlane!.DisposeAsync();
        _controlPlane = null;
        await Poll.UntilAsync(() => !client.IsConnected, "the client notices the control plane is gone", TimeSpan.FromSeconds(30));

        // While it is down: svc-19 is deleted and svc-3 moves to the other backend.
        await File.WriteAllTextAsync(Path.Combine(_config, "services.yaml"), Without(OnDemandControlPlaneTests.ServiceEntries(Services - 1, _backend.Port), "svc-3"));
        await File.WriteAllTextAsync(Path.Combine(_config, "svc-3.yaml"), ServiceEntry("svc-3", _other.Port));
        _events.Clear();
        await StartControlPlaneAsync();

        await Poll.UntilAsync(
            () => client.IsConnected && EndpointPort(client, "svc-3") == _other.Port && !client.Current.TryGetService("svc-19", 80, true, out _),
            "the client resynced after the restart",
            TimeSpan.FromSeconds(30));
        Assert.Equal(Services - 1, client.Current.Services.Length);
        Assert.Equal("backend", await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient().GetStringAsync(new Uri("http://svc-4/")));

        // A full resend would be every listener, route, cluster and endpoint set again (4 per service); the restarted
        // control plane sent only svc-3's endpoints (and, at most, the few resources that depend on them).
        var received = _events.Where(e => e.EventName == "DeltaAccepted").Sum(e => Convert.ToInt32(e.State.First(p => p.Key == "Count").Value, System.Globalization.CultureInfo.InvariantCulture));
        var removed = _events.Where(e => e.EventName == "DeltaAccepted").Sum(e => Convert.ToInt32(e.State.First(p => p.Key == "Removed").Value, System.Globalization.CultureInfo.InvariantCulture));
        output.WriteLine($"after the restart: {received} resources received, {removed} removed");
        Assert.InRange(received, 1, 4);
        Assert.InRange(removed, 1, 4);
        var initial = _events.Where(e => e.EventName == "DeltaRequestSent").Sum(e => Convert.ToInt32(e.State.First(p => p.Key == "Held").Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(initial >= Services * 4, $"initial_resource_versions listed {initial} resources");
    }

    private static int? EndpointPort(XdsClient client, string service) =>
        client.Current.Clusters.TryGetValue($"outbound|80||{service}.default.svc.cluster.local", out var cluster) && cluster.Endpoints.Length > 0 ? cluster.Endpoints[0].Port : null;

    /// <summary>The ServiceEntries of <paramref name="yaml"/> but <paramref name="name"/>'s.</summary>
    private static string Without(string yaml, string name) =>
        string.Join("---\n", yaml.Split("---\n").Where(d => !d.Contains($"metadata: {{name: {name}, namespace: default}}", StringComparison.Ordinal)));

    private static string ServiceEntry(string name, int port) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: {{{name}}}, namespace: default}
        spec:
          hosts: [{{{name}}}.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: 127.0.0.1, ports: {http: {{{port}}}}}]
        """;

    private async Task StartControlPlaneAsync()
    {
        _controlPlane = await ControlPlaneHost.StartAsync(
        [
            $"--ControlPlane:ConfigDirectory={_config}",
            $"--ControlPlane:StateDirectory={Path.Combine(_root, "state")}",
            "--ControlPlane:AdminAddress=http://127.0.0.1:0",
            "--ControlPlane:SecureAddress=https://127.0.0.1:0",
            $"--ControlPlane:XdsAddress=http://127.0.0.1:{_xdsPort}",
            "--ControlPlane:DebounceInterval=00:00:00.020",
            "--Logging:LogLevel:Default=Warning",
        ]);
    }

    private async Task<IHost> StartClientAsync(params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var values = new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = $"http://127.0.0.1:{_xdsPort}",
            ["Mesh:ControlPlane:Protocol"] = "Delta",
            ["Mesh:ControlPlane:InitialReconnectDelay"] = "00:00:00.050",
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:00.200",
            ["Mesh:Service"] = "caller",
        };
        foreach (var (key, value) in settings)
        {
            values[key] = value;
        }

        builder.Configuration.AddInMemoryCollection(values);
        builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Debug).AddProvider(new RecordingLoggerProvider(output, _events)));
        builder.AddServiceMesh();
        builder.Services.AddHttpClient(string.Empty);
        var host = builder.Build();
        await host.StartAsync();
        return host;
    }

    /// <summary>The client's mesh logs in the test output, and its events with their fields for the test to count.</summary>
    private sealed class RecordingLoggerProvider(ITestOutputHelper output, ConcurrentQueue<(string, IReadOnlyList<KeyValuePair<string, object?>>)> events) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => categoryName.StartsWith("Mesh.", StringComparison.Ordinal) ? new RecordingLogger(output, events, categoryName) : Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

        public void Dispose()
        {
        }

        private sealed class RecordingLogger(ITestOutputHelper output, ConcurrentQueue<(string, IReadOnlyList<KeyValuePair<string, object?>>)> events, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (eventId.Name is { } name && state is IReadOnlyList<KeyValuePair<string, object?>> fields)
                {
                    events.Enqueue((name, [.. fields]));
                }

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
