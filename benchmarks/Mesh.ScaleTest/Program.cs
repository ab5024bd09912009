using System.Diagnostics;
using System.Globalization;
using Mesh.ScaleTest;

// dotnet run -c Release --project benchmarks/Mesh.ScaleTest -- --services 1000 --clients 200 [--mode sotw-wildcard] [--changes 5] [--window 30] [--restart]
// N services of generated Istio YAML, a real control plane on them, C simulated ADS clients in this process; prints how
// long the cold sync took, how fast an endpoint change reached the clients and what it cost, and a markdown table row
// (docs/performance.md, "Control-plane scale"). See ScaleSettings.Usage for every option.
var settings = ScaleSettings.Parse(args, out var errors);
if (args.Contains("--help") || args.Contains("-h"))
{
    Console.WriteLine(ScaleSettings.Usage);
    return 0;
}

if (errors.Count > 0)
{
    foreach (var error in errors)
    {
        await Console.Error.WriteLineAsync($"error: {error}");
    }

    await Console.Error.WriteLineAsync(ScaleSettings.Usage);
    return 2;
}

using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // Ctrl+C ends the run cleanly: clients stopped, the control plane stopped by its PID, the temp folder removed.
    e.Cancel = true;
    stop.Cancel();
};

// Enough thread-pool threads from the start for a thousand streams' continuations, so the harness's own ramp-up is not measured.
ThreadPool.GetMinThreads(out var workers, out var io);
ThreadPool.SetMinThreads(Math.Max(workers, Environment.ProcessorCount * 8), io);

Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"Mesh control-plane scale run, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {Environment.ProcessorCount} cores, mode {ScaleSettings.ModeName(settings.Mode)}, {settings.Changes} changes, window {settings.Window.TotalSeconds:0} s{(settings.Restart ? ", restart" : string.Empty)}"));
var harness = Process.GetCurrentProcess();
var rows = new List<string>();
var exitCode = 0;
foreach (var size in settings.Sizes)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{size.Services:N0} services × {size.Endpoints} endpoints, {size.Clients:N0} clients:"));
    var cpuBefore = harness.TotalProcessorTime;
    try
    {
        var result = await new ScaleRun(settings, size, settings.ControlPlane ?? LaunchableApps.Paths["Mesh.ControlPlane"], Console.Out).RunAsync(stop.Token);
        harness.Refresh();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  harness: CPU {(harness.TotalProcessorTime - cpuBefore).TotalSeconds:0.0} s, peak working set {harness.PeakWorkingSet64 / (1024 * 1024)} MB; distinct listeners received {result.ListenersServed}; thread-pool starvation warnings {result.StarvationWarnings}"));
        if (result.FirstClientError is { } error)
        {
            Console.WriteLine($"  a client that never synced last saw: {error}");
        }

        if (result.NotSynced > 0 || result.NotResynced > 0 || result.Changes.Any(c => c.LatenciesMs.Count < c.Subscribers))
        {
            exitCode = 1;
        }

        rows.Add(ScaleReport.Row(result));
    }
    catch (OperationCanceledException) when (stop.IsCancellationRequested)
    {
        Console.WriteLine("  cancelled");
        return 130;
    }
    catch (Exception e) when (e is InvalidOperationException or TimeoutException)
    {
        await Console.Error.WriteLineAsync($"error: {e.Message}");
        return 1;
    }

    GC.Collect();
}

Console.WriteLine();
Console.WriteLine(ScaleReport.Header);
foreach (var row in rows)
{
    Console.WriteLine(row);
}

// 1: some client did not sync, did not get a change or did not resync within its window (the table says which).
return exitCode;
