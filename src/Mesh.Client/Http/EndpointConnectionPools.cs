using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Http;

/// <summary>
/// One <see cref="SocketsHttpHandler"/> per endpoint (keyed by <see cref="MeshEndpoint.Authority"/>), shared by every
/// client. Requests keep their logical URI; the handler's ConnectCallback dials the endpoint. Pools of endpoints that
/// left the snapshot are disposed once they have been absent for <see cref="DrainTime"/>.
/// For clusters with mTLS the ConnectCallback also performs the TLS handshake (current SVID, current bundle, secure
/// naming against the cluster's expected SANs) and hands SocketsHttpHandler the SslStream, so the request URI stays
/// <c>http://service/…</c>; the pool key includes the expected SANs, so a changed cluster gets fresh connections.
/// </summary>
internal sealed partial class EndpointConnectionPools : IDisposable
{
    /// <summary>How long a pool of an endpoint that left the snapshot stays usable for in-flight and racing requests.</summary>
    public static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan ConnectionLifetime = TimeSpan.FromMinutes(2);

    // Keyed by (authority, service, TLS settings key): strings the snapshot already holds, so a lookup allocates nothing.
    private readonly ConcurrentDictionary<PoolKey, Pool> _pools = new();
    private readonly IMeshSnapshotSource _source;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly IDisposable _changeRegistration;
    private readonly ITimer _sweepTimer;
    private readonly Lock _sweepLock = new();
    private bool _disposed;

    private readonly UpstreamTlsConnector _connector;

    public EndpointConnectionPools(IMeshSnapshotSource source, TimeProvider time, ILogger<EndpointConnectionPools> logger, IWorkloadCertificateSource? certificates = null, Telemetry.MeshMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _connector = new UpstreamTlsConnector(certificates, time, logger, metrics);
        _source = source;
        _time = time;
        _logger = logger;
        _changeRegistration = ChangeToken.OnChange(source.GetChangeToken, Sweep);
        _sweepTimer = time.CreateTimer(static state => ((EndpointConnectionPools)state!).Sweep(), this, DrainTime, DrainTime);
    }

    /// <summary>Gets the number of live pools (for tests and diagnostics).</summary>
    public int Count => _pools.Count;

    /// <summary>Gets the invoker that sends requests to <paramref name="endpoint"/>, creating its pool on first use.</summary>
    public HttpMessageInvoker Get(MeshEndpoint endpoint)
    {
        var key = new PoolKey(endpoint.Authority, null, null, null);
        return _pools.TryGetValue(key, out var pool) ? pool.Invoker : GetOrCreate(endpoint, key, null);
    }

    /// <summary>Gets the invoker for <paramref name="endpoint"/> of <paramref name="cluster"/>, with mTLS when the cluster asks for it.</summary>
    public HttpMessageInvoker Get(MeshEndpoint endpoint, MeshCluster cluster)
    {
        if (cluster.Tls is null && cluster.Limits.Pool is null)
        {
            return Get(endpoint);
        }

        var key = KeyOf(endpoint, cluster);
        return _pools.TryGetValue(key, out var pool) ? pool.Invoker : GetOrCreate(endpoint, key, cluster);
    }

    /// <summary>
    /// Gets the SPIFFE ID the last mTLS handshake of <paramref name="endpoint"/>'s pool in <paramref name="cluster"/>
    /// verified (secure naming held for it), or null: a plaintext cluster, or no connection made yet. For the access log.
    /// </summary>
    public string? VerifiedPeer(MeshEndpoint endpoint, MeshCluster cluster) =>
        cluster.Tls is not null && _pools.TryGetValue(KeyOf(endpoint, cluster), out var pool) ? pool.Peer.Value : null;

    private static PoolKey KeyOf(MeshEndpoint endpoint, MeshCluster cluster) =>
        cluster.Tls is { } tls
            ? new PoolKey(endpoint.Authority, cluster.ServiceHost, tls.Key, cluster.Limits.Pool)
            : new PoolKey(endpoint.Authority, null, null, cluster.Limits.Pool);

    public void Dispose()
    {
        lock (_sweepLock)
        {
            _disposed = true;
        }

        _changeRegistration.Dispose();
        _sweepTimer.Dispose();
        foreach (var pool in _pools.Values)
        {
            pool.Invoker.Dispose();
        }

        _pools.Clear();
    }

    /// <summary>Marks pools of endpoints absent from the snapshot and disposes those absent longer than <see cref="DrainTime"/>.</summary>
    internal void Sweep()
    {
        lock (_sweepLock)
        {
            if (_disposed || _pools.IsEmpty)
            {
                return;
            }

            var live = new HashSet<PoolKey>();
            foreach (var cluster in _source.Current.Clusters.Values)
            {
                foreach (var endpoint in cluster.Endpoints)
                {
                    live.Add(KeyOf(endpoint, cluster));
                }
            }

            var now = _time.GetTimestamp();
            foreach (var (key, pool) in _pools)
            {
                if (live.Contains(key))
                {
                    pool.AbsentSince = 0;
                }
                else if (pool.AbsentSince == 0)
                {
                    pool.AbsentSince = now;
                }
                else if (_time.GetElapsedTime(pool.AbsentSince, now) >= DrainTime && _pools.TryRemove(key, out _))
                {
                    Log.PoolDisposed(_logger, key.Authority);
                    pool.Invoker.Dispose();
                }
            }
        }
    }

    private HttpMessageInvoker GetOrCreate(MeshEndpoint endpoint, PoolKey key, MeshCluster? cluster)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var peer = new VerifiedPeerBox();
        var handler = cluster?.Tls is { } tls ? CreateTlsHandler(endpoint.EndPoint, cluster.ServiceHost, tls, peer) : CreateHandler(endpoint.EndPoint);
        if (key.Settings is { } settings)
        {
            Apply(handler, settings);
        }

        var created = new Pool(handler, peer);
        var pool = _pools.GetOrAdd(key, created);
        if (!ReferenceEquals(pool, created))
        {
            created.Invoker.Dispose();
        }

        return pool.Invoker;
    }

    private static SocketsHttpHandler CreateHandler(EndPoint endPoint) => new()
    {
        PooledConnectionLifetime = ConnectionLifetime,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
        ConnectTimeout = ConnectTimeout,
        EnableMultipleHttp2Connections = true,
        AutomaticDecompression = DecompressionMethods.None,
        UseProxy = false,
        UseCookies = false,
        AllowAutoRedirect = false,

        // Dial this endpoint whatever the request's host is: the URI and Host header stay the logical service name.
        ConnectCallback = (_, cancellationToken) => ConnectAsync(endPoint, cancellationToken),
    };

    // The cluster's connection settings (DestinationRule connectionPool.tcp / .http) over the client's defaults.
    private static void Apply(SocketsHttpHandler handler, PoolSettings settings)
    {
        handler.ConnectTimeout = settings.ConnectTimeout ?? handler.ConnectTimeout;
        handler.PooledConnectionIdleTimeout = settings.IdleTimeout ?? handler.PooledConnectionIdleTimeout;
        handler.PooledConnectionLifetime = settings.MaxConnectionDuration ?? handler.PooledConnectionLifetime;
        if (settings.MaxConnections is { } max)
        {
            // Requests beyond the connections wait in the handler's queue, which max_requests bounds (rejected at once above it).
            handler.MaxConnectionsPerServer = max;
            handler.EnableMultipleHttp2Connections = max > 1;
        }
    }

    private SocketsHttpHandler CreateTlsHandler(EndPoint endPoint, string service, UpstreamTlsSettings tls, VerifiedPeerBox peer)
    {
        var handler = CreateHandler(endPoint);
        handler.ConnectCallback = (context, cancellationToken) => ConnectTlsAsync(endPoint, service, tls, peer, context, cancellationToken);
        return handler;
    }

    private async ValueTask<Stream> ConnectTlsAsync(EndPoint endPoint, string service, UpstreamTlsSettings tls, VerifiedPeerBox peer, SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        _connector.ThrowIfNoCertificate(service);
        var stream = await ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
        var request = context.InitialRequestMessage;

        // SocketsHttpHandler speaks h2 on an http:// URI only with prior knowledge (version policy not "or lower").
        var http2 = request.Version.Major >= 2 && request.VersionPolicy != HttpVersionPolicy.RequestVersionOrLower;
        var (ssl, verified) = await _connector.AuthenticateAsync(stream, service, endPoint.ToString() ?? string.Empty, context.DnsEndPoint.Host, http2, tls, cancellationToken).ConfigureAwait(false);
        peer.Value = verified.Value;
        return ssl;
    }

    private static async ValueTask<Stream> ConnectAsync(EndPoint endPoint, CancellationToken cancellationToken)
    {
        var socket = endPoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.NoDelay = true;
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private readonly record struct PoolKey(string Authority, string? Service, string? Tls, PoolSettings? Settings);

    private sealed class Pool(SocketsHttpHandler handler, VerifiedPeerBox peer)
    {
        public HttpMessageInvoker Invoker { get; } = new(handler, disposeHandler: true);

        public VerifiedPeerBox Peer { get; } = peer;

        /// <summary>Gets or sets the timestamp the endpoint was first seen missing from the snapshot; 0 while present.</summary>
        public long AbsentSince { get; set; }
    }

    /// <summary>The SPIFFE ID a pool's last handshake verified: all its connections go to one endpoint, under one secure-naming rule.</summary>
    private sealed class VerifiedPeerBox
    {
        private string? _value;

        public string? Value
        {
            get => Volatile.Read(ref _value);
            set => Volatile.Write(ref _value, value);
        }
    }
}
