using System.Collections.Concurrent;
using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Grpc;

/// <summary>
/// Gives the subchannel connections of an <c>xds:///service</c> gRPC channel the mesh's mTLS.
/// Grpc.Net.Client's balancer sets the ConnectCallback of the channel's <see cref="SocketsHttpHandler"/> (it must be
/// unset when the channel is built) to dial the picked subchannel address, and picks TLS only from the channel
/// credentials (https scheme, the handler's fixed SslOptions). So the channel stays on insecure credentials (http
/// scheme, h2 prior knowledge) and, before the first request, this handler wraps that callback: each new connection
/// runs the handshake that the endpoint's cluster asks for in the current snapshot, or none when the cluster has no
/// TLS context. When a snapshot makes a connection's peer unacceptable, that connection is closed.
/// </summary>
internal sealed partial class XdsConnectionHandler : DelegatingHandler
{
    private readonly SocketsHttpHandler _sockets;
    private readonly string _host;
    private readonly int _port;
    private readonly string _authority;
    private readonly IMeshSnapshotSource _source;
    private readonly MeshHostNames _names;
    private readonly UpstreamTlsConnector _connector;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly ConcurrentDictionary<Connection, byte> _connections = new();
    private readonly IDisposable _changeRegistration;
    private volatile bool _wrapped;

    public XdsConnectionHandler(
        Uri target,
        SocketsHttpHandler sockets,
        IMeshSnapshotSource source,
        MeshHostNames names,
        IWorkloadCertificateSource? certificates,
        TimeProvider time,
        ILogger logger,
        MeshClientMetrics? metrics = null)
        : base(sockets)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(logger);
        _sockets = sockets;
        (_host, _port) = XdsResolver.ParseTarget(target);
        _authority = Uri.UnescapeDataString(target.AbsolutePath.TrimStart('/'));
        _source = source;
        _names = names;
        _connector = new UpstreamTlsConnector(certificates, time, logger, metrics);
        _logger = logger;
        _changeRegistration = ChangeToken.OnChange(source.GetChangeToken, CloseUnacceptableConnections);
    }

    /// <summary>Wraps <paramref name="sockets"/> for a channel to <paramref name="target"/> with the services of AddServiceMesh().</summary>
    public static XdsConnectionHandler Create(IServiceProvider services, Uri target, SocketsHttpHandler sockets)
    {
        ArgumentNullException.ThrowIfNull(services);
        var source = services.GetService<IMeshSnapshotSource>()
            ?? throw new InvalidOperationException("The service mesh is not registered: call builder.AddServiceMesh() or services.AddServiceMesh() before creating mesh gRPC channels.");
        return new XdsConnectionHandler(
            target,
            sockets,
            source,
            services.GetRequiredService<MeshHostNames>(),
            services.GetService<IWorkloadCertificateSource>(),
            services.GetService<TimeProvider>() ?? TimeProvider.System,
            (services.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance).CreateLogger<XdsConnectionHandler>(),
            services.GetService<MeshClientMetrics>());
    }

    /// <summary>The SocketsHttpHandler of a mesh gRPC channel when the application gives none.</summary>
    public static SocketsHttpHandler CreateSocketsHandler() => new()
    {
        EnableMultipleHttp2Connections = true,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        UseProxy = false,
        UseCookies = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
    };

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        EnsureConnectCallbackWrapped();
        SetAuthority(request);
        return base.SendAsync(request, cancellationToken);
    }

    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        EnsureConnectCallbackWrapped();
        SetAuthority(request);
        return base.Send(request, cancellationToken);
    }

    // The balancer has rewritten the URI to the picked subchannel's IP:port; like gRPC's xds resolver, send the
    // target's name as :authority, so servers (and AuthorizationPolicy `hosts`) see the service, not an address.
    private void SetAuthority(HttpRequestMessage request)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Headers.Host is null && _authority.Length > 0)
        {
            request.Headers.Host = _authority;
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _changeRegistration.Dispose();
        }

        base.Dispose(disposing);
    }

    private void EnsureConnectCallbackWrapped()
    {
        if (_wrapped)
        {
            return;
        }

        lock (_lock)
        {
            if (_wrapped)
            {
                return;
            }

            // Only the channel's balancer sets the callback, when the channel is built; every request to the
            // SocketsHttpHandler passes here first, so it has not started yet and still accepts a new callback.
            var dial = _sockets.ConnectCallback ?? throw new InvalidOperationException(
                $"The gRPC channel for xds:///{_host} did not set up client-side load balancing on its SocketsHttpHandler, so its connections cannot get mesh mTLS. Create it with CreateMeshGrpcChannel, or with AddGrpcClient and an xds:/// address, and leave ConnectCallback unset.");
            _sockets.ConnectCallback = (context, cancellationToken) => ConnectAsync(dial, context, cancellationToken);
            _wrapped = true;
        }
    }

    private async ValueTask<Stream> ConnectAsync(
        Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> dial,
        SocketsHttpConnectionContext context,
        CancellationToken cancellationToken)
    {
        var endPoint = context.DnsEndPoint;
        var authority = $"{endPoint.Host}:{endPoint.Port}";

        // Refusals surface as IOException so Grpc.Net.Client reports UNAVAILABLE (as for any failed connection)
        // rather than INTERNAL; the message names the service, the endpoint and both identities.
        // Decided per connection from the current snapshot, so changed expected SANs apply to the next handshake.
        var cluster = FindCluster(_source.Current, endPoint.Host, endPoint.Port)
            ?? throw new IOException($"Cannot connect to {authority} for mesh service '{_host}': the current mesh snapshot no longer lists that endpoint for the service, so whether it needs mTLS is unknown. The channel stops using it once its balancer applies the update.");
        if (cluster.Tls is not { } tls)
        {
            var plain = await dial(context, cancellationToken).ConfigureAwait(false);
            Track(new Connection(endPoint.Host, endPoint.Port, plain, null));
            return plain;
        }

        try
        {
            _connector.ThrowIfNoCertificate(_host);
            var stream = await dial(context, cancellationToken).ConfigureAwait(false);
            var (ssl, peer) = await _connector.AuthenticateAsync(stream, _host, authority, _host, http2: true, tls, cancellationToken).ConfigureAwait(false);
            Track(new Connection(endPoint.Host, endPoint.Port, stream, peer));
            return ssl;
        }
        catch (MeshTlsException ex)
        {
            // gRPC's status detail lists every inner message, so this one stays short; the inner one says why.
            throw new IOException($"The service mesh refused the connection to {authority}.", ex);
        }
    }

    /// <summary>
    /// Gets the cluster that holds the endpoint among the clusters of the target service's first route (the ones the
    /// resolver publishes). Should two hold it, one with mTLS wins: an endpoint is never dialed in plaintext while the
    /// mesh asks for mTLS to it.
    /// </summary>
    private MeshCluster? FindCluster(MeshSnapshot snapshot, string address, int port)
    {
        if (!XdsResolver.TryFindService(snapshot, _names, _host, _port, out var service) || service.Routes.Length == 0)
        {
            return null;
        }

        MeshCluster? found = null;
        foreach (var weighted in service.Routes[0].Clusters)
        {
            foreach (var endpoint in weighted.Cluster.Endpoints)
            {
                if (endpoint.Port == port && string.Equals(endpoint.Address, address, StringComparison.OrdinalIgnoreCase))
                {
                    if (weighted.Cluster.Tls is not null)
                    {
                        return weighted.Cluster;
                    }

                    found ??= weighted.Cluster;
                }
            }
        }

        return found;
    }

    private void Track(Connection connection)
    {
        RemoveClosed();
        _connections.TryAdd(connection, 0);
    }

    private void RemoveClosed()
    {
        foreach (var connection in _connections.Keys)
        {
            // SocketsHttpHandler disposes a connection's stream when it closes it; a disposed socket stream cannot read.
            if (!connection.Transport.CanRead)
            {
                _connections.TryRemove(connection, out _);
            }
        }
    }

    /// <summary>Closes open connections whose peer the current snapshot no longer accepts; the balancer reconnects.</summary>
    private void CloseUnacceptableConnections()
    {
        RemoveClosed();
        var snapshot = _source.Current;
        foreach (var connection in _connections.Keys)
        {
            // An endpoint that left the service keeps its connection: the balancer drains it with the subchannel.
            if (FindCluster(snapshot, connection.Address, connection.Port)?.Tls is not { } tls)
            {
                continue;
            }

            var reason = connection.Peer is not { } peer ? "the cluster now requires mTLS and the connection is plaintext"
                : !tls.Matches(peer.Value) ? $"the peer {peer} no longer matches the expected identity {tls.Describe()}"
                : null;
            if (reason is not null && _connections.TryRemove(connection, out _))
            {
                Log.ConnectionClosed(_logger, _host, $"{connection.Address}:{connection.Port}", reason);

                // Closing the socket fails the connection's pending reads; SocketsHttpHandler then drops it.
                connection.Transport.Dispose();
            }
        }
    }

    /// <summary>An open connection: the dialed transport stream, and the peer's SPIFFE ID when it runs mTLS.</summary>
    private sealed class Connection(string address, int port, Stream transport, SpiffeId? peer)
    {
        public string Address { get; } = address;

        public int Port { get; } = port;

        public Stream Transport { get; } = transport;

        public SpiffeId? Peer { get; } = peer;
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Closed the gRPC connection to {Service} at {EndPoint}: {Reason}.")]
        public static partial void ConnectionClosed(ILogger logger, string service, string endPoint, string reason);
    }
}
