namespace Mesh.ControlPlane.Registry;

/// <summary>Removes expired leases on a timer driven by the injected <see cref="TimeProvider"/>.</summary>
internal sealed class LeaseExpiryService(WorkloadLeaseRegistry registry, TimeProvider time) : BackgroundService
{
    public static readonly TimeSpan Period = TimeSpan.FromMilliseconds(250);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                registry.RemoveExpired();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
