using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Mesh.Client.Discovery;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Http;

/// <summary>
/// One <see cref="SocketsHttpHandler"/> per endpoint (keyed by <see cref="MeshEndpoint.Authority"/>), shared by every
/// client. Requests keep their logical URI; the handler's ConnectCallback dials the endpoint. Pools of endpoints that
/// left the snapshot are disposed once they have been absent for <see cref="DrainTime"/>.
/// </summary>
internal sealed partial class EndpointConnectionPools : IDisposable
{
    /// <summary>How long a pool of an endpoint that left the snapshot stays usable for in-flight and racing requests.</summary>
    public static readonly TimeSpan DrainTime = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan ConnectionLifetime = TimeSpan.FromMinutes(2);

    private readonly ConcurrentDictionary<string, Pool> _pools = new(StringComparer.Ordinal);
    private readonly IMeshSnapshotSource _source;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly IDisposable _changeRegistration;
    private readonly ITimer _sweepTimer;
    private readonly Lock _sweepLock = new();
    private bool _disposed;

    public EndpointConnectionPools(IMeshSnapshotSource source, TimeProvider time, ILogger<EndpointConnectionPools> logger)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
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
        return _pools.TryGetValue(endpoint.Authority, out var pool) ? pool.Invoker : GetOrCreate(endpoint);
    }

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

            var live = new HashSet<string>(StringComparer.Ordinal);
            foreach (var cluster in _source.Current.Clusters.Values)
            {
                foreach (var endpoint in cluster.Endpoints)
                {
                    live.Add(endpoint.Authority);
                }
            }

            var now = _time.GetTimestamp();
            foreach (var (authority, pool) in _pools)
            {
                if (live.Contains(authority))
                {
                    pool.AbsentSince = 0;
                }
                else if (pool.AbsentSince == 0)
                {
                    pool.AbsentSince = now;
                }
                else if (_time.GetElapsedTime(pool.AbsentSince, now) >= DrainTime && _pools.TryRemove(authority, out _))
                {
                    Log.PoolDisposed(_logger, authority);
                    pool.Invoker.Dispose();
                }
            }
        }
    }

    private HttpMessageInvoker GetOrCreate(MeshEndpoint endpoint)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var created = new Pool(CreateHandler(endpoint.EndPoint));
        var pool = _pools.GetOrAdd(endpoint.Authority, created);
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

    private sealed class Pool(SocketsHttpHandler handler)
    {
        public HttpMessageInvoker Invoker { get; } = new(handler, disposeHandler: true);

        /// <summary>Gets or sets the timestamp the endpoint was first seen missing from the snapshot; 0 while present.</summary>
        public long AbsentSince { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Disposed the connection pool of endpoint {Authority}: it left the mesh snapshot.")]
        public static partial void PoolDisposed(ILogger logger, string authority);
    }
}
