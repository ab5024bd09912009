using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Xds.Diagnostics;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace Mesh.Sidecar.Tcp;

/// <summary>
/// An inbound tunnel's mesh port. Mesh.Client's connection middleware has already run the mTLS handshake the port's
/// PeerAuthentication asks for (and closed plaintext under STRICT); this handler applies the port's AuthorizationPolicy at
/// connection level (rules with HTTP fields read as Istio reads them on TCP), connects to the app's
/// <c>127.0.0.1:AppPort</c> and relays the decrypted bytes. Istio's TCP metrics with reporter <c>destination</c>.
/// </summary>
/// <remarks>
/// A policy change re-decides every open tunnel: one the new policy denies (or whose port lost its policy) is closed after
/// <see cref="MeshInboundConnectionMiddleware.PolicyChangeDrain"/>, as Envoy drains the connections of a filter chain an
/// RBAC change replaced. Without it, a DENY or a removed ALLOW stopped new connections only, and an open tunnel kept
/// carrying bytes until its idle timeout, or for ever while it was busy (found in review, 2026-12-05).
/// Refused connections are logged once per peer address and kind per <see cref="RefusalLogInterval"/>, the next line
/// counting those in between: any peer that reaches the port (plaintext under PERMISSIVE) can open them in a loop, and a
/// line for each would fill log storage (found in review).
/// </remarks>
internal sealed partial class TcpInboundConnectionHandler : ConnectionHandler
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
    private readonly ConcurrentDictionary<ConnectionContext, OpenTunnel> _open = new();

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

        // The handler lives as long as the sidecar's Kestrel endpoint: the subscription with it.
        ChangeToken.OnChange(policies.GetChangeToken, CloseDeniedTunnels);
    }

    /// <summary>Gets the number of tunnels open through this handler (for tests).</summary>
    internal int OpenTunnels => _open.Count;

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
        var open = new OpenTunnel(peer, identity?.PeerNamespace, localPort);
        _open[connection] = open;

        // A change applied between the decision above and this registration found no tunnel to close: decide once more.
        CloseIfDenied(connection, open);
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
            _open.TryRemove(connection, out _);
            open.Dispose();
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
        if (!_refusals.TryTake(address + "|" + kind, out var suppressed))
        {
            since = string.Empty;
            return false;
        }

        since = suppressed == 0
            ? string.Empty
            : string.Create(CultureInfo.InvariantCulture, $" ({suppressed} more {kind} from {address} since its last line)");
        return true;
    }

    /// <summary>
    /// On a policy change: every open tunnel the port's new policy denies, or whose port has no policy any more, is aborted
    /// after the drain. Runs on the thread that applied the change (the xDS client), so it never throws.
    /// </summary>
    private void CloseDeniedTunnels()
    {
        foreach (var (connection, open) in _open)
        {
            CloseIfDenied(connection, open);
        }
    }

    private void CloseIfDenied(ConnectionContext connection, OpenTunnel open)
    {
        try
        {
            var refusal = _policies.Lookup(open.Port, out var policy) switch
            {
                InboundPortState.Policy => policy!.AuthorizeConnection(open.Peer, open.PeerNamespace) is { IsAllowed: false } decision ? decision.Reason : null,
                InboundPortState.NotReceived or InboundPortState.Removed => "the port's inbound policy was removed",
                _ => null,
            };
            if (refusal is not null && open.BeginClose(_time, MeshInboundConnectionMiddleware.PolicyChangeDrain, () => connection.Abort(new ConnectionAbortedException(
                $"The tunnel outlived the drain after its AuthorizationPolicy changed: {refusal}."))))
            {
                Log.Draining(_logger, _tunnel.Name, connection.RemoteEndPoint?.ToString() ?? "?", open.Peer ?? "plaintext", refusal, MeshInboundConnectionMiddleware.PolicyChangeDrain);
            }
        }
        catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
        {
            // The tunnel ended while it was being closed.
        }
    }

    /// <summary>An open tunnel: who it was authorized for, and the drain timer once a policy change denied it.</summary>
    private sealed class OpenTunnel(string? peer, string? peerNamespace, int port) : IDisposable
    {
        private readonly Lock _gate = new();
        private ITimer? _drain;
        private bool _closing;
        private bool _ended;

        public string? Peer => peer;

        public string? PeerNamespace => peerNamespace;

        public int Port => port;

        /// <summary>Arms the abort once; false when it was already armed or the tunnel has ended (its timer would outlive it).</summary>
        public bool BeginClose(TimeProvider time, TimeSpan drain, Action abort)
        {
            lock (_gate)
            {
                if (_closing || _ended)
                {
                    return false;
                }

                _closing = true;
                _drain = time.CreateTimer(static state => AbortQuietly((Action)state!), abort, drain, Timeout.InfiniteTimeSpan);
                return true;
            }
        }

        public void Dispose()
        {
            lock (_gate)
            {
                _ended = true;
                _drain?.Dispose();
            }
        }

        // On a timer thread: an exception here would end the process, and a connection that is already gone needs nothing.
        private static void AbortQuietly(Action abort)
        {
            try
            {
                abort();
            }
            catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
            {
            }
        }
    }
}
