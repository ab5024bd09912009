using System.Net;
using System.Net.Sockets;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Tcp;

/// <summary>
/// An inbound tunnel's mesh port. Mesh.Client's connection middleware has already run the mTLS handshake the port's
/// PeerAuthentication asks for (and closed plaintext under STRICT); this handler applies the port's AuthorizationPolicy at
/// connection level (rules with HTTP fields read as Istio reads them on TCP), connects to the app's
/// <c>127.0.0.1:AppPort</c> and relays the decrypted bytes. Istio's TCP metrics with reporter <c>destination</c>.
/// </summary>
internal sealed partial class TcpInboundConnectionHandler : ConnectionHandler
{
    private static readonly TimeSpan AppConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly TcpInboundTunnel _tunnel;
    private readonly TimeSpan _idleTimeout;
    private readonly InboundPolicyStore _policies;
    private readonly MeshMetrics _metrics;
    private readonly IstioRequestMetrics _labels;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public TcpInboundConnectionHandler(
        TcpInboundTunnel tunnel,
        SidecarTcpOptions options,
        InboundPolicyStore policies,
        MeshMetrics metrics,
        IstioRequestMetrics labels,
        TimeProvider time,
        ILogger<TcpInboundConnectionHandler> logger)
    {
        ArgumentNullException.ThrowIfNull(tunnel);
        ArgumentNullException.ThrowIfNull(options);
        _tunnel = tunnel;
        _idleTimeout = options.IdleTimeout;
        _policies = policies;
        _metrics = metrics;
        _labels = labels;
        _time = time;
        _logger = logger;
    }

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var identity = connection.Features.Get<IMeshPeerIdentityFeature>();
        var peer = identity?.SpiffeId;
        var remote = connection.RemoteEndPoint?.ToString() ?? "?";
        var localPort = (connection.LocalEndPoint as IPEndPoint)?.Port ?? 0;
        switch (_policies.Lookup(localPort, out var policy))
        {
            case InboundPortState.Policy:
                var decision = policy!.AuthorizeConnection(peer, identity?.PeerNamespace);
                if (!decision.IsAllowed)
                {
                    Log.Denied(_logger, _tunnel.Name, remote, peer ?? "plaintext", decision.Reason);
                    return;
                }

                break;
            case InboundPortState.NotReceived or InboundPortState.Removed:
                // Fail closed, as the HTTP ports answer 503: no policy, no bytes to the app.
                Log.NoPolicy(_logger, _tunnel.Name, remote, localPort);
                return;
        }

        var metrics = new TcpConnectionMetrics(_metrics, _labels.TcpDestinationLabels(peer, mutualTls: peer is not null, ResponseFlags.None));
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            // Not ConnectionClosed: Kestrel fires it when the peer half-closes, which must not cut the tunnel.
            using (var connect = new CancellationTokenSource(AppConnectTimeout, _time))
            {
                await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, _tunnel.AppPort), connect.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (TcpRelay.IsConnectionError(ex))
        {
            socket.Dispose();
            Log.AppUnreachable(_logger, _tunnel.Name, _tunnel.AppPort, ex.Message);
            var failed = new TcpConnectionMetrics(_metrics, _labels.TcpDestinationLabels(peer, mutualTls: peer is not null, ResponseFlags.UpstreamConnectionFailure));
            failed.Opened();
            failed.Closed();
            return;
        }

        metrics.Opened();
        var stream = new NetworkStream(socket, ownsSocket: true);
        try
        {
            var end = await TcpRelay.RunAsync(
                connection.Transport,
                stream,
                () =>
                {
                    socket.Shutdown(SocketShutdown.Send);
                    return ValueTask.CompletedTask;
                },
                _idleTimeout,
                _time,
                metrics.Received,
                metrics.Sent,
                CancellationToken.None).ConfigureAwait(false);
            Log.Closed(_logger, _tunnel.Name, remote, peer ?? "plaintext", end);
        }
        finally
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            metrics.Closed();
        }
    }
}
