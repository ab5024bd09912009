using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Inbound;
using Mesh.Xds.Diagnostics;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Tcp;

/// <summary>
/// An inbound tunnel's mesh port. Mesh.Client's connection middleware has already run the mTLS handshake the port's
/// PeerAuthentication asks for (and closed plaintext under STRICT); this handler applies the port's AuthorizationPolicy at
/// connection level (rules with HTTP fields read as Istio reads them on TCP), connects to the app's
/// <c>127.0.0.1:AppPort</c> and relays the decrypted bytes. Istio's TCP metrics with reporter <c>destination</c>.
/// </summary>
/// <remarks>
/// A policy change re-decides every open tunnel (<see cref="InboundPolicyDrain"/>, which the HTTP port's upgraded
/// requests share): one the new policy denies (or whose port lost its policy) is closed after
/// <see cref="MeshInboundConnectionMiddleware.PolicyChangeDrain"/>, as Envoy drains the connections of a filter chain an
/// RBAC change replaced (found in review, 2026-12-05).
/// Refused connections are logged once per peer address and kind per <see cref="RefusalLogInterval"/>, the next line
/// counting those in between: any peer that reaches the port (plaintext under PERMISSIVE) can open them in a loop, and a
/// line for each would fill log storage (found in review).
/// </remarks>
internal sealed partial class TcpInboundConnectionHandler : ConnectionHandler, IDisposable
{
    /// <summary>A peer address's refused connections of one kind are logged at most once per this interval.</summary>
    internal static readonly TimeSpan RefusalLogInterval = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan AppConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly TcpInboundTunnel _tunnel;
    private readonly TimeSpan _idleTimeout;
    private readonly InboundPolicyStore _policies;
    private readonly MeshMetrics _metrics;
    private readonly IstioRequestMetrics _labels;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly LogThrottle _refusals;
    private readonly InboundPolicyDrain _drain;

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
        _refusals = new LogThrottle(time, RefusalLogInterval);

        _drain = new InboundPolicyDrain(policies, time);
    }

    /// <summary>Gets the number of tunnels open through this handler (for tests).</summary>
    internal int OpenTunnels => _drain.Count;

    /// <summary>Ends the policy subscription (tests; in the sidecar the handler lives as long as its Kestrel endpoint).</summary>
    public void Dispose() => _drain.Dispose();

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
                    if (TakeRefusalLog(connection, "denied connections", out var since))
                    {
                        Log.Denied(_logger, _tunnel.Name, remote, peer ?? "plaintext", decision.Reason, since);
                    }

                    CountRefused(peer);
                    return;
                }

                break;
            case InboundPortState.NotReceived or InboundPortState.Removed:
                // Fail closed, as the HTTP ports answer 503: no policy, no bytes to the app.
                if (TakeRefusalLog(connection, "connections closed without a policy", out var noPolicySince))
                {
                    Log.NoPolicy(_logger, _tunnel.Name, remote, localPort, noPolicySince);
                }

                CountRefused(peer);
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
        var peerNamespace = identity?.PeerNamespace;
        var tracked = _drain.Track(
            localPort,
            policy => policy.AuthorizeConnection(peer, peerNamespace) is { IsAllowed: false } decision ? decision.Reason : null,
            reason => Log.Draining(_logger, _tunnel.Name, remote, peer ?? "plaintext", reason, MeshInboundConnectionMiddleware.PolicyChangeDrain),
            reason => connection.Abort(new ConnectionAbortedException($"The tunnel outlived the drain after its AuthorizationPolicy changed: {reason}.")));
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
            tracked.Dispose();
            await stream.DisposeAsync().ConfigureAwait(false);
            metrics.Closed();
        }
    }

    // Envoy counts every connection it accepted once opened and once closed, one its network RBAC filter closes too
    // (istio_stats registers its callbacks when the filter chain is built; RBAC sets no response flag): a denied port
    // shows its refused connections rather than nothing (review-telemetry F9). The labels are built per refusal only
    // when something listens, so a plaintext peer opening refused connections in a loop costs no allocation otherwise.
    private void CountRefused(string? peer)
    {
        if (!_metrics.TcpConnectionsOpened.Enabled && !_metrics.TcpConnectionsClosed.Enabled)
        {
            return;
        }

        var refused = new TcpConnectionMetrics(_metrics, _labels.TcpDestinationLabels(peer, mutualTls: peer is not null, ResponseFlags.None));
        refused.Opened();
        refused.Closed();
    }

    // Whether this refusal is logged (per peer address and kind); since: how the line counts the ones left out before it.
    private bool TakeRefusalLog(ConnectionContext connection, string kind, out string since)
    {
        var address = (connection.RemoteEndPoint as IPEndPoint)?.Address is { } ip
            ? (ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip).ToString()
            : "?";
        if (!_refusals.TryTake(address + "|" + kind, out var suppressed, out var shared))
        {
            since = string.Empty;
            return false;
        }

        // The shared entry of a full table counts the refusals of several addresses (and of both kinds): name none.
        since = suppressed == 0
            ? string.Empty
            : shared
                ? string.Create(CultureInfo.InvariantCulture, $" ({suppressed} more refused connections from several addresses since the last such line)")
                : string.Create(CultureInfo.InvariantCulture, $" ({suppressed} more {kind} from {address} since its last line)");
        return true;
    }
}
