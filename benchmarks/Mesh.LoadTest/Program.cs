using System.Diagnostics;
using System.Globalization;
using Mesh.Client;
using Mesh.LoadTest;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// dotnet run -c Release --project benchmarks/Mesh.LoadTest -- [--seconds 10] [--reps 5] [--concurrency 64]
// Side by side in one run, interleaved (plain, mesh, plain, mesh, …): a plain HttpClient calling a
// fixed backend by its address, and the mesh client calling the same backend as http://backend/.
var settings = LoadSettings.Parse(args);
var root = Directory.CreateTempSubdirectory("mesh-load-").FullName;
var configDirectory = Directory.CreateDirectory(Path.Combine(root, "config")).FullName;

await using var backend = ChildProcess.StartDotnet("backend", LaunchableApps.Paths["Mesh.Benchmarks.Backend"], environment: new Dictionary<string, string?> { ["ASPNETCORE_URLS"] = "http://127.0.0.1:0" });
var backendAddress = await backend.WaitForListeningAsync(TimeSpan.FromSeconds(60));
await File.WriteAllTextAsync(Path.Combine(configDirectory, "backend.yaml"), $"""
    apiVersion: networking.istio.io/v1
    kind: ServiceEntry
    metadata: {"{"}name: backend, namespace: default{"}"}
    spec:
      hosts: [backend.default.svc.cluster.local]
      ports: [{"{"}number: 80, name: http, protocol: HTTP{"}"}]
      resolution: STATIC
      endpoints: [{"{"}address: 127.0.0.1, ports: {"{"}http: {backendAddress.Port}{"}"}{"}"}]
    """);
var controlPlane = await MeshProcesses.StartControlPlaneAsync(LaunchableApps.Paths["Mesh.ControlPlane"], configDirectory, Path.Combine(root, "state"));
await using var controlPlaneProcess = controlPlane.Process;

var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.AddServiceMesh(options => options.ControlPlane.Address = controlPlane.XdsAddress);
builder.Services.AddHttpClient("mesh", client => client.BaseAddress = new Uri("http://backend/"));
builder.Services.AddHttpClient("factory", client => client.BaseAddress = backendAddress).WithoutServiceMesh();
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

using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) }) { BaseAddress = backendAddress };
var factory = host.Services.GetRequiredService<IHttpClientFactory>();
var cases = new[]
{
    new LoadCase("plain HttpClient", plain),
    new LoadCase("IHttpClientFactory client, mesh opted out", factory.CreateClient("factory")),
    new LoadCase("mesh client (http://backend/)", factory.CreateClient("mesh")),
};

Console.WriteLine($"backend {backendAddress}  control plane {controlPlane.XdsAddress}  concurrency {settings.Concurrency}  {settings.Reps} reps × {settings.Seconds} s per case, interleaved, after {settings.WarmupSeconds} s warm-up each");
foreach (var loadCase in cases)
{
    await LoadCase.RunAsync(loadCase.Client, settings.Concurrency, TimeSpan.FromSeconds(settings.WarmupSeconds));
}

for (var rep = 0; rep < settings.Reps; rep++)
{
    foreach (var loadCase in cases)
    {
        var result = await LoadCase.RunAsync(loadCase.Client, settings.Concurrency, TimeSpan.FromSeconds(settings.Seconds));
        loadCase.Results.Add(result);
        Console.WriteLine($"  rep {rep + 1} {loadCase.Name,-44} {result}");
    }
}

Console.WriteLine();
Console.WriteLine("| client | requests/s (median) | × plain | p50 ms | p99 ms | client CPU µs/req | client B/req | failed |");
Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
var baseline = cases[0].Median(r => r.RequestsPerSecond);
foreach (var loadCase in cases)
{
    var rps = loadCase.Median(r => r.RequestsPerSecond);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {loadCase.Name} | {rps:0} | {rps / baseline:0.00} | {loadCase.Median(r => r.P50Ms):0.000} | {loadCase.Median(r => r.P99Ms):0.000} | {loadCase.Median(r => r.CpuMicrosecondsPerRequest):0.0} | {loadCase.Median(r => r.BytesAllocatedPerRequest):0} | {loadCase.Results.Sum(r => r.Failed)} |"));
}

await host.StopAsync();
await controlPlane.Process.StopAsync(TimeSpan.FromSeconds(10));
Directory.Delete(root, recursive: true);
