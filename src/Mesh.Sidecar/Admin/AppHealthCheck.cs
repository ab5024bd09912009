using System.Net;
using System.Net.Sockets;
using Mesh.Sidecar.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Mesh.Sidecar.Admin;

/// <summary>
/// The <c>app</c> readiness check: the app answers on 127.0.0.1:&lt;AppPort&gt; (a TCP connect, or a 2xx from
/// <c>Sidecar:AppReadyPath</c>). Unhealthy while the sidecar drains.
/// </summary>
internal sealed class AppHealthCheck(SidecarOptions options, SidecarDrainState drain) : IHealthCheck, IDisposable
{
    public const string Name = "app";

    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false })
    {
        Timeout = ProbeTimeout,
        DefaultRequestVersion = options.AppProtocol == SidecarAppProtocol.Http2 ? HttpVersion.Version20 : HttpVersion.Version11,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
    };

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        if (drain.IsDraining)
        {
            return HealthCheckResult.Unhealthy("draining: the sidecar left the mesh and is stopping");
        }

        var app = $"127.0.0.1:{options.AppPort}";
        if (options.AppReadyPath is { } path)
        {
            try
            {
                using var response = await _http.GetAsync(new Uri($"http://{app}{path}"), cancellationToken).ConfigureAwait(false);
                return response.IsSuccessStatusCode
                    ? HealthCheckResult.Healthy($"the app answered {(int)response.StatusCode} on http://{app}{path}")
                    : HealthCheckResult.Unhealthy($"the app answered {(int)response.StatusCode} on http://{app}{path} (Sidecar:AppReadyPath)");
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                return HealthCheckResult.Unhealthy($"the app does not answer on http://{app}{path} (Sidecar:AppReadyPath): {ex.Message}");
            }
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ProbeTimeout);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, options.AppPort, timeout.Token).ConfigureAwait(false);
            return HealthCheckResult.Healthy($"the app accepts connections on {app}");
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy($"the app does not accept connections on {app} (Sidecar:AppPort): {ex.Message}");
        }
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>Whether the sidecar is draining (it left the mesh on SIGTERM and keeps serving until the drain ends).</summary>
internal sealed class SidecarDrainState
{
    private volatile bool _draining;

    public bool IsDraining => _draining;

    public void Begin() => _draining = true;
}
