using Mesh.Client.Registration;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Admin;

/// <summary>
/// The sidecar's workload is an endpoint of its service only while the app answers (<see cref="AppHealthCheck"/>), as
/// Kubernetes keeps a Pod in its Service's endpoints only while it is ready: it registers once the app answers (a
/// sidecar that registered first sent callers 503 UF until the app came up; found in review, 2026-12-05), and leaves the
/// mesh when the app stops answering <see cref="FailureThreshold"/> checks in a row (Kubernetes' readiness default), to
/// register again once it answers. Checked every <see cref="PollInterval"/> until ready, then every
/// <see cref="ReadyPollInterval"/>: a registered workload leaves after about 6 s of an app that does not answer, long
/// enough that a restart of the app's listener or a slow answer does not take it out.
/// </summary>
internal sealed partial class AppRegistrationGate(AppHealthCheck app, SidecarDrainState drain, TimeProvider time, ILogger<AppRegistrationGate> logger) : IWorkloadRegistrationGate
{
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>How often a registered workload's app is checked.</summary>
    public static readonly TimeSpan ReadyPollInterval = TimeSpan.FromSeconds(2);

    /// <summary>Failed checks in a row that take a ready workload out of the mesh: one refused connection is not an outage.</summary>
    public const int FailureThreshold = 3;

    public async Task WaitUntilNotReadyAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        while (true)
        {
            await Task.Delay(ReadyPollInterval, time, cancellationToken).ConfigureAwait(false);

            // Draining is the sidecar leaving on purpose: the registration's own stop deregisters, keeping the policy for it.
            if (drain.IsDraining)
            {
                failures = 0;
                continue;
            }

            var result = await app.CheckHealthAsync(new HealthCheckContext(), cancellationToken).ConfigureAwait(false);
            failures = result.Status == HealthStatus.Healthy ? 0 : failures + 1;
            if (failures >= FailureThreshold)
            {
                Log.NotReady(logger, FailureThreshold, result.Description ?? "unhealthy");
                return;
            }
        }
    }

    public async Task WaitUntilReadyAsync(CancellationToken cancellationToken)
    {
        var logged = false;
        while (true)
        {
            var result = await app.CheckHealthAsync(new HealthCheckContext(), cancellationToken).ConfigureAwait(false);
            if (result.Status == HealthStatus.Healthy)
            {
                return;
            }

            if (!logged)
            {
                Log.Waiting(logger, result.Description ?? "unhealthy");
                logged = true;
            }

            await Task.Delay(PollInterval, time, cancellationToken).ConfigureAwait(false);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Not registering with the control plane until the app answers: {Reason}.", EventName = "WaitingForApp")]
        public static partial void Waiting(ILogger logger, string reason);

        [LoggerMessage(2, LogLevel.Warning, "The app failed {Checks} checks in a row ({Reason}): the workload leaves the mesh until the app answers again.", EventName = "AppNotReady")]
        public static partial void NotReady(ILogger logger, int checks, string reason);
    }
}
