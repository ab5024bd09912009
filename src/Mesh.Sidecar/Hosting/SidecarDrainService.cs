using Mesh.Client.Registration;
using Mesh.Sidecar.Admin;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Hosting;

/// <summary>
/// Graceful drain on SIGTERM, before Kestrel stops: leave the mesh first (Mesh.Client deregisters the WorkloadEntry,
/// and callers learn it by EDS), then keep serving for <see cref="SidecarOptions.DrainDuration"/> (Istio's
/// terminationDrainDuration) while readiness says draining; then the host stops Kestrel, which stops accepting and
/// finishes the requests in flight.
/// </summary>
internal sealed partial class SidecarDrainService(
    SidecarOptions options,
    SidecarDrainState state,
    IServiceProvider services,
    TimeProvider time,
    ILogger<SidecarDrainService> logger) : IHostedLifecycleService
{
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        state.Begin();

        // Hosted services stop in reverse order of registration; deregistration must come before the drain whatever that
        // order is, and running it twice is harmless (the second time there is no lease left).
        if (services.GetService<WorkloadRegistrationService>() is { } registration)
        {
            await registration.StoppingAsync(cancellationToken).ConfigureAwait(false);
        }

        Log.Draining(logger, options.DrainDuration.TotalSeconds);
        try
        {
            await Task.Delay(options.DrainDuration, time, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The host's shutdown timeout ended the drain early.
        }

        Log.Drained(logger);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
