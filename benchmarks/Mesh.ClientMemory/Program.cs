using System.Diagnostics;
using System.Globalization;
using System.Text;
using Mesh.Samples.Processes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// Measures the managed heap a Mesh.Client holds for its mesh state, against a real control plane (a child process) fed
// generated ServiceEntries. One scenario per run, so that nothing of another stays on the heap:
//   dotnet run -c Release --project benchmarks/Mesh.ClientMemory -- --mode Wildcard --services 1000 --endpoints 10
//   dotnet run -c Release --project benchmarks/Mesh.ClientMemory -- --mode OnDemand --services 5000 --endpoints 10 --call 10
//   dotnet run -c Release --project benchmarks/Mesh.ClientMemory -- --mode OnDemand --services 5000 --endpoints 10 --call 0
//   add --protocol Delta for the incremental wire (default StateOfTheWorld)
// --hold <seconds> keeps the process alive after the measurement, for dotnet-gcdump.
// The heap is read after full blocking collections: before the client's host is built, once it is synced (and has
// called --call services), and the difference is what the mesh client costs (its host, stream and snapshot).
var mode = Argument("--mode", "Wildcard");
var protocol = Argument("--protocol", "StateOfTheWorld");
var services = int.Parse(Argument("--services", "1000"), CultureInfo.InvariantCulture);
var endpoints = int.Parse(Argument("--endpoints", "10"), CultureInfo.InvariantCulture);
var calls = int.Parse(Argument("--call", mode == "OnDemand" ? "10" : "0"), CultureInfo.InvariantCulture);

var root = Directory.CreateTempSubdirectory("mesh-client-memory-").FullName;
try
{
    var config = Directory.CreateDirectory(Path.Combine(root, "config")).FullName;
    await File.WriteAllTextAsync(Path.Combine(config, "services.yaml"), ServiceEntries(services, endpoints));
    var controlPlane = await MeshProcesses.StartControlPlaneAsync(
        LaunchableApps.Paths["Mesh.ControlPlane"], config, Path.Combine(root, "state"), xdsPort: 0,
        extraArgs: ["--Logging:LogLevel:Default=Warning"]);
    await using var controlPlaneProcess = controlPlane.Process;

    var before = Heap();
    var clock = Stopwatch.StartNew();
    var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
    builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["Mesh:ControlPlane:Address"] = controlPlane.RequirePlaintextXds().ToString(),
        ["Mesh:ControlPlane:Subscriptions"] = mode,
        ["Mesh:ControlPlane:Protocol"] = protocol,
        ["Mesh:Service"] = "memory-probe",
    });
    builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
    builder.AddServiceMesh();
    using var host = builder.Build();
    await host.StartAsync();

    var health = host.Services.GetRequiredService<HealthCheckService>();
    while ((await health.CheckHealthAsync()).Status != HealthStatus.Healthy)
    {
        if (clock.Elapsed > TimeSpan.FromMinutes(3))
        {
            throw new TimeoutException("The mesh client did not sync within 3 minutes.");
        }

        await Task.Delay(100);
    }

    // On demand: call services spread over the set; each call subscribes (its endpoints refuse: the call fails after the
    // subscription, which is what is measured).
    var http = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient();
    var failed = 0;
    for (var i = 0; i < calls; i++)
    {
        try
        {
            using var response = await http.GetAsync(new Uri($"http://svc-{i * (services / Math.Max(1, calls))}/"));
        }
        catch (HttpRequestException)
        {
            failed++;
        }
    }

    var synced = clock.Elapsed;
    var after = Heap();
    GC.KeepAlive(host);
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"mode={mode} protocol={protocol} services={services} endpoints={endpoints} calls={calls} (refused {failed}) synced+called in {synced.TotalSeconds:F1} s: "
        + $"heap before {before / 1048576.0:F2} MB, after {after / 1048576.0:F2} MB, mesh client {(after - before) / 1048576.0:F2} MB"));
    if (int.Parse(Argument("--hold", "0"), CultureInfo.InvariantCulture) is > 0 and var hold)
    {
        // Time to take a heap dump of this process (dotnet-gcdump collect -p <pid>) to see what the heap holds.
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"holding {hold} s: pid {Environment.ProcessId}"));
        await Task.Delay(TimeSpan.FromSeconds(hold));
    }

    await host.StopAsync();
}
finally
{
    Directory.Delete(root, recursive: true);
}

static long Heap()
{
    for (var i = 0; i < 3; i++)
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
    }

    return GC.GetTotalMemory(forceFullCollection: true);
}

static string ServiceEntries(int count, int endpoints)
{
    // Endpoints on 127.0.x.y port 9 (nothing listens): the control plane serves them, connections are refused.
    var yaml = new StringBuilder();
    for (var i = 0; i < count; i++)
    {
        yaml.Append(CultureInfo.InvariantCulture, $"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {"{"}name: svc-{i}, namespace: default{"}"}
            spec:
              hosts: [svc-{i}.default.svc.cluster.local]
              ports: [{"{"}number: 80, name: http, protocol: HTTP{"}"}]
              resolution: STATIC
              endpoints:

            """);
        for (var e = 0; e < endpoints; e++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  - {"{"}address: 127.0.{(i * endpoints + e) / 250 % 250}.{(i * endpoints + e) % 250 + 1}, ports: {"{"}http: 9{"}"}{"}"}\n");
        }

        yaml.Append("---\n");
    }

    return yaml.ToString();
}

string Argument(string name, string fallback)
{
    var index = Array.IndexOf(args, name);
    return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
}
