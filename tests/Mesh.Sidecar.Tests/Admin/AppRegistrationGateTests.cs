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
        var gate = new AppRegistrationGate(check, new SidecarDrainState(), time, NullLogger<AppRegistrationGate>.Instance);

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
        var gate = new AppRegistrationGate(check, new SidecarDrainState(), new FakeTimeProvider(), NullLogger<AppRegistrationGate>.Instance);
        using var stopping = new CancellationTokenSource();

        var waiting = gate.WaitUntilReadyAsync(stopping.Token);
        await stopping.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
    }

    [Fact]
    public async Task WaitUntilNotReadyAsync_AppStopsAnswering_CompletesAfterThreeFailedChecksInARow_NotBefore()
    {
        var port = FreePort();
        var app = new TcpListener(IPAddress.Loopback, port);
        app.Start();
        using var check = new AppHealthCheck(new SidecarOptions { AppPort = port }, new SidecarDrainState());
        var time = new FakeTimeProvider();
        var gate = new AppRegistrationGate(check, new SidecarDrainState(), time, NullLogger<AppRegistrationGate>.Instance);

        // The app answers: check after check, the workload stays.
        var watching = gate.WaitUntilNotReadyAsync(CancellationToken.None);
        await AdvanceChecksAsync(time, watching, 3);
        Assert.False(watching.IsCompleted, "the gate reported not ready while the app answered");

        // The app is down: two failed checks are not an outage, the third is.
        app.Stop();
        await AdvanceChecksAsync(time, watching, AppRegistrationGate.FailureThreshold - 1);
        Assert.False(watching.IsCompleted, "the gate reported not ready before the failure threshold");
        using var timeout = new CancellationTokenSource(Deadline);
        while (!watching.IsCompleted)
        {
            Assert.False(timeout.IsCancellationRequested, "the gate did not report the app down");
            await AdvanceChecksAsync(time, watching, 1);
        }

        await watching;
    }

    [Fact]
    public async Task WaitUntilNotReadyAsync_SidecarDraining_NotAReadinessFailure()
    {
        // Draining fails the app check on purpose; the registration's own stop leaves the mesh (keeping the drain's policy).
        var drain = new SidecarDrainState();
        using var check = new AppHealthCheck(new SidecarOptions { AppPort = FreePort() }, drain);
        var time = new FakeTimeProvider();
        var gate = new AppRegistrationGate(check, drain, time, NullLogger<AppRegistrationGate>.Instance);
        drain.Begin();

        var watching = gate.WaitUntilNotReadyAsync(CancellationToken.None);
        await AdvanceChecksAsync(time, watching, AppRegistrationGate.FailureThreshold + 2);

        Assert.False(watching.IsCompleted, "a draining sidecar was reported not ready");
    }

    /// <summary>Lets <paramref name="count"/> checks of a registered workload run: each interval elapses, and the check (a real connect) gets time to finish.</summary>
    private static async Task AdvanceChecksAsync(FakeTimeProvider time, Task watching, int count)
    {
        for (var i = 0; i < count; i++)
        {
            time.Advance(AppRegistrationGate.ReadyPollInterval);
            await Task.WhenAny(watching, Task.Delay(200, CancellationToken.None));
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}
