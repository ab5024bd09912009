using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Mesh.Client.Hosting;

/// <summary>The <c>mesh</c> readiness check: healthy once the first complete configuration arrived.</summary>
internal sealed class MeshReadinessHealthCheck : IHealthCheck
{
    public const string Name = "mesh";
    public const string ReadyTag = "ready";

    private readonly XdsClient _client;
    private readonly WorkloadCertificateStore? _certificates;
    private readonly InboundPolicyStore? _inbound;

    public MeshReadinessHealthCheck(XdsClient client, WorkloadCertificateStore? certificates = null, InboundPolicyStore? inbound = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _client = client;
        _certificates = certificates;
        _inbound = inbound;
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

        if (_certificates is { IsSecure: true } store)
        {
            data["trustBundle"] = store.Bundle.Source;
            if (store.Current is not { } certificate)
            {
                var why = store.LastError ?? (store.Bundle.Roots.Count == 0 ? "no trust bundle (check Mesh:ControlPlane:RootCertificate)" : "request in progress");
                return Task.FromResult(HealthCheckResult.Unhealthy(
                    $"no workload certificate yet from the CA at {_client.ControlPlaneAddress}: {why}",
                    data: data));
            }

            data["spiffeId"] = certificate.Id.Value;
            data["certificateExpires"] = certificate.NotAfter.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        }

        if (snapshot.IsSynced && _inbound?.PendingReason() is { } pending)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"synced with control plane {_client.ControlPlaneAddress}, but {pending}", data: data));
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
