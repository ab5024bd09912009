using System.Globalization;
using System.Net;
using System.Runtime.CompilerServices;
using Mesh.Client.Discovery;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The access log (<c>Mesh:Telemetry:AccessLog</c>): one Information entry per request under the category
/// <see cref="MeshTelemetry.AccessLogCategory"/>, written where the request metrics are recorded — the outermost outbound
/// handler (reporter <c>source</c>) and the inbound middleware (reporter <c>destination</c>).
/// </summary>
/// <remarks>
/// The fields are those of Istio's default access log: the operators of <c>EnvoyTextLogFormat</c> under the keys of
/// <c>EnvoyJSONLogFormatIstio</c> (istio/istio pilot/pkg/model/telemetry_logging.go), plus the mesh's own: <c>direction</c>,
/// <c>reporter</c>, <c>source_principal</c>/<c>destination_principal</c> (the SPIFFE IDs), <c>attempts</c> and
/// <c>grpc_status</c>. A value the mesh does not know is null (Envoy's text format prints <c>-</c> for it).
/// Off, a request pays <see cref="Enabled"/> (one field read). On, a request is sampled at its start (<c>SampleRate</c>);
/// one sampled out is still followed, cheaply, when <c>AlwaysLogErrors</c> is set, and logged if it fails.
/// </remarks>
internal sealed partial class MeshAccessLog
{
    public const string Outbound = "outbound";
    public const string Inbound = "inbound";

    // Per outbound request being followed: the record the inner handlers fill (cluster, endpoint, attempts).

    private readonly ILogger _logger;
    private readonly bool _on;
    private readonly double _sampleRate;
    private readonly bool _alwaysLogErrors;
    private readonly bool _includeQuery;
    private readonly Func<double> _random;
    private readonly TimeProvider _time;
    private readonly string _localPrincipal;

    /// <param name="loggerFactory">Makes the <see cref="MeshTelemetry.AccessLogCategory"/> logger.</param>
    /// <param name="options">The mesh options (<c>Mesh:Telemetry:AccessLog</c>, and this workload's principal).</param>
    /// <param name="time">The clock of <c>start_time</c>; the system's when null.</param>
    /// <param name="random">The sampling source, uniform in [0, 1); <see cref="Random.Shared"/> when null (tests pass a sequence).</param>
    public MeshAccessLog(ILoggerFactory loggerFactory, IOptions<ServiceMeshOptions> options, TimeProvider? time = null, Func<double>? random = null)
    {
        ArgumentNullException.ThrowIfNull(loggerFactory);
        ArgumentNullException.ThrowIfNull(options);
        var settings = options.Value.Telemetry.AccessLog;
        _logger = loggerFactory.CreateLogger(MeshTelemetry.AccessLogCategory);
        _on = settings.Enabled;
        _sampleRate = settings.SampleRate;
        _alwaysLogErrors = settings.AlwaysLogErrors;
        _includeQuery = settings.IncludeQuery;
        _random = random ?? Random.Shared.NextDouble;
        _time = time ?? TimeProvider.System;
        var principal = IstioRequestMetrics.LocalWorkload.From(options.Value).Principal;
        _localPrincipal = principal == IstioRequestMetrics.Unknown ? string.Empty : principal;
    }

    /// <summary>Gets whether the access log is on and its category logs Information. The one check a request pays when off.</summary>
    public bool Enabled => _on && _logger.IsEnabled(LogLevel.Information);

    /// <summary>
    /// Whether a request failed, so that it is logged whatever the sampling: response code 0 (no response) or at least
    /// 400, a gRPC status other than OK, or any response flag but DI (a fault delay alone is not a failure).
    /// </summary>
    public static bool IsError(int responseCode, int grpcStatus, ResponseFlags flags) =>
        responseCode is 0 or >= 400 || grpcStatus > 0 || (flags & ~ResponseFlags.DelayInjected) != ResponseFlags.None;

    /// <summary>
    /// Decides, at a request's start, whether it is followed: <paramref name="sampled"/> when <c>SampleRate</c> draws it,
    /// and followed as well when not sampled but failures are always logged. False: nothing more is done for it.
    /// </summary>
    public bool TryBegin(out bool sampled)
    {
        sampled = _sampleRate >= 1 || (_sampleRate > 0 && _random() < _sampleRate);
        return sampled || _alwaysLogErrors;
    }

    /// <summary>Whether a followed request is written: sampled, or a failure while failures are always logged.</summary>
    public bool ShouldLog(bool sampled, int responseCode, int grpcStatus, ResponseFlags flags) =>
        sampled || (_alwaysLogErrors && IsError(responseCode, grpcStatus, flags));

    /// <summary>
    /// Starts following an outbound request to <paramref name="service"/> when it is sampled (or failures are always
    /// logged): its start, its path as the app sent it (before any rewrite: Envoy's <c>X-ENVOY-ORIGINAL-PATH</c>), the
    /// route it matches now. Null when it is not followed.
    /// </summary>
    public OutboundAccessRecord? BeginOutbound(HttpRequestMessage request, MeshService service)
    {
        if (!TryBegin(out var sampled))
        {
            return null;
        }

        var uri = request.RequestUri!;
        var record = new OutboundAccessRecord(
            _time.GetUtcNow(),
            sampled,
            _includeQuery ? uri.PathAndQuery : uri.AbsolutePath,
            Routing.MeshRouter.MatchRoute(service, request, uri));

        // Attached, so that the routing handler fills it in whatever handlers run between (it is also the request's trail).
        Http.AttemptTrail.Attach(request, record);
        return record;
    }

    /// <summary>
    /// Writes the entry of an outbound request (reporter <c>source</c>), with what the request metrics record plus the
    /// request and response themselves, the failure if any, and the SPIFFE ID the endpoint's mTLS handshake verified.
    /// </summary>
    public void LogOutbound(
        OutboundAccessRecord record,
        HttpRequestMessage request,
        HttpResponseMessage? response,
        Exception? exception,
        bool grpc,
        int responseCode,
        int grpcStatus,
        ResponseFlags flags,
        double milliseconds,
        long requestBytes,
        long responseBytes,
        string? peerSpiffeId)
    {
        if (!ShouldLog(record.Sampled, responseCode, grpcStatus, flags))
        {
            return;
        }

        if (_logger.IsEnabled(LogLevel.Information))
        {
            var headers = request.Headers.NonValidated;
            var endpoint = record.Endpoint;
            Log.Entry(
                _logger,
                StartTime(record.Start),
                request.Method.Method,
                record.Path,
                Protocol(request.Version),
                responseCode,
                flags.ToLabel(),
                OutboundDetails(response, exception, flags, record.Route),
                null,
                TransportFailure(exception, flags),
                requestBytes,
                responseBytes,
                (long)milliseconds,
                response is not null && response.Headers.NonValidated.TryGetValues("x-envoy-upstream-service-time", out var serviceTime) ? serviceTime.ToString() : null,
                Header(headers, "X-Forwarded-For"),
                Header(headers, "User-Agent"),
                Header(headers, "X-Request-Id"),
                Header(headers, "Host") ?? request.RequestUri!.Authority,
                endpoint?.Authority,
                record.Cluster?.Name,
                null,
                null,
                null,
                null,
                RouteName(record.Route),
                Outbound,
                "source",
                peerSpiffeId is null ? null : NullIfEmpty(_localPrincipal),
                peerSpiffeId,
                record.Attempts,
                grpc && grpcStatus >= 0 ? grpcStatus : null);
        }
    }

    /// <summary>
    /// Writes the entry of a request Kestrel received (reporter <c>destination</c>) from <paramref name="peerSpiffeId"/>
    /// (null over plaintext), with what the request metrics record plus the connection and the request themselves.
    /// </summary>
    public void LogInbound(
        HttpContext context,
        DateTimeOffset start,
        bool sampled,
        string? peerSpiffeId,
        bool grpc,
        int responseCode,
        int grpcStatus,
        ResponseFlags flags,
        double milliseconds,
        long requestBytes,
        long responseBytes,
        string? responseCodeDetails)
    {
        if (!ShouldLog(sampled, responseCode, grpcStatus, flags))
        {
            return;
        }

        if (_logger.IsEnabled(LogLevel.Information))
        {
            var request = context.Request;
            var connection = context.Connection;
            var local = Address(connection.LocalIpAddress, connection.LocalPort);
            var headers = request.Headers;
            Log.Entry(
                _logger,
                StartTime(start),
                request.Method,
                InboundPath(context),
                request.Protocol,
                responseCode,
                flags.ToLabel(),
                responseCodeDetails ?? "via_upstream",
                null,
                null,
                requestBytes,
                responseBytes,
                (long)milliseconds,
                null,
                NullIfEmpty(headers["X-Forwarded-For"].ToString()),
                NullIfEmpty(headers.UserAgent.ToString()),
                NullIfEmpty(headers["X-Request-Id"].ToString()),
                NullIfEmpty(request.Host.Value),

                // The app is the upstream of the inbound side, in this very process: its address is the listener's, as a
                // sidecar's inbound entry shows the app's; the cluster is named as Istio names inbound clusters.
                local,
                string.Create(CultureInfo.InvariantCulture, $"inbound|{connection.LocalPort}||"),
                null,
                local,
                Address(connection.RemoteIpAddress, connection.RemotePort),
                NullIfEmpty(context.Features.Get<ITlsHandshakeFeature>()?.HostName),
                (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText,
                Inbound,
                "destination",
                peerSpiffeId,
                peerSpiffeId is null ? null : NullIfEmpty(_localPrincipal),
                null,
                grpc && grpcStatus >= 0 ? grpcStatus : null);
        }
    }

    /// <summary>
    /// Envoy's <c>RESPONSE_CODE_DETAILS</c> for an outbound request (envoy/stream_info/stream_info.h
    /// <c>ResponseCodeDetailValues</c>): <c>via_upstream</c> when the endpoint answered, else what the mesh decided.
    /// </summary>
    internal static string? OutboundDetails(HttpResponseMessage? response, Exception? exception, ResponseFlags flags, MeshRoute? route)
    {
        if (response is not null)
        {
            return (flags & ResponseFlags.FaultInjected) != 0 ? "fault_filter_abort"
                : route?.Features is { AnswersLocally: true } ? "direct_response"
                : "via_upstream";
        }

        if (exception is null)
        {
            return null;
        }

        return flags switch
        {
            _ when (flags & ResponseFlags.NoRouteFound) != 0 => "route_not_found",
            _ when (flags & ResponseFlags.NoHealthyUpstream) != 0 => "no_healthy_upstream",
            _ when (flags & ResponseFlags.NoClusterFound) != 0 => "cluster_not_found",
            _ when (flags & ResponseFlags.UpstreamOverflow) != 0 => "upstream_reset_before_response_started{overflow}",
            _ when (flags & (ResponseFlags.UpstreamConnectionFailure | ResponseFlags.DnsResolutionFailed)) != 0 => "upstream_reset_before_response_started{connection_failure}",
            _ when (flags & ResponseFlags.UpstreamConnectionTermination) != 0 => "upstream_reset_before_response_started{connection_termination}",
            _ when (flags & ResponseFlags.UpstreamProtocolError) != 0 => "upstream_reset_before_response_started{protocol_error}",
            _ when (flags & ResponseFlags.UpstreamRemoteReset) != 0 => "upstream_reset_before_response_started{remote_reset}",
            _ when (flags & ResponseFlags.UpstreamRequestTimeout) != 0 => "response_timeout",
            _ when (flags & ResponseFlags.DownstreamConnectionTermination) != 0 => "downstream_remote_disconnect",
            _ => null,
        };
    }

    /// <summary>Envoy's <c>UPSTREAM_TRANSPORT_FAILURE_REASON</c>: why the connection failed (the TLS or socket error), for UF only.</summary>
    private static string? TransportFailure(Exception? exception, ResponseFlags flags)
    {
        if (exception is null || (flags & ResponseFlags.UpstreamConnectionFailure) == 0)
        {
            return null;
        }

        var inner = exception;
        while (inner.InnerException is { } next && inner is not ServiceMeshException)
        {
            inner = next;
        }

        return inner.Message;
    }

    private string InboundPath(HttpContext context)
    {
        var request = context.Request;
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(target) || target[0] != '/')
        {
            target = request.PathBase.Add(request.Path).ToUriComponent() + (_includeQuery ? request.QueryString.Value : null);
            return target;
        }

        var query = target.IndexOf('?', StringComparison.Ordinal);
        return _includeQuery || query < 0 ? target : target[..query];
    }

    private static string? RouteName(MeshRoute? route) => route is null ? null : route.Name.Length > 0 ? route.Name : null;

    // Envoy's START_TIME default: an ISO 8601 UTC time with milliseconds.
    private static string StartTime(DateTimeOffset start) =>
        start.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    // Envoy's PROTOCOL: HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3.
    private static string Protocol(Version version) => version.Major switch
    {
        1 => version.Minor == 0 ? "HTTP/1.0" : "HTTP/1.1",
        2 => "HTTP/2",
        3 => "HTTP/3",
        _ => "HTTP/" + version.ToString(),
    };

    private static string? Header(System.Net.Http.Headers.HttpHeadersNonValidated headers, string name) =>
        headers.TryGetValues(name, out var values) ? values.ToString() : null;

    private static string? Address(IPAddress? ip, int port) =>
        ip is null ? null : ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? string.Create(CultureInfo.InvariantCulture, $"[{ip}]:{port}")
            : string.Create(CultureInfo.InvariantCulture, $"{ip}:{port}");

    private static string? NullIfEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}

/// <summary>
/// An outbound request being followed by the access log: its trail filled in by the routing handler (the cluster and
/// endpoint of the last attempt, the attempt count) and read once at its end.
/// </summary>
internal sealed class OutboundAccessRecord(DateTimeOffset start, bool sampled, string path, MeshRoute? route) : Http.AttemptTrail
{
    public DateTimeOffset Start { get; } = start;

    public bool Sampled { get; } = sampled;

    /// <summary>Gets the path as the app sent it (without the query unless <c>IncludeQuery</c>).</summary>
    public string Path { get; } = path;

    public MeshRoute? Route { get; } = route;

}
