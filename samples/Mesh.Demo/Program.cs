// dotnet run --project samples/Mesh.Demo [-- --duration 30 --rps 20]
// Starts the control plane and the sample services as separate processes on 127.0.0.1, drives
// traffic into frontend and prints a live table. Ctrl+C (SIGINT), SIGTERM or SIGQUIT stops every child.
using System.Runtime.InteropServices;
using Mesh.Demo;

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
