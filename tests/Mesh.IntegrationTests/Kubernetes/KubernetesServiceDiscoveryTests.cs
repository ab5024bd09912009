using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.KubernetesFake;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Kubernetes;

/// <summary>
/// Services and EndpointSlices from a fake Kubernetes API server (real wire protocol, in this process) to a real control
/// plane process (ControlPlane:Kubernetes on, its kubeconfig) to a running Mesh client in this process, calling real
/// Kestrel backends on 127.0.0.1 whose addresses are published as EndpointSlice endpoints.
/// </summary>
public sealed class KubernetesServiceDiscoveryTests(ITestOutputHelper output)
{
    private const string Namespace = "prod";

    /// <summary>The backends speak plaintext (they are not mesh workloads): the namespace's servers run with mTLS DISABLE.</summary>
    private const string PlaintextNamespace = """
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: prod}
        spec: {mtls: {mode: DISABLE}}
        """;

    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(45);

    [Fact]
    public async Task ServiceAndSliceChanges_ReachARunningClientWithinOneSecond()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        await using var b1 = await NamedBackend.StartAsync("b1");
        await using var b2 = await NamedBackend.StartAsync("b2");
        PublishService(fake, "payments");
        PublishSlice(fake, "payments", "payments-1", Backend("b1", b1.Port));
        await using var mesh = await StartMeshAsync(fake);
        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () => await AnswerAsync(client, "payments") == "b1", "payments to answer from b1");

        var measured = new List<(string Change, TimeSpan Time)>();
        for (var round = 1; round <= 3; round++)
        {
            // A new Service and its EndpointSlice: the client learns a host it did not know.
            var name = $"ledger-{round}";
            var clock = Stopwatch.StartNew();
            PublishService(fake, name);
            PublishSlice(fake, name, $"{name}-1", Backend("b2", b2.Port));
            await UntilAsync(async () => await AnswerAsync(client, name) == "b2", $"{name} to answer from b2");
            measured.Add(($"new Service {name} + EndpointSlice", clock.Elapsed));

            // An EndpointSlice change of a Service in use: b1 replaced by b2, then back.
            var (from, to) = round % 2 == 1 ? ("b1", (Backend: "b2", Port: b2.Port)) : ("b2", (Backend: "b1", Port: b1.Port));
            clock.Restart();
            PublishSlice(fake, "payments", "payments-1", Backend(to.Backend, to.Port));
            await UntilAsync(async () => await AnswerAsync(client, "payments") == to.Backend, $"payments to move from {from} to {to.Backend}");
            measured.Add(($"payments EndpointSlice {from} → {to.Backend}", clock.Elapsed));
        }

        foreach (var (change, time) in measured)
        {
            output.WriteLine($"{change}: {time.TotalMilliseconds:0} ms");
        }

        var worst = measured.Max(m => m.Time);
        Console.WriteLine($"[k8s-services] API change → running client: {string.Join(", ", measured.Select(m => $"{m.Time.TotalMilliseconds:0}"))} ms; worst {worst.TotalMilliseconds:0} ms");
        Assert.True(worst < TimeSpan.FromSeconds(1), $"a change took {worst.TotalMilliseconds:0} ms to reach the client: {string.Join("; ", measured)}");
    }

    [Fact]
    public async Task TerminatingEndpoint_GetsNoNewRequests_AndItsInFlightRequestCompletes()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        await using var draining = await GatedBackend.StartAsync("draining");
        await using var staying = await NamedBackend.StartAsync("staying");
        PublishService(fake, "payments");
        PublishSlice(fake, "payments", "payments-draining", Backend("draining", draining.Port));
        PublishSlice(fake, "payments", "payments-staying", Backend("staying", staying.Port));
        await using var mesh = await StartMeshAsync(fake);
        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () => (await CountAsync(client, 20)).ContainsKey("draining"), "both endpoints to take requests");

        // A slow request in flight on the endpoint about to terminate (the other backend answers /slow at once).
        Task<HttpResponseMessage>? slow = null;
        for (var attempt = 0; attempt < 20 && slow is null; attempt++)
        {
            var call = client.GetAsync(new Uri($"http://payments.{Namespace}.svc.cluster.local/slow"));
            var landed = await Task.WhenAny(call, draining.Entered.WaitAsync(Deadline));
            if (landed == call)
            {
                (await call).Dispose();
            }
            else
            {
                slow = call;
            }
        }

        Assert.NotNull(slow);

        // The Pod is deleted: its endpoint goes terminating (serving while it drains, not ready), as the controller writes it.
        var clock = Stopwatch.StartNew();
        PublishSlice(fake, "payments", "payments-draining", new EndpointSpec("127.0.0.1", Ready: false, Serving: true, Terminating: true, PodName: "draining"), draining.Port);
        await UntilAsync(async () => (await CountAsync(client, 10)).Keys.All(k => k == "staying"), "the terminating endpoint to leave the client's picks");
        var propagation = clock.Elapsed;

        const int Requests = 300;
        var after = await CountAsync(client, Requests);
        Assert.False(slow.IsCompleted, "the in-flight request waits for its backend");
        draining.Release();
        using var slowResponse = await slow.WaitAsync(Deadline);
        var slowBody = await slowResponse.Content.ReadAsStringAsync();

        var summary = $"terminating reached the client in {propagation.TotalMilliseconds:0} ms; then {Requests} new requests: {Show(after)}; " +
            $"the in-flight request: HTTP {(int)slowResponse.StatusCode} from '{slowBody}'";
        output.WriteLine(summary);
        Console.WriteLine($"[k8s-services] {summary}");
        Assert.Equal(Requests, after.GetValueOrDefault("staying"));
        Assert.Equal(HttpStatusCode.OK, slowResponse.StatusCode);
        Assert.Equal("draining", slowBody);
    }

    [Fact]
    public async Task WatchDroppedTenTimesUnderLoad_NoRequestFails_AndEveryChangeArrives()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        await using var b1 = await NamedBackend.StartAsync("b1");
        await using var b2 = await NamedBackend.StartAsync("b2");
        await using var b3 = await NamedBackend.StartAsync("b3");
        PublishService(fake, "payments");
        PublishSlice(fake, "payments", "payments-1", Backend("b1", b1.Port));
        PublishSlice(fake, "payments", "payments-2", Backend("b2", b2.Port));
        await using var mesh = await StartMeshAsync(fake);
        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        client.BaseAddress = new Uri($"http://payments.{Namespace}.svc.cluster.local");
        await Eventually.HoldsAsync(async () => (await CountAsync(client, 20)).Count == 2, "payments to answer from b1 and b2");

        using var stop = new CancellationTokenSource();
        var load = new PacedLoad();
        var completion = load.RunAsync(client, workers: 2, TimeSpan.FromMilliseconds(5), TimeSpan.FromMinutes(8), maxRequests: 400_000, stop.Token);
        var drops = 0;
        var dropped = 0;
        var loadedThroughout = true;
        try
        {
            for (var i = 1; i <= 10; i++)
            {
                var clock = Stopwatch.StartNew();
                await fake.WaitForWatchersAsync("endpointslices", 1, TimeSpan.FromMinutes(2));
                await fake.WaitForWatchersAsync("services", 1, TimeSpan.FromMinutes(2));
                var rewatch = clock.Elapsed;
                dropped += fake.DropWatches();
                drops++;

                // A change made while the watches are down or coming back must still arrive: b3 in, then out.
                var withB3 = i % 2 == 1;
                if (withB3)
                {
                    PublishSlice(fake, "payments", "payments-3", Backend("b3", b3.Port));
                }
                else
                {
                    fake.Delete("discovery.k8s.io/v1", "EndpointSlice", Namespace, "payments-3");
                }

                clock.Restart();
                await mesh.WaitForEndpointsAsync("payments", withB3 ? 3 : 2);
                output.WriteLine($"drop {i}: watches back after {rewatch.TotalMilliseconds:0} ms; b3 {(withB3 ? "in" : "out")} at the control plane {clock.Elapsed.TotalMilliseconds:0} ms after the drop; load so far: {load}");
                loadedThroughout &= !completion.IsCompleted;
            }
        }
        finally
        {
            await stop.CancelAsync();
        }

        var run = await completion;
        var endpoints = await mesh.EndpointCountAsync("payments");
        var summary = $"{drops} watch drops ({dropped} streams cut) under load: {run}; per backend {Show(run.Bodies)}; payments endpoints at the end {endpoints}";
        output.WriteLine(summary);
        Console.WriteLine($"[k8s-services] {summary}");
        Assert.Equal(10, drops);
        Assert.True(dropped >= 10, $"every drop cut open watches ({dropped})");
        Assert.True(loadedThroughout, $"the load ran until the last drop's change had arrived: {run}");
        Assert.True(run.Succeeded > 100, $"the load ran: {run}");
        Assert.Empty(run.Failures);
        Assert.Equal(2, endpoints);
        Assert.True(run.Bodies.ContainsKey("b3"), "b3 took requests while it was in");
    }

    /// <summary>
    /// A Mesh.Client server deployed as on Kubernetes: it does not register (its instance is its Pod in its Service's
    /// EndpointSlice) and names its Pod IP. It must still ask for and enforce the inbound policy of its address:port: before
    /// (found in review, 2026-12-05) only a registering workload did, so such a server answered every caller with a mesh
    /// certificate under no AuthorizationPolicy at all, a DENY included.
    /// </summary>
    [Fact]
    public async Task ServerNotRegistering_KnownByItsEndpointSlice_EnforcesItsAuthorizationPolicy()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        await using var mesh = await StartMeshAsync(fake);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "orders-no-delete.yaml"), """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: orders-no-delete-from-test-client, namespace: default}
            spec:
              selector: {matchLabels: {app: orders}}
              action: DENY
              rules:
                - from: [{source: {principals: [cluster.local/ns/default/sa/test-client]}}]
                  to: [{operation: {methods: [DELETE]}}]
            """);
        var server = await mesh.StartWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-pod-1", new Dictionary<string, string?>
        {
            ["Mesh__Registration__Enabled"] = "false",
            ["Mesh__Registration__Address"] = "127.0.0.1",
        });
        fake.Apply(KubeJson.Service("default", "orders", [new ServicePortSpec(80, "http", TargetPort: server.Address.Port)], new Dictionary<string, string> { ["app"] = "orders" }, clusterIp: "10.96.0.11"));
        fake.Apply(KubeJson.Pod("default", "orders-pod-1", new Dictionary<string, string> { ["app"] = "orders" }, serviceAccountName: "orders", podIp: "127.0.0.1"));
        fake.Apply(KubeJson.EndpointSlice("default", "orders-1", "orders", [new EndpointSpec("127.0.0.1", PodName: "orders-pod-1")], [new EndpointPortSpec(server.Address.Port, "http")]));

        // Ready only once the inbound policy of 127.0.0.1:<port> arrived, which the control plane sends for the slice's
        // address to the workload whose certificate the Pod's service account names.
        await mesh.WaitReadyAsync(server);

        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        var orders = new Uri("http://orders.default.svc.cluster.local/orders/1");
        await Eventually.HoldsAsync(async () =>
        {
            using var ready = await client.GetAsync(new Uri(orders, "/healthz/ready"));
            return ready.StatusCode == HttpStatusCode.OK;
        }, "the client to reach orders through its EndpointSlice");

        // The DENY holds for every spelling of the call; the app never answers it.
        foreach (var target in new[] { "/orders/1", "/orders/2/", "//orders/3", "/ORDERS/4" })
        {
            using var delete = await client.DeleteAsync(new Uri(orders, target));
            output.WriteLine($"DELETE {target}: {(int)delete.StatusCode} {await delete.Content.ReadAsStringAsync()}");
            Assert.Equal(HttpStatusCode.Forbidden, delete.StatusCode);
        }

        Assert.Contains("Not registering (Mesh:Registration:Enabled=false): orders enforces the inbound policy", server.Process.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("Registered with the control plane", server.Process.Output, StringComparison.Ordinal);
        await host.StopAsync();
    }

    private async Task<LocalMesh> StartMeshAsync(FakeKubernetesApiServer fake)
    {
        var mesh = await LocalMesh.StartAsync(
            output,
            fixedPorts: false,
            plaintextXds: false,
            "--ControlPlane:Kubernetes:Enabled=true",
            $"--ControlPlane:Kubernetes:Kubeconfig={fake.KubeconfigPath}");
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "prod-plaintext.yaml"), PlaintextNamespace);
        return mesh;
    }

    private static async Task<IHost> StartClientAsync(LocalMesh mesh)
    {
        var host = await mesh.CreateClientHostAsync(configureHost: b =>
        {
            b.Logging.ClearProviders();
            // A host the mesh does not know (yet) fails at once instead of going to DNS: a poll measures the mesh, not a resolver.
            b.Services.AddHttpClient("mesh").ConfigurePrimaryHttpMessageHandler(() => new NotMeshHostHandler());
        });
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        return host;
    }

    private static void PublishService(FakeKubernetesApiServer fake, string name) =>
        fake.Apply(KubeJson.Service(Namespace, name, [new ServicePortSpec(80, "http", TargetPort: 8080)], new Dictionary<string, string> { ["app"] = name }, clusterIp: "10.96.0.10"));

    /// <summary>The backend's Pod (its address 127.0.0.1) and the endpoint naming it.</summary>
    private static (EndpointSpec Endpoint, int Port) Backend(string pod, int port) => (new EndpointSpec("127.0.0.1", PodName: pod), port);

    private static void PublishSlice(FakeKubernetesApiServer fake, string service, string slice, (EndpointSpec Endpoint, int Port) backend) =>
        PublishSlice(fake, service, slice, backend.Endpoint, backend.Port);

    private static void PublishSlice(FakeKubernetesApiServer fake, string service, string slice, EndpointSpec endpoint, int port)
    {
        fake.Apply(KubeJson.Pod(Namespace, endpoint.PodName!, new Dictionary<string, string> { ["app"] = service }, serviceAccountName: service, podIp: endpoint.Address));
        fake.Apply(KubeJson.EndpointSlice(Namespace, slice, service, [endpoint], [new EndpointPortSpec(port, "http")]));
    }

    /// <summary>The body of one GET to the service, or null when it failed (an unknown host, no endpoint yet).</summary>
    private static async Task<string?> AnswerAsync(HttpClient client, string service)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            using var response = await client.GetAsync(new Uri($"http://{service}.{Namespace}.svc.cluster.local/"), timeout.Token);
            return response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync(timeout.Token) : null;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>Polls back to back (a change's arrival is what is measured) until the condition holds or the deadline passes.</summary>
    private static async Task UntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            if (deadline.Elapsed > Deadline)
            {
                throw new TimeoutException($"Timed out after {Deadline.TotalSeconds:0} s waiting for {what}");
            }

            await Task.Yield();
        }
    }

    private static async Task<Dictionary<string, int>> CountAsync(HttpClient client, int requests)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < requests; i++)
        {
            var uri = client.BaseAddress is null ? new Uri($"http://payments.{Namespace}.svc.cluster.local/") : new Uri("/", UriKind.Relative);
            using var response = await client.GetAsync(uri);
            var key = response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync() : ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }

        return counts;
    }

    private static string Show(IEnumerable<KeyValuePair<string, int>> counts) =>
        string.Join(", ", counts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));

    /// <summary>Steady load: each worker sends a GET, then waits for its next tick; bounded in count and time.</summary>
    private sealed class PacedLoad
    {
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _failures = new();
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _bodies = new(StringComparer.Ordinal);
        private long _sent;
        private long _succeeded;

        public long Succeeded => Interlocked.Read(ref _succeeded);

        public string[] Failures => [.. _failures];

        /// <summary>Gets a copy of the count of successful answers by body (the backend's name).</summary>
        public Dictionary<string, int> Bodies => new(_bodies, StringComparer.Ordinal);

        public async Task<PacedLoad> RunAsync(HttpClient client, int workers, TimeSpan period, TimeSpan duration, long maxRequests, CancellationToken stop)
        {
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
            limit.CancelAfter(duration);
            var clock = Stopwatch.StartNew();
            await Task.WhenAll(Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
            {
                using var timer = new PeriodicTimer(period);
                while (!limit.IsCancellationRequested && Interlocked.Increment(ref _sent) <= maxRequests)
                {
                    try
                    {
                        using var response = await client.GetAsync(new Uri("/", UriKind.Relative), CancellationToken.None);
                        var body = await response.Content.ReadAsStringAsync(CancellationToken.None);
                        if (response.IsSuccessStatusCode)
                        {
                            Interlocked.Increment(ref _succeeded);
                            _bodies.AddOrUpdate(body, 1, static (_, n) => n + 1);
                        }
                        else
                        {
                            _failures.Enqueue($"{clock.Elapsed.TotalSeconds:0.00}s: HTTP {(int)response.StatusCode}: {body}");
                        }
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        _failures.Enqueue($"{clock.Elapsed.TotalSeconds:0.00}s: {e.GetType().Name}: {e.Message}");
                    }

                    try
                    {
                        await timer.WaitForNextTickAsync(limit.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            })));

            Interlocked.Exchange(ref _sent, Succeeded + _failures.Count);
            return this;
        }

        public override string ToString() =>
            $"{Interlocked.Read(ref _sent)} sent, {Succeeded} succeeded, {_failures.Count} failed{(_failures.IsEmpty ? string.Empty : ":\n  " + string.Join("\n  ", _failures.Take(10)))}";
    }

    /// <summary>The test client's handler for hosts outside the mesh: none is expected, so each fails at once.</summary>
    private sealed class NotMeshHostHandler : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromException<HttpResponseMessage>(new HttpRequestException($"{request.RequestUri?.Host} is not a mesh host (yet)"));
    }

    /// <summary>
    /// A Kestrel backend on 127.0.0.1 answering with its name; <c>/slow</c> waits until <see cref="Release"/> (and tells
    /// <see cref="Entered"/> it arrived).
    /// </summary>
    private sealed class GatedBackend : IAsyncDisposable
    {
        private readonly TaskCompletionSource _entered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private WebApplication _app = null!;

        public int Port { get; private set; }

        public Task Entered => _entered.Task;

        public static async Task<GatedBackend> StartAsync(string name)
        {
            var backend = new GatedBackend();
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
            var app = builder.Build();
            app.Run(async context =>
            {
                if (context.Request.Path == "/slow")
                {
                    backend._entered.TrySetResult();
                    await backend._released.Task.WaitAsync(context.RequestAborted);
                }

                await context.Response.WriteAsync(name, context.RequestAborted);
            });
            await app.StartAsync();
            backend._app = app;
            backend.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;
            return backend;
        }

        public void Release() => _released.TrySetResult();

        public ValueTask DisposeAsync() => _app.DisposeAsync();
    }
}
