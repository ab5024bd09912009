using Mesh.Client.Xds;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Mesh.Client.Hosting;

/// <summary>The <c>mesh</c> readiness check: healthy once the first complete configuration arrived.</summary>
internal sealed class MeshReadinessHealthCheck : IHealthCheck
{
    public const string Name = "mesh";
    public const string ReadyTag = "ready";

    private readonly XdsClient _client;

    public MeshReadinessHealthCheck(XdsClient client)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
    }

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var snapshot = _client.Current;
        var data = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["controlPlane"] = _client.ControlPlaneAddress.ToString(),
            ["connected"] = _client.IsConnected,
        };
        if (_client.LastNack is { } nack)
        {
            data["lastNack"] = nack.Message;
        }

        if (snapshot.IsSynced)
        {
            var connection = _client.IsConnected ? string.Empty : $" (control plane currently unreachable: {_client.LastConnectionError}; serving the last configuration)";
            return Task.FromResult(HealthCheckResult.Healthy(
                $"synced with control plane {_client.ControlPlaneAddress}: version {snapshot.Version}, {snapshot.Services.Length} services{connection}",
                data));
        }

        var error = _client.LastConnectionError ?? (_client.IsConnected ? "waiting for the complete configuration" : "connecting");
        return Task.FromResult(HealthCheckResult.Unhealthy(
            $"not yet synced with control plane {_client.ControlPlaneAddress}: {error}",
            data: data));
    }
}
