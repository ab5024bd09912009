using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Registry;

/// <summary>
/// Removes expired leases on a timer driven by the injected <see cref="TimeProvider"/>. While the control plane has no
/// valid config it refuses renewals (their authorization needs the ServiceEntries), so then it holds every lease instead:
/// its own outage must not deregister the workloads, which keep serving on their last config meanwhile.
/// </summary>
internal sealed class LeaseExpiryService(WorkloadLeaseRegistry registry, ConfigStore store, TimeProvider time) : BackgroundService
{
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(250);

    private PeriodicTimer? _timer;

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // Created before ExecuteAsync runs (on the thread pool) so time advanced right after start is observed.
        _timer = new PeriodicTimer(Period, time);
        return base.StartAsync(cancellationToken);
    }

    public override void Dispose()
    {
        _timer?.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _timer!.WaitForNextTickAsync(stoppingToken))
            {
                if (store.HasValidConfig)
                {
                    registry.RemoveExpired();
                }
                else
                {
                    registry.HoldAll();
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
