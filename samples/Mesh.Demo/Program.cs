// dotnet run --project samples/Mesh.Demo [-- --duration 30 --rps 20 --inventory 2 --ratings 1 --config <folder>]
// Starts the control plane and the sample services as separate processes on 127.0.0.1, drives
// traffic into frontend and prints a live table. Ctrl+C (SIGINT), SIGTERM or SIGQUIT stops every child.
// dotnet run --project samples/Mesh.Demo -- split <v2 percent> [--config <folder>]
// Rewrites the orders routes in the config folder a running demo watches (10: canary, 100: blue-green to v2).
using System.Runtime.InteropServices;
using Mesh.Demo;

if (args is ["split", ..])
{
    var wellFormed = args is ["split", _] or ["split", _, "--config", _];
    if (!wellFormed
        || !int.TryParse(args[1], System.Globalization.CultureInfo.InvariantCulture, out var percent)
        || percent is < 0 or > 100)
    {
        Console.Error.WriteLine("Usage: Mesh.Demo split <percent of orders traffic for v2, 0-100> [--config <folder>]   (10: canary, 100: blue-green switch to v2, 0: back to v1)");
        return 2;
    }

    var path = OrdersRoutes.Write(args.Length == 4 ? Path.GetFullPath(args[3]) : OrdersRoutes.ConfigDirectory(), percent);
    Console.WriteLine($"orders: v1 {100 - percent} %, v2 {percent} % (beta users always v2). Wrote {path}; a running demo applies it within a second.");
    return 0;
}

var options = DemoOptions.Parse(args);
using var stop = new CancellationTokenSource();

// Handled signals do not end the process at once: the demo stops its children first, whichever way it is stopped
// (a terminal's Ctrl+C, `kill <pid>`, a script or CI job that sends SIGTERM).
void OnStopSignal(PosixSignalContext context)
{
    context.Cancel = true;
    stop.Cancel();
}

using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnStopSignal);
using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnStopSignal);
using var onQuit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnStopSignal);
if (options.Duration is { } duration)
{
    stop.CancelAfter(duration);
}

await using var mesh = new DemoMesh(options);
try
{
    await mesh.StartAsync(stop.Token);
    await mesh.RunAsync(stop.Token);
}
catch (OperationCanceledException) when (stop.IsCancellationRequested)
{
}
catch (Exception e) when (e is TimeoutException or InvalidOperationException)
{
    Console.Error.WriteLine($"The demo could not start: {e.Message}");
    return 1;
}

Console.WriteLine();
Console.WriteLine("Stopping every process the demo started...");
return mesh.Summary.Succeeded > 0 ? 0 : 1;
