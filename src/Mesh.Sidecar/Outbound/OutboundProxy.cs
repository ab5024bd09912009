using System.Net;
using System.Net.Sockets;
using Mesh.Client;
using Mesh.Client.Http;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Outbound;

/// <summary>
/// The app's way into the mesh on 127.0.0.1:&lt;OutboundPort&gt;: an HTTP proxy (absolute-form <c>GET http://orders/x</c>,
/// so <c>HTTP_PROXY</c> works) and a plain listener routing by <c>Host</c>. Every request goes through one handler of
/// Mesh.Client's outbound path (routing, resilience, mTLS, source metrics), so the app never sees TLS.
/// </summary>
/// <remarks>
/// A request for a host outside the mesh is in Istio's source metrics too, as Istio reports it (review-telemetry F8):
/// refused (502) as <c>BlackHoleCluster</c>, passed through as <c>PassthroughCluster</c> (<see cref="PassthroughMetricsHandler"/>).
/// </remarks>
internal sealed partial class OutboundProxy : IDisposable
{
    private const string PlainText = "text/plain; charset=utf-8";

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _mesh;
    private readonly MeshRouter _router;
    private readonly bool _passthrough;
    private readonly ILogger _logger;
    private readonly SidecarListeners _listeners;
    private readonly IstioRequestMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly OutboundTransformer _transformer = new();

    internal static readonly ForwarderRequestConfig Http1 = new()
    {
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
        ActivityTimeout = SidecarTimeouts.StreamIdleTimeout,
    };

    internal static readonly ForwarderRequestConfig Http2 = new()
    {
        Version = HttpVersion.Version20,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = SidecarTimeouts.StreamIdleTimeout,
    };

    public OutboundProxy(
        IHttpForwarder forwarder,
        IMeshOutboundHandlerFactory factory,
        MeshRouter router,
        SidecarOptions options,
        SidecarListeners listeners,
        IstioRequestMetrics metrics,
        TimeProvider time,
        ILogger<OutboundProxy> logger)
    {
        ArgumentNullException.ThrowIfNull(factory);
        ArgumentNullException.ThrowIfNull(options);
        _forwarder = forwarder;
        _router = router;
        _logger = logger;
        _listeners = listeners;
        _metrics = metrics;
        _time = time;
        _passthrough = options.PassthroughNonMeshHosts;
        _mesh = new HttpMessageInvoker(factory.CreateHandler(new MeshOutboundHandlerOptions
        {
            NonMeshHandler = options.PassthroughNonMeshHosts
                ? new PassthroughMetricsHandler(metrics, time)
                {
                    InnerHandler = new SocketsHttpHandler
                    {
                        UseProxy = false,
                        AllowAutoRedirect = false,
                        AutomaticDecompression = DecompressionMethods.None,
                        UseCookies = false,
                        ActivityHeadersPropagator = null,
                        ConnectCallback = ConnectPassthroughAsync,
                    },
                }
                : null,
        }));
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (HttpMethods.IsConnect(request.Method))
        {
            context.Response.Headers.Allow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
            await ReplyAsync(context, StatusCodes.Status405MethodNotAllowed,
                "CONNECT is not supported: the sidecar's outbound port proxies plaintext HTTP only. Call http://<service>/… (the mesh adds mTLS); for https:// to hosts outside the mesh, do not send it through this proxy (NO_PROXY).").ConfigureAwait(false);
            return;
        }

        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? string.Empty;
        if (target.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            await ReplyAsync(context, StatusCodes.Status400BadRequest,
                $"'{target}' is an https:// URL: the sidecar's outbound port proxies plaintext HTTP only. Call http:// URLs (the mesh adds mTLS).").ConfigureAwait(false);
            return;
        }

        if (!request.Host.HasValue)
        {
            await ReplyAsync(context, StatusCodes.Status400BadRequest, "The request has no Host: send an absolute URL (http://orders/…) through the proxy or a Host header naming the service.").ConfigureAwait(false);
            return;
        }

        if (IsSelf(request.Host, OwnPorts(context)))
        {
            await ReplyAsync(context, StatusCodes.Status400BadRequest,
                $"The request is for one of the sidecar's own listeners ({request.Host.Value}), which would loop back into the sidecar: send it to a service (http://orders/…) through the proxy, or with the service's name as Host.").ConfigureAwait(false);
            return;
        }

        var config = HttpProtocol.IsHttp2(request.Protocol) ? Http2 : Http1;
        var start = _time.GetTimestamp();
        var error = await _forwarder.SendAsync(context, "http://" + request.Host.Value, _mesh, config, _transformer).ConfigureAwait(false);
        if (error == ForwarderError.None)
        {
            return;
        }

        var exception = context.GetForwarderErrorFeature()?.Exception;
        Log.ForwardFailed(_logger, request.Host.Value, error, exception?.Message);
        if (context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        var (code, message) = Classify(error, exception, request.Host.Host, context.RequestAborted);
        context.Response.Clear();
        await ReplyAsync(context, code, message).ConfigureAwait(false);
        if (IsBlackHole(exception, request.Host.Host) && _metrics.Enabled)
        {
            // As Istio's block_all route: a direct 502, no flag.
            _metrics.RecordNonMesh(request.Host.Host, passedThrough: false, code, ResponseFlags.None, _time.GetElapsedTime(start).TotalMilliseconds, request.ContentLength ?? 0, System.Text.Encoding.UTF8.GetByteCount(message) + 1);
        }
    }

    /// <summary>The status and plain-text body for a request the mesh could not send.</summary>
    internal (int Code, string Body) Classify(ForwarderError error, Exception? exception, string host, CancellationToken callerToken)
    {
        if (error == ForwarderError.RequestTimedOut)
        {
            return (StatusCodes.Status504GatewayTimeout, $"The request to '{host}' timed out in the sidecar (response flags UT).");
        }

        if (exception is null)
        {
            return (StatusCodes.Status502BadGateway, $"The request to '{host}' failed: {error}.");
        }

        if (FindLoop(exception) is { } loop)
        {
            return (StatusCodes.Status508LoopDetected, loop.Message);
        }

        if (IsBlackHole(exception, host))
        {
            return (StatusCodes.Status502BadGateway,
                $"'{host}' is not a mesh service, and the sidecar sends only to mesh services (set Sidecar:PassthroughNonMeshHosts=true to let other hosts through): {exception.Message}");
        }

        var (code, flags) = OutboundOutcome.Classify(exception, callerToken);
        return (code == 0 ? StatusCodes.Status502BadGateway : code, $"The request to '{host}' failed (response flags {flags.ToLabel()}): {exception.Message}");
    }

    /// <summary>Whether the mesh refused the request because its host is no mesh service and nothing passes through (REGISTRY_ONLY).</summary>
    private bool IsBlackHole(Exception? exception, string host)
    {
        var snapshot = _router.Snapshot;
        return !_passthrough && exception?.GetType() == typeof(ServiceMeshException) && snapshot.IsSynced && !snapshot.IsMeshHost(host);
    }

    /// <summary>
    /// Whether <paramref name="host"/> is this machine (a loopback or any address, or localhost in any spelling) on one of
    /// <paramref name="ownPorts"/>: forwarding it would loop back into the sidecar (through passthrough, or a mesh
    /// endpoint registered at a loopback address).
    /// </summary>
    internal static bool IsSelf(HostString host, IReadOnlyCollection<int> ownPorts)
    {
        ArgumentNullException.ThrowIfNull(ownPorts);
        return ownPorts.Contains(host.Port ?? 80) && IsLocalHost(host.Host);
    }

    /// <summary>localhost (any case, trailing dot, RFC 6761 subdomains) or an IPv4/IPv6 loopback or any address, IPv4-mapped too.</summary>
    internal static bool IsLocalHost(string host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var name = host.EndsWith('.') ? host[..^1] : host;
        if (name.Equals("localhost", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        if (name.StartsWith('[') && name.EndsWith(']'))
        {
            name = name[1..^1];
        }

        return IPAddress.TryParse(name, out var address) && IsLocalAddress(address);
    }

    /// <summary>An IPv4/IPv6 loopback or any address, IPv4-mapped too.</summary>
    internal static bool IsLocalAddress(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        return IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);
    }

    /// <summary>
    /// Connects a passthrough request to the addresses its host resolves to, unless one of them is this machine on one of the
    /// sidecar's own ports: a name such as the machine's hostname or <c>localhost.localdomain</c>, which <see cref="IsSelf"/>
    /// cannot know by its spelling, would bring the request back into the outbound port, each hop opening a new
    /// connection until file descriptors ran out (found in review). The loop is refused where it would start, by address.
    /// </summary>
    internal async ValueTask<Stream> ConnectPassthroughAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(context);
        var (host, port) = (context.DnsEndPoint.Host, context.DnsEndPoint.Port);
        var addresses = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        if (Array.Find(addresses, IsLocalAddress) is { } local && OwnPorts().Contains(port))
        {
            throw new SidecarLoopException(
                $"'{host}:{port}' resolves to this machine ({local}) on one of the sidecar's own ports: passing it through would loop back into the sidecar. Call a mesh service by its name (http://orders/…), or the host at an address that is not this machine.");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(addresses, port, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private static SidecarLoopException? FindLoop(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is SidecarLoopException loop)
            {
                return loop;
            }
        }

        return null;
    }

    // The ports Kestrel bound for the sidecar's listeners (ephemeral ones included), and the one this request came in on.
    private int[] OwnPorts(HttpContext context) =>
        OwnPorts().Append(context.Connection.LocalPort).Where(port => port > 0).ToArray();

    private IEnumerable<int> OwnPorts() =>
        new[] { _listeners.Inbound, _listeners.Outbound, _listeners.Admin }
            .Select(listen => listen?.IPEndPoint?.Port ?? 0)
            .Where(port => port > 0);

    private static Task ReplyAsync(HttpContext context, int code, string body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = PlainText;
        return context.Response.WriteAsync(body + "\n", context.RequestAborted);
    }

    public void Dispose() => _mesh.Dispose();

    /// <summary>A passthrough connection refused because it would reach one of the sidecar's own listeners.</summary>
    private sealed class SidecarLoopException(string message) : IOException(message);

    /// <summary>Copies the request as YARP does, without the proxy's own headers nor those the caller's Connection names.</summary>
    private sealed class OutboundTransformer : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
            ConnectionHeader.RemoveNominatedHeaders(httpContext.Request.Headers, proxyRequest);
            proxyRequest.Headers.Remove("Proxy-Connection");
            proxyRequest.Headers.Remove("Proxy-Authorization");
        }
    }
}
