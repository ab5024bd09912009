using Mesh.Client.Registration;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Admin;

/// <summary>
/// The sidecar registers its workload only once the app answers (<see cref="AppHealthCheck"/>), as Kubernetes keeps a Pod
/// out of its Service's endpoints until it is ready: a sidecar that registered first sent callers 503 UF until the app
/// came up (found in review, 2026-12-05). Checked every <see cref="PollInterval"/> until then.
/// </summary>
internal sealed partial class AppRegistrationGate(AppHealthCheck app, TimeProvider time, ILogger<AppRegistrationGate> logger) : IWorkloadRegistrationGate
{
    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

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
    }
}
