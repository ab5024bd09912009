using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using Grpc.Net.Client;
using Mesh.Benchmarks.V1;
using Mesh.Client;
using Mesh.Client.Http;
using Mesh.LoadTest;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// dotnet run -c Release --project benchmarks/Mesh.LoadTest -- [--seconds 10] [--reps 5] [--concurrency 64] [--mtls | --grpc | --sidecar] [--telemetry] [--rate <req/s>] [--only <case name part>[|<part>…]]
// Side by side in one run, interleaved (rep k runs every case once, starting one case later than rep k-1, so no case
// always runs first or right after the same neighbour): a plain HttpClient calling a
// fixed backend by its address, and the mesh client calling the same backend as http://backend/.
// --grpc: unary Echo/Ping over h2c to the same backend: a plain GrpcChannel vs an xds:///backend channel, and an
// AddGrpcClient factory client without the mesh vs AddGrpcClient(http://backend).
// --telemetry: the same cases with OpenTelemetry's MeterProvider and TracerProvider (10 % sampled) listening (LoadTelemetry).
// --rate <n>: after each rep's closed-loop pass, an open-loop pass at n requests/s (latency from the intended send time).
// --sidecar: one hop through a proxy, same backend: plain HttpClient → nginx → backend vs plain HttpClient → Mesh.Sidecar
// (outbound port, Host: backend) → backend vs the proxyless mesh client, and the direct call; closed loop and at
// 1,000 req/s (--rate), with each proxy's CPU per request and RSS read from /proc; then --idle-connections (1,000) idle
// keep-alive connections to each proxy port and the RSS with them. [--nginx-workers 2] [--idle-connections 1000]
// [--sidecar-env KEY=VALUE]… (the sidecar process's environment, for experiments and profiling)
var settings = LoadSettings.Parse(args);

// --telemetry: OpenTelemetry listening (metrics, and traces sampled at 10 %) to every case, the plain client included.
using var telemetry = settings.Telemetry ? LoadTelemetry.Start() : null;
var root = Directory.CreateTempSubdirectory("mesh-load-").FullName;
var configDirectory = Directory.CreateDirectory(Path.Combine(root, "config")).FullName;

ChildProcess backend;
Uri backendAddress;
ControlPlaneProcess controlPlane;
HttpClient plain;
long plainHandshakes = 0;
if (!settings.Mtls)
{
    backend = ChildProcess.StartDotnet("backend", LaunchableApps.Paths["Mesh.Benchmarks.Backend"], environment: new Dictionary<string, string?>
    {
        ["ASPNETCORE_URLS"] = "http://127.0.0.1:0",

        // h2c (prior knowledge) needs an HTTP/2-only endpoint.
        ["Kestrel__EndpointDefaults__Protocols"] = settings.Grpc ? "Http2" : "Http1AndHttp2",
    });
    backendAddress = await backend.WaitForListeningAsync(TimeSpan.FromSeconds(60));
    await File.WriteAllTextAsync(Path.Combine(configDirectory, "backend.yaml"), $"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {"{"}name: backend, namespace: default{"}"}
        spec:
          hosts: [backend.default.svc.cluster.local]
          ports: [{"{"}number: 80, name: http, protocol: {(settings.Grpc ? "GRPC" : "HTTP")}{"}"}]
          resolution: STATIC
          endpoints: [{"{"}address: 127.0.0.1, ports: {"{"}http: {backendAddress.Port}{"}"}{"}"}]
        """);

    // The same backend behind a 10-route VirtualService (header, prefix, exact, regex, method and presence matches
    // that miss, then a 90/10 split over two subsets), as VirtualServiceRoutingBenchmarks has it in one call.
    await File.WriteAllTextAsync(Path.Combine(configDirectory, "backend-vs.yaml"), VirtualServiceCase.Yaml(backendAddress.Port));

    if (settings.Sidecar)
    {
        await File.WriteAllTextAsync(Path.Combine(configDirectory, "loadtest-app.yaml"), SidecarProxy.ServiceYaml("loadtest-app"));
    }

    // The mesh client joins without identity, over the control plane's plaintext ADS port (off unless asked for).
    controlPlane = await MeshProcesses.StartControlPlaneAsync(LaunchableApps.Paths["Mesh.ControlPlane"], configDirectory, Path.Combine(root, "state"), xdsPort: 0);
    plain = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { BaseAddress = backendAddress };
}
else
{
    // The backend is a mesh workload (selected by app=backend: auto mTLS); the plain client does mTLS with an SVID too.
    await File.WriteAllTextAsync(Path.Combine(configDirectory, "backend.yaml"), """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: backend, namespace: default}
        spec:
          hosts: [backend.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          workloadSelector: {labels: {app: backend}}
        """);
    controlPlane = await MeshProcesses.StartControlPlaneAsync(LaunchableApps.Paths["Mesh.ControlPlane"], configDirectory, Path.Combine(root, "state"));
    var workload = await MeshProcesses.StartWorkloadAsync(LaunchableApps.Paths["Mesh.Benchmarks.Backend"], "backend", "backend-1", controlPlane);
    backend = workload.Process;
    backendAddress = new UriBuilder(workload.Address) { Scheme = "https" }.Uri;
    plain = WorkloadCertificates.CreateMtlsClient(
        await WorkloadCertificates.IssueAsync(controlPlane, "loadtest-plain", Path.Combine(root, "plain-identity")),
        onServerCertificate: _ => Interlocked.Increment(ref plainHandshakes)); // called once per handshake the client validates
    plain.BaseAddress = backendAddress;
}

await using var backendProcess = backend;
await using var controlPlaneProcess = controlPlane.Process;
var meshToken = settings.Mtls ? await controlPlane.MintTokenAsync("loadtest") : null;

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.AddServiceMesh(options =>
{
    if (meshToken is null)
    {
        options.ControlPlane.Address = controlPlane.RequirePlaintextXds();
        return;
    }

    options.ControlPlane.Address = controlPlane.SecureAddress;
    options.ControlPlane.RootCertificate = controlPlane.RootCertificate;
    options.Identity.Token = meshToken;
});
builder.Services.AddHttpClient("mesh", client => client.BaseAddress = new Uri("http://backend/"));
builder.Services.AddHttpClient("mesh-vs", client => client.BaseAddress = new Uri("http://backend-vs/"));
builder.Services.AddHttpClient("factory", client => client.BaseAddress = backendAddress).WithoutServiceMesh();
builder.Services.AddGrpcClient<Echo.EchoClient>("grpc-factory", o => o.Address = backendAddress).WithoutServiceMesh();
builder.Services.AddGrpcClient<Echo.EchoClient>("grpc-mesh", o => o.Address = new Uri("http://backend"));
using var host = builder.Build();
await host.StartAsync();
var health = host.Services.GetRequiredService<HealthCheckService>();
var synced = Stopwatch.StartNew();
while ((await health.CheckHealthAsync()).Status != HealthStatus.Healthy)
{
    if (synced.Elapsed > TimeSpan.FromSeconds(30))
    {
        throw new TimeoutException("The mesh client did not sync with the control plane within 30 s.");
    }

    await Task.Delay(100);
}

var factory = host.Services.GetRequiredService<IHttpClientFactory>();

// The mesh client's handshakes, from its own meter (mesh.client.tls.handshakes on "Mesh.Client").
long meshHandshakes = 0;
var meterFactory = host.Services.GetRequiredService<IMeterFactory>();
using var meterListener = new MeterListener
{
    InstrumentPublished = (instrument, listener) =>
    {
        if (instrument.Name == "mesh.client.tls.handshakes" && ReferenceEquals(instrument.Meter.Scope, meterFactory))
        {
            listener.EnableMeasurementEvents(instrument);
        }
    },
};
meterListener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref meshHandshakes, value));
meterListener.Start();

// The same HttpClient as the plain case, over the mesh's public outbound handler (IMeshOutboundHandlerFactory): the mesh's
// cost alone, without IHttpClientFactory's logging handlers (which the factory client without the mesh also pays).
var meshHandlers = host.Services.GetRequiredService<IMeshOutboundHandlerFactory>();
HttpClient MeshHandlerClient(string baseAddress) => new(meshHandlers.CreateHandler()) { BaseAddress = new Uri(baseAddress) };

var ping = new PingRequest { Text = "ping" };
LoadCase GrpcCase(string name, Echo.EchoClient client) => new(name, async () => (await client.PingAsync(ping).ConfigureAwait(false)).Text.Length > 0);
using var plainChannel = GrpcChannel.ForAddress(backendAddress);
using var meshChannel = settings.Grpc ? host.Services.CreateMeshGrpcChannel("xds:///backend") : null;
var grpcClients = host.Services.GetRequiredService<Grpc.Net.ClientFactory.GrpcClientFactory>();

// --sidecar: the proxies are the run's own child processes, started after the control plane and stopped by PID at the end.
const string NginxCase = "nginx hop (plain HttpClient → nginx → backend)";
const string SidecarCase = "Mesh.Sidecar hop (plain HttpClient → sidecar → backend)";
await using var nginx = settings.Sidecar && settings.Selects(NginxCase) ? await NginxProxy.StartAsync(Path.Combine(root, "nginx"), backendAddress, settings.NginxWorkers) : null;
await using var sidecar = settings.Sidecar && settings.Selects(SidecarCase) ? await SidecarProxy.StartAsync(LaunchableApps.Paths["mesh-sidecar"], controlPlane, "loadtest-app", backendAddress, settings.SidecarEnvironment) : null;
using var viaNginx = nginx is null ? null : new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { BaseAddress = nginx.Address };
using var viaSidecar = sidecar is null ? null : new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { BaseAddress = sidecar.Outbound };
viaSidecar?.DefaultRequestHeaders.Host = "backend";
var backendProbe = new ProcessProbe("backend", backend.Id);

// Each proxy's RSS once started and ready, before any load.
var proxies = new[] { nginx?.Probe, sidecar?.Probe }.OfType<ProcessProbe>().ToArray();
var idleRss = proxies.ToDictionary(p => p.Name, p => p.RssBytes());

var cases = settings.Sidecar
    ? new[]
    {
        new LoadCase("direct (plain HttpClient → backend)", plain) { Backend = backendProbe },
        new LoadCase(NginxCase, viaNginx ?? plain) { Proxy = nginx?.Probe, Backend = backendProbe },
        new LoadCase(SidecarCase, viaSidecar ?? plain) { Proxy = sidecar?.Probe, Backend = backendProbe },
        new LoadCase("proxyless mesh client (http://backend/)", factory.CreateClient("mesh")) { Backend = backendProbe },
    }
    : settings.Grpc
    ? new[]
    {
        GrpcCase("plain GrpcChannel (h2c)", new Echo.EchoClient(plainChannel)),
        GrpcCase("xds:///backend channel", new Echo.EchoClient(meshChannel!)),
        GrpcCase("AddGrpcClient, mesh opted out", grpcClients.CreateClient<Echo.EchoClient>("grpc-factory")),
        GrpcCase("AddGrpcClient(http://backend)", grpcClients.CreateClient<Echo.EchoClient>("grpc-mesh")),
    }
    : settings.Mtls
    ? new[]
    {
        new LoadCase("plain HttpClient, mTLS (SVID)", plain, () => Interlocked.Read(ref plainHandshakes)),
        new LoadCase("mesh client, mesh mTLS", factory.CreateClient("mesh"), () => Interlocked.Read(ref meshHandshakes)),
    }
    : new[]
    {
        new LoadCase("plain HttpClient", plain),
        new LoadCase("IHttpClientFactory client, mesh opted out", factory.CreateClient("factory")),
        new LoadCase("mesh client (http://backend/)", factory.CreateClient("mesh")),
        new LoadCase("mesh client, 10-route VirtualService", factory.CreateClient("mesh-vs")),
        new LoadCase("mesh handler HttpClient (http://backend/)", MeshHandlerClient("http://backend/")),
        new LoadCase("mesh handler HttpClient, 10-route VS", MeshHandlerClient("http://backend-vs/")),
    };

if (settings.Only is not null)
{
    // For profiling one client, or comparing a few: the cases whose name contains one of the '|'-separated texts (the
    // first case left is the baseline).
    cases = [.. cases.Where(c => settings.Selects(c.Name))];
}

Console.WriteLine($"backend {backendAddress}  control plane {(settings.Mtls ? controlPlane.SecureAddress : controlPlane.RequirePlaintextXds())}  concurrency {settings.Concurrency}{(settings.Rate > 0 ? $" and {settings.Rate} req/s" : string.Empty)}{(settings.Telemetry ? "  OpenTelemetry listening (traces 10 %)" : string.Empty)}  {settings.Reps} reps × {settings.Seconds} s per case, interleaved, after {settings.WarmupSeconds} s warm-up each");
if (settings.Sidecar)
{
    Console.WriteLine($"{(nginx is null ? "no nginx" : $"{nginx.Version} at {nginx.Address} ({settings.NginxWorkers} workers, pid {nginx.Process.Id})")}  {(sidecar is null ? "no sidecar" : $"Mesh.Sidecar outbound {sidecar.Outbound} inbound {sidecar.Inbound} (pid {sidecar.Process.Id})")}  {Environment.ProcessorCount} cores  {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
}

foreach (var loadCase in cases)
{
    await loadCase.RunAsync(settings.Concurrency, TimeSpan.FromSeconds(settings.WarmupSeconds));
}

for (var rep = 0; rep < settings.Reps; rep++)
{
    for (var i = 0; i < cases.Length; i++)
    {
        // Rotated: a case that always ran first (after the previous rep's last case and its garbage) would be billed for it.
        var loadCase = cases[(i + rep) % cases.Length];
        var result = await loadCase.RunAsync(settings.Concurrency, TimeSpan.FromSeconds(settings.Seconds));
        loadCase.Results.Add(result);
        Console.WriteLine($"  rep {rep + 1} {loadCase.Name,-44} {result}");
    }

    // The open-loop pass, in the same rotated order.
    for (var i = 0; settings.Rate > 0 && i < cases.Length; i++)
    {
        var loadCase = cases[(i + rep) % cases.Length];
        var result = await loadCase.RunAtRateAsync(settings.Rate, TimeSpan.FromSeconds(settings.Seconds));
        loadCase.RateResults.Add(result);
        Console.WriteLine($"  rep {rep + 1} at {settings.Rate}/s {loadCase.Name,-44} {result}");
    }
}

if (settings.Sidecar)
{
    // The CPU each proxy burns with no traffic once the load is over (timers, the xDS stream, thread pool upkeep): a 5-s
    // window after 2 s for in-flight work to end.
    await Task.Delay(TimeSpan.FromSeconds(2));
    var idleCpuBefore = proxies.ToDictionary(p => p.Name, p => p.CpuTime());
    var idleWindow = Stopwatch.StartNew();
    await Task.Delay(TimeSpan.FromSeconds(5));
    var idleCpu = proxies.ToDictionary(p => p.Name, p => (p.CpuTime() - idleCpuBefore[p.Name]).TotalMilliseconds / idleWindow.Elapsed.TotalSeconds);

    SidecarReport.PrintRuns(cases, settings);
    SidecarReport.PrintMemory(cases, idleRss, idleCpu);

    // Idle keep-alive connections: to nginx, then to the sidecar's outbound port and its inbound (mesh, mTLS) port,
    // each proxy's RSS and open files read with them held; the mTLS clients present an SVID of the run's mesh.
    if (settings.IdleConnections > 0)
    {
        var svid = await WorkloadCertificates.IssueAsync(controlPlane, "loadtest-idle", Path.Combine(root, "idle-identity"));
        await SidecarReport.MeasureIdleConnectionsAsync(settings.IdleConnections, nginx, sidecar, () => WorkloadCertificates.CreateMtlsClient(svid));
    }
}

// The baseline of each case: the first case, except in the gRPC run, where the factory cases compare with each other.
LoadCase BaselineOf(LoadCase loadCase) => settings.Grpc && Array.IndexOf(cases, loadCase) >= 2 && cases.Length == 4 ? cases[2] : cases[0];

void PrintTable(Func<LoadCase, List<LoadResult>> resultsOf)
{
    double Median(LoadCase loadCase, Func<LoadResult, double> selector) => LoadCase.Median(resultsOf(loadCase), selector);

    // Reps are interleaved, so rep k of every case saw about the same machine: the ratio within each rep, then the median.
    double PerRepRatio(LoadCase loadCase)
    {
        var ratios = resultsOf(loadCase).Select((r, i) => r.RequestsPerSecond / resultsOf(BaselineOf(loadCase))[i].RequestsPerSecond).Order().ToArray();
        return ratios[ratios.Length / 2];
    }

    Console.WriteLine("| client | requests/s (median) | × plain (medians) | × plain (median of per-rep ratios) | p50 ms | p99 ms | client CPU µs/req | client B/req | TLS handshakes per 10k requests | failed |");
    Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    foreach (var loadCase in cases)
    {
        var baseline = Median(BaselineOf(loadCase), r => r.RequestsPerSecond);
        var rps = Median(loadCase, r => r.RequestsPerSecond);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {loadCase.Name} | {rps:0} | {rps / baseline:0.00} | {PerRepRatio(loadCase):0.00} | {Median(loadCase, r => r.P50Ms):0.000} | {Median(loadCase, r => r.P99Ms):0.000} | {Median(loadCase, r => r.CpuMicrosecondsPerRequest):0.0} | {Median(loadCase, r => r.BytesAllocatedPerRequest):0} | {(settings.Mtls ? Median(loadCase, r => r.HandshakesPer10k).ToString("0.00", CultureInfo.InvariantCulture) : "–")} | {resultsOf(loadCase).Sum(r => r.Failed)} |"));
    }
}

if (!settings.Sidecar)
{
    Console.WriteLine();
    PrintTable(loadCase => loadCase.Results);
    if (settings.Rate > 0)
    {
        Console.WriteLine();
        Console.WriteLine($"Open loop at {settings.Rate} requests/s (latency from the intended send time):");
        PrintTable(loadCase => loadCase.RateResults);
    }
}

if (settings.Mtls)
{
    Console.WriteLine();
    foreach (var loadCase in cases)
    {
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"TLS handshakes, whole run with warm-up: {loadCase.Name}: {loadCase.TotalHandshakes} for {loadCase.TotalRequests} requests ({loadCase.TotalHandshakes * 10_000.0 / Math.Max(1, loadCase.TotalRequests):0.00} per 10k)"));
    }
}

await host.StopAsync();
plain.Dispose();
await backend.StopAsync(TimeSpan.FromSeconds(10));
await controlPlane.Process.StopAsync(TimeSpan.FromSeconds(10));
Directory.Delete(root, recursive: true);
