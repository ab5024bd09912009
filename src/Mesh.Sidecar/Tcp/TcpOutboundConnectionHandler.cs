using System.Net;
using System.Net.Sockets;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Tcp;

/// <summary>
/// An outbound tunnel's listener (<c>127.0.0.1:LocalPort</c>, outside the mesh): each accepted connection is carried to an
/// endpoint of the tunnel's service port, picked by the cluster's balancer and outlier detection as for HTTP, over mesh
/// mTLS with secure naming when the cluster says so (no ALPN: the bytes are opaque). A failed connect counts against the
/// endpoint and the next endpoint is tried, up to <see cref="MaxConnectAttempts"/> (Envoy tcp_proxy's
/// <c>max_connect_attempts</c>). Istio's TCP metrics with reporter <c>source</c>.
/// </summary>
internal sealed partial class TcpOutboundConnectionHandler : ConnectionHandler
{
    public const int MaxConnectAttempts = 3;

    /// <summary>Istio's default <c>connectTimeout</c>, for a cluster that sets none.</summary>
    private static readonly TimeSpan DefaultConnectTimeout = TimeSpan.FromSeconds(10);

    private readonly TcpOutboundTunnel _tunnel;
    private readonly TimeSpan _idleTimeout;
    private readonly IMeshSnapshotSource _snapshots;
    private readonly UpstreamTlsConnector _tls;
    private readonly MeshMetrics _metrics;
    private readonly IstioRequestMetrics _labels;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    public TcpOutboundConnectionHandler(
        TcpOutboundTunnel tunnel,
        SidecarTcpOptions options,
        IMeshSnapshotSource snapshots,
        IWorkloadCertificateSource certificates,
        MeshMetrics metrics,
        IstioRequestMetrics labels,
        TimeProvider time,
        ILogger<TcpOutboundConnectionHandler> logger)
    {
        ArgumentNullException.ThrowIfNull(tunnel);
        ArgumentNullException.ThrowIfNull(options);
        _tunnel = tunnel;
        _idleTimeout = options.IdleTimeout;
        _snapshots = snapshots;
        _metrics = metrics;
        _labels = labels;
        _time = time;
        _logger = logger;
        _tls = new UpstreamTlsConnector(certificates, time, logger, metrics);
    }

    public override async Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var snapshot = _snapshots.Current;
        if (!snapshot.TryGetService(_tunnel.Service, _tunnel.Port, isDefaultPort: false, out var service))
        {
            Log.UnknownService(_logger, _tunnel.ToString(), snapshot.IsSynced ? "the mesh has no such service port" : "the sidecar has not synced with the control plane yet");
            return;
        }

        var route = service.Routes.FirstOrDefault(r => !r.Clusters.IsEmpty);
        if (route is null)
        {
            Log.UnknownService(_logger, _tunnel.ToString(), "the service port has no route to a cluster");
            return;
        }

        var cluster = route.PickCluster(Random.Shared.Next);
        // Not ConnectionClosed: Kestrel fires it when the client half-closes, which must not cut the tunnel.
        var upstream = await ConnectAsync(service, cluster, CancellationToken.None).ConfigureAwait(false);
        if (upstream.Stream is null)
        {
            var failed = new TcpConnectionMetrics(_metrics, _labels.TcpSourceLabels(service.Host, upstreamPrincipal: null, upstream.Flags));
            failed.Opened();
            failed.Closed();
            return;
        }

        var (stream, socket, endpoint, peer) = (upstream.Stream, upstream.Socket!, upstream.Endpoint!, upstream.Peer);
        var metrics = new TcpConnectionMetrics(_metrics, _labels.TcpSourceLabels(service.Host, peer, ResponseFlags.None));
        metrics.Opened();
        try
        {
            var end = await TcpRelay.RunAsync(connection.Transport, stream, () => ShutdownSendAsync(socket), _idleTimeout, _time, metrics.Received, metrics.Sent, CancellationToken.None).ConfigureAwait(false);
            Log.Closed(_logger, _tunnel.ToString(), endpoint.Authority, end);
        }
        finally
        {
            endpoint.OnRequestCompleted();
            await stream.DisposeAsync().ConfigureAwait(false);
            metrics.Closed();
        }
    }

    /// <summary>
    /// Passes the client's half-close on upstream as a TCP FIN, over mTLS too: the peer's SslStream reads it as the end of
    /// the stream, and our inbound tunnel serves the bytes before it. Not a TLS close_notify: SslStream on OpenSSL
    /// serializes SSL_read with SSL_write but not with SSL_shutdown, and the relay's other direction reads the upstream all
    /// along. A close_notify sent while a record is being decrypted fails ("shutdown while in init" as a TLS 1.3
    /// NewSessionTicket arrives: a tunnel lost in CI; "bad record mac") or crashes the process in libssl (an in-process repro
    /// of 300 half-closes segfaulted two runs in three; with the FIN, none in three).
    /// </summary>
    internal static ValueTask ShutdownSendAsync(Socket socket)
    {
        socket.Shutdown(SocketShutdown.Send);
        return ValueTask.CompletedTask;
    }

    private async Task<Upstream> ConnectAsync(MeshService service, MeshCluster cluster, CancellationToken cancellationToken)
    {
        var timeout = cluster.Limits.Pool?.ConnectTimeout ?? DefaultConnectTimeout;
        MeshEndpoint? avoid = null;
        var flags = ResponseFlags.NoHealthyUpstream;
        for (var attempt = 0; attempt < MaxConnectAttempts; attempt++)
        {
            var endpoint = cluster.PickEndpoint(_time.GetTimestamp(), _time.TimestampFrequency, avoid);
            if (endpoint is null || (attempt > 0 && ReferenceEquals(endpoint, avoid)))
            {
                break;
            }

            endpoint.OnRequestStarted();
            var socket = endpoint.IPAddress is { } ip ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) : new Socket(SocketType.Stream, ProtocolType.Tcp);
            Stream? stream = null;
            try
            {
                using var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                connect.CancelAfter(timeout);
                socket.NoDelay = true;
                await socket.ConnectAsync(endpoint.EndPoint, connect.Token).ConfigureAwait(false);
                stream = new NetworkStream(socket, ownsSocket: true);
                string? peer = null;
                if (cluster.Tls is { } tls)
                {
                    var (ssl, id) = await _tls.AuthenticateAsync(stream, service.Host, endpoint.Authority, service.Host, applicationProtocols: null, tls, connect.Token).ConfigureAwait(false);
                    stream = ssl;
                    peer = id.Value;
                }

                OutlierDetector.OnSuccess(endpoint);
                Log.Connected(_logger, _tunnel.ToString(), endpoint.Authority, peer ?? "plaintext");
                return new Upstream(stream, socket, endpoint, peer, ResponseFlags.None);
            }
            catch (Exception ex) when (TcpRelay.IsConnectionError(ex) && !cancellationToken.IsCancellationRequested)
            {
                if (stream is not null)
                {
                    await stream.DisposeAsync().ConfigureAwait(false);
                }

                socket.Dispose();
                endpoint.OnRequestCompleted();
                cluster.Outlier.OnError(endpoint, 503, _time.GetTimestamp());
                Log.ConnectFailed(_logger, _tunnel.ToString(), endpoint.Authority, attempt + 1, ex.Message);
                flags = ResponseFlags.UpstreamConnectionFailure;
                avoid = endpoint;
            }
            catch
            {
                if (stream is not null)
                {
                    await stream.DisposeAsync().ConfigureAwait(false);
                }

                socket.Dispose();
                endpoint.OnRequestCompleted();
                if (cancellationToken.IsCancellationRequested)
                {
                    return new Upstream(null, null, null, null, ResponseFlags.DownstreamConnectionTermination);
                }

                throw;
            }
        }

        if (flags == ResponseFlags.NoHealthyUpstream)
        {
            Log.NoEndpoint(_logger, _tunnel.ToString(), cluster.Name);
        }

        return new Upstream(null, null, null, null, flags);
    }

    private readonly record struct Upstream(Stream? Stream, Socket? Socket, MeshEndpoint? Endpoint, string? Peer, ResponseFlags Flags);
}
