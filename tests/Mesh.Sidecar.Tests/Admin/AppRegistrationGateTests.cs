using System.Net;
using System.Net.Sockets;
using Mesh.Sidecar.Admin;
using Mesh.Sidecar.Hosting;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Sidecar.Tests.Admin;

/// <summary>The sidecar registers its workload only once its app answers: before, callers got 503 UF from an endpoint whose app was not up.</summary>
public sealed class AppRegistrationGateTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task WaitUntilReadyAsync_AppNotListening_WaitsUntilItAccepts()
    {
        var port = FreePort();
        using var check = new AppHealthCheck(new SidecarOptions { AppPort = port }, new SidecarDrainState());
        var time = new FakeTimeProvider();
        var gate = new AppRegistrationGate(check, time, NullLogger<AppRegistrationGate>.Instance);

        // The app is down: check after check is refused and the gate stays shut (a gate that opened would complete here).
        var waiting = gate.WaitUntilReadyAsync(CancellationToken.None);
        for (var i = 0; i < 3; i++)
        {
            await Task.WhenAny(waiting, Task.Delay(200, CancellationToken.None));
            time.Advance(AppRegistrationGate.PollInterval);
        }

        Assert.False(waiting.IsCompleted, "the gate opened while nothing listened on the app port");

        using var app = new TcpListener(IPAddress.Loopback, port);
        app.Start();
        using var timeout = new CancellationTokenSource(Deadline);
        while (!waiting.IsCompleted)
        {
            Assert.False(timeout.IsCancellationRequested, "the gate did not open once the app accepted connections");
            time.Advance(AppRegistrationGate.PollInterval);
            await Task.WhenAny(waiting, Task.Delay(50, CancellationToken.None));
        }

        await waiting;
    }

    [Fact]
    public async Task WaitUntilReadyAsync_HostStops_Cancelled()
    {
        using var check = new AppHealthCheck(new SidecarOptions { AppPort = FreePort() }, new SidecarDrainState());
        var gate = new AppRegistrationGate(check, new FakeTimeProvider(), NullLogger<AppRegistrationGate>.Instance);
        using var stopping = new CancellationTokenSource();

        var waiting = gate.WaitUntilReadyAsync(stopping.Token);
        await stopping.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
