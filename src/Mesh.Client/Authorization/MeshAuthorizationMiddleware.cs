using Mesh.Client.Authorization.Jwt;
using Mesh.Client.Authorization.RateLimit;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Authorization;

/// <summary>
/// Enforces the inbound policy of the connection's local port: STRICT needs an authenticated peer, then
/// RequestAuthentication (JWT: invalid token 401, disallowed audience 403, no token passes), then AuthorizationPolicy
/// (DENY before ALLOW). Denied: 403 <c>RBAC: access denied</c>; a request that cannot be authorized as spelled (method
/// not upper case, encoded slash, backslash or NUL): 400, even on a port without rules. A mesh-served port without a current
/// policy (not received yet, or removed by the control plane) fails closed: 503, no application code runs. Ports of a
/// workload that takes no inbound mesh traffic, and endpoints excluded from the mesh (<c>ExcludeFromServiceMesh()</c>), pass through. Last, the port's local rate limit (local_ratelimit): a request
/// over its caller's or the total limit gets 429 <c>local_rate_limited</c> (a gRPC call: HTTP 200 with UNAVAILABLE, or
/// RESOURCE_EXHAUSTED when configured), with <c>X-RateLimit-*</c> headers when enabled; authorization runs first, so
/// denied requests never take tokens from allowed callers.
/// </summary>
/// <remarks>
/// Being first, it also records Istio's request metrics for reporter <c>destination</c> on mesh-served ports, the refused
/// requests included (<see cref="IstioRequestMetrics"/>): only while something listens, else it costs one check.
/// </remarks>
internal sealed partial class MeshAuthorizationMiddleware(
    RequestDelegate next,
    InboundPolicyStore store,
    ILogger<MeshAuthorizationMiddleware> logger,
    TimeProvider? time = null,
    IstioRequestMetrics? metrics = null,
    MeshAccessLog? accessLog = null,
    MeshExcludedListeners? excluded = null)
{
    public const string DeniedBody = "RBAC: access denied";

    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, InboundPortState> _logged = new();
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    public Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (excluded is { Any: true } && context.Features.Get<MeshEndpointFeature>() is { Excluded: true })
        {
            return next(context);
        }

        var recorder = metrics is { Enabled: true } ? metrics : null;
        var log = accessLog is { Enabled: true } ? accessLog : null;
        if ((recorder is null && log is null) || store.Lookup(context.Connection.LocalPort, out _) == InboundPortState.NotMeshServed)
        {
            return InvokeCoreAsync(context);
        }

        // The access log follows the request only when sampled (or when failures are always logged).
        var sampled = false;
        var followed = log is not null && log.TryBegin(out sampled);
        return recorder is null && !followed
            ? InvokeCoreAsync(context)
            : InvokeMeasuredAsync(context, recorder, followed ? log : null, sampled);
    }

    /// <summary>
    /// A request on a mesh-served port while request metrics are listened to or the access log follows it (then
    /// <paramref name="log"/> is set): handled, then recorded and logged once.
    /// </summary>
    private async Task InvokeMeasuredAsync(HttpContext context, IstioRequestMetrics? recorder, MeshAccessLog? log, bool sampled)
    {
        var start = _time.GetTimestamp();
        var startTime = log is not null ? _time.GetUtcNow() : default;
        var failed = false;
        var grpc = GrpcContentType.Is(context.Request.ContentType);

        // A gRPC call's bodies are counted as the app reads and writes them (messages and bytes).
        var meter = grpc ? InboundGrpcMeter.Install(context) : null;
        try
        {
            await InvokeCoreAsync(context).ConfigureAwait(false);
        }
        catch
        {
            failed = true;
            throw;
        }
        finally
        {
            meter?.Remove(context);
            RecordInbound(context, recorder, log, startTime, sampled, start, failed, grpc, meter);
        }
    }

    private void RecordInbound(HttpContext context, IstioRequestMetrics? recorder, MeshAccessLog? log, DateTimeOffset startTime, bool sampled, long start, bool failed, bool grpc, InboundGrpcMeter? meter)
    {
        var request = context.Request;
        var response = context.Response;
        var identity = context.Features.Get<IMeshPeerIdentityFeature>();

        // An exception the app threw before answering becomes Kestrel's 500.
        var code = failed && !response.HasStarted ? StatusCodes.Status500InternalServerError : response.StatusCode;
        var flags = ResponseFlags.None;
        if (context.RequestAborted.IsCancellationRequested)
        {
            flags |= ResponseFlags.DownstreamConnectionTermination;
        }

        var reply = context.Features.Get<LocalReply>();
        if (reply is not null)
        {
            flags |= reply.Flags;
        }

        var grpcStatus = grpc ? InboundGrpcStatus(context) : -1;
        var elapsed = _time.GetElapsedTime(start).TotalMilliseconds;
        var requestBytes = meter?.RequestBytes ?? request.ContentLength ?? 0;
        var responseBytes = meter?.ResponseBytes ?? response.ContentLength ?? 0;
        if (HttpMetricsDisabled(context))
        {
            recorder = null;
        }

        recorder?.RecordInbound(
            identity?.SpiffeId,
            identity?.SpiffeId is not null,
            grpc,
            code,
            grpcStatus,
            flags,
            elapsed,
            requestBytes,
            responseBytes,
            meter?.RequestMessages ?? 0,
            meter?.ResponseMessages ?? 0);
        log?.LogInbound(context, startTime, sampled, identity?.SpiffeId, grpc, code, grpcStatus, flags, elapsed, requestBytes, responseBytes, reply?.Details);
    }

    /// <summary>
    /// Whether the app opted the request out of HTTP metrics as ASP.NET Core has it (<c>DisableHttpMetrics()</c> on its
    /// endpoint, <c>[DisableHttpMetrics]</c>, or <see cref="IHttpMetricsTagsFeature.MetricsDisabled"/>): its Prometheus
    /// scrape endpoint or health probes, which in Istio reach the agent, not the inbound listener, so they are in no
    /// Istio series. A request the mesh refused never reached its endpoint and is still counted.
    /// </summary>
    private static bool HttpMetricsDisabled(HttpContext context) =>
        context.Features.Get<IHttpMetricsTagsFeature>() is { MetricsDisabled: true }
        || context.GetEndpoint()?.Metadata.GetMetadata<IDisableHttpMetricsMetadata>() is not null;

    /// <summary>The gRPC status the response carries: in its trailers, or in its headers when trailers-only; else -1.</summary>
    private static int InboundGrpcStatus(HttpContext context)
    {
        var value = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers is { } trailers && trailers.TryGetValue("grpc-status", out var trailer)
            ? trailer
            : context.Response.Headers["grpc-status"];
        return int.TryParse(value.ToString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var status) && status <= 16 ? status : -1;
    }

    private Task InvokeCoreAsync(HttpContext context)
    {
        var state = store.Lookup(context.Connection.LocalPort, out var policy);
        if (state != InboundPortState.Policy)
        {
            return state == InboundPortState.NotMeshServed ? next(context) : UnavailableAsync(context, state);
        }

        var identity = context.Features.Get<IMeshPeerIdentityFeature>();
        if (policy!.RefusePlaintext(identity?.SpiffeId) is { } strict)
        {
            TagDecision(strict, identity);
            return RejectAsync(context, strict);
        }

        if (policy.Jwt is { } jwt)
        {
            var pending = jwt.AuthenticateAsync(context.Request, _time.GetUtcNow());
            return pending.IsCompletedSuccessfully
                ? AuthorizeAsync(context, policy, identity, pending.Result)
                : AuthenticateSlowAsync(context, policy, identity, pending);
        }

        return AuthorizeAsync(context, policy, identity, JwtOutcome.NotRequired);
    }

    private async Task AuthenticateSlowAsync(HttpContext context, InboundPolicy policy, IMeshPeerIdentityFeature? identity, ValueTask<JwtOutcome> pending)
    {
        var outcome = await pending.ConfigureAwait(false);
        await AuthorizeAsync(context, policy, identity, outcome).ConfigureAwait(false);
    }

    private Task AuthorizeAsync(HttpContext context, InboundPolicy policy, IMeshPeerIdentityFeature? identity, in JwtOutcome jwt)
    {
        if (!jwt.IsAllowed)
        {
            if (MeshTracing.IsEnabled)
            {
                MeshTracing.TagInbound(allowed: false, JwtStatusText.TracePolicy(jwt.Status), identity?.SpiffeId);
            }

            return RejectTokenAsync(context, jwt.Status);
        }

        if (policy.Jwt is { } authenticator)
        {
            // Envoy runs jwt_authn before RBAC: RBAC and the app see only what the verified token says. Every output header
            // of every provider is removed first (a client must not hand over its own "verified" claims, whether it sent
            // no token, a token without the claim, or a token of another provider), then the token's outputs are applied.
            foreach (var header in authenticator.OutputHeaders)
            {
                context.Request.Headers.Remove(header);
            }

            if (jwt.Principal is { } principal)
            {
                ApplyTokenOutputs(context, principal, jwt.Provider!, jwt.TokenHeader);
            }
        }

        // Always through Authorize, also without rules: it refuses spellings (method case, encoded slash, backslash, NUL) with 400.
        var request = context.Request;
        var decision = policy.Authorize(request.Method, AuthorizedTarget(context), request.Host.Value, request.Headers, identity?.SpiffeId, identity?.PeerNamespace, jwt.Principal, out var forwardTarget);
        TagDecision(decision, identity);
        if (!decision.IsAllowed)
        {
            return RejectAsync(context, decision);
        }

        if (forwardTarget is not null)
        {
            // What was decided on, for the sidecar to forward as is (never normalized again under a policy pushed since).
            context.Features.Set(new MeshAuthorizedTargetFeature(forwardTarget));
        }

        if (policy.RateLimit is { } limiter)
        {
            // The caller is its mTLS identity (the handshake's, never a header); callers without a certificate share one key.
            var allowed = limiter.TryAcquire(identity?.SpiffeId, out var status, out var refusedBy);
            if (limiter.HeadersEnabled)
            {
                var headers = context.Response.Headers;
                headers[RateLimitHeaders.Limit] = LocalRateLimiter.HeaderValue(status.Limit);
                headers[RateLimitHeaders.Remaining] = LocalRateLimiter.HeaderValue(status.Remaining);
                headers[RateLimitHeaders.Reset] = LocalRateLimiter.HeaderValue(status.ResetSeconds);
            }

            if (!allowed)
            {
                return RateLimitedAsync(context, limiter, identity?.SpiffeId, refusedBy);
            }
        }

        return next(context);
    }

    /// <summary>
    /// The request target AuthorizationPolicy decides on: the raw origin-form target; for an absolute-form or missing one, the
    /// path Kestrel parsed. Also for a host that re-decides a request later (the sidecar's upgraded requests).
    /// </summary>
    internal static string AuthorizedTarget(HttpContext context)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        return string.IsNullOrEmpty(target) || target[0] != '/'
            ? context.Request.PathBase.Add(context.Request.Path).ToUriComponent()
            : target;
    }

    /// <summary>
    /// Envoy's local_ratelimit local reply: the status (429) with <c>x-envoy-ratelimited</c> and the body
    /// <c>local_rate_limited</c>; a gRPC call gets a trailers-only HTTP 200 with the gRPC status instead, as Envoy's gRPC
    /// local replies do.
    /// </summary>
    private Task RateLimitedAsync(HttpContext context, LocalRateLimiter limiter, string? peer, RateLimitScope refusedBy)
    {
        var request = context.Request;
        LogRateLimited(logger, peer ?? "plaintext", request.Method, request.Path.Value ?? string.Empty, refusedBy);
        var response = context.Response;
        context.Features.Set(LocalReply.RateLimited);
        response.Headers[RateLimitHeaders.EnvoyRateLimited] = "true";
        if (GrpcContentType.Is(request.ContentType))
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/grpc";
            response.Headers["grpc-status"] = limiter.ResourceExhausted ? "8" : "14";
            response.Headers["grpc-message"] = RateLimitHeaders.Body;
            return Task.CompletedTask;
        }

        response.StatusCode = limiter.StatusCode;
        response.ContentType = "text/plain";
        return response.WriteAsync(RateLimitHeaders.Body, context.RequestAborted);
    }

    /// <summary>
    /// Envoy's jwt_authn outputs for the verified token, applied before RBAC as Envoy's filter order does: the principal
    /// for the app, the token header removed unless <c>forward</c> (headers only), the payload header and the claim
    /// headers (set; the caller has already removed every output header the client sent).
    /// </summary>
    private static void ApplyTokenOutputs(HttpContext context, JwtPrincipal principal, JwtProvider provider, string? tokenHeader)
    {
        context.Features.Set<IMeshRequestPrincipalFeature>(principal);
        var headers = context.Request.Headers;
        if (!provider.Forward)
        {
            // Every token at the provider's header locations was verified (one that failed would have ended the request),
            // so each is removed, as Envoy removes every token it verified; a default location only when it held the token.
            if (provider.Headers.Length == 0)
            {
                if (tokenHeader is not null)
                {
                    headers.Remove(tokenHeader);
                }
            }
            else
            {
                foreach (var (name, _) in provider.Headers)
                {
                    headers.Remove(name);
                }
            }
        }

        if (provider.PayloadHeader is { } payloadHeader)
        {
            headers[payloadHeader] = principal.PayloadSegment;
        }

        foreach (var (header, value) in principal.ClaimHeaders)
        {
            headers[header] = value;
        }
    }

    /// <summary>Envoy's jwt_authn local reply: 401 (403 for a disallowed audience), the status text, and WWW-Authenticate.</summary>
    private async Task RejectTokenAsync(HttpContext context, JwtStatus status)
    {
        var request = context.Request;
        var message = JwtStatusText.Message(status);
        LogTokenRejected(logger, context.Features.Get<IMeshPeerIdentityFeature>()?.SpiffeId ?? "plaintext", request.Method, request.Path.Value ?? string.Empty, message);
        var realm = $"{request.Scheme}://{request.Host.Value}{request.PathBase.Value}{request.Path.Value}";
        if (realm.Length > 256)
        {
            realm = realm[..256];
        }

        context.Features.Set(LocalReply.JwtDenied(message));
        context.Response.StatusCode = status == JwtStatus.AudienceNotAllowed ? StatusCodes.Status403Forbidden : StatusCodes.Status401Unauthorized;
        context.Response.Headers.WWWAuthenticate = status == JwtStatus.Missing
            ? $"Bearer realm=\"{realm}\""
            : $"Bearer realm=\"{realm}\", error=\"invalid_token\"";
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync(message, context.RequestAborted).ConfigureAwait(false);
    }

    private async Task UnavailableAsync(HttpContext context, InboundPortState state)
    {
        var port = context.Connection.LocalPort;
        var body = state == InboundPortState.Removed
            ? $"mesh: inbound policy for port {port} was removed by the control plane"
            : $"mesh: inbound policy for port {port} not received";

        // Once per port and state: a port waiting for its policy must not flood the log with every request.
        if (!_logged.TryGetValue(port, out var logged) || logged != state)
        {
            _logged[port] = state;
            LogNoPolicy(logger, port, body);
        }

        context.Features.Set(state == InboundPortState.Removed ? LocalReply.PolicyRemoved : LocalReply.PolicyNotReceived);
        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// Puts the decision on ASP.NET Core's own server span (Activity.Current here) rather than on a span of the mesh's:
    /// the server span already is the request, and a second one would only repeat its HTTP attributes. Only while the
    /// mesh's spans are listened to (AddServiceMeshInstrumentation), and only on a span that records.
    /// </summary>
    private static void TagDecision(in AuthorizationDecision decision, IMeshPeerIdentityFeature? identity)
    {
        if (MeshTracing.IsEnabled)
        {
            MeshTracing.TagInbound(decision.IsAllowed, decision.Reason, identity?.SpiffeId);
        }
    }

    private async Task RejectAsync(HttpContext context, AuthorizationDecision decision)
    {
        var request = context.Request;
        var peer = context.Features.Get<IMeshPeerIdentityFeature>()?.SpiffeId ?? "plaintext";
        var path = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? request.Path.Value ?? string.Empty;
        if (decision.Outcome == AuthorizationOutcome.BadRequest)
        {
            LogBadRequest(logger, peer, request.Method, path, decision.Reason);
            context.Features.Set(LocalReply.BadRequest);
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("Bad Request: " + decision.Reason, context.RequestAborted).ConfigureAwait(false);
            return;
        }

        LogDenied(logger, peer, request.Method, path, decision.Reason);
        context.Features.Set(LocalReply.RbacDenied);
        context.Response.StatusCode = StatusCodes.Status403Forbidden;
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync(DeniedBody, context.RequestAborted).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 1, EventName = "AccessDenied", Level = LogLevel.Information, Message = "RBAC: access denied for {Peer}: {Method} {Path} (policy: {Policy})")]
    private static partial void LogDenied(ILogger logger, string peer, string method, string path, string policy);

    [LoggerMessage(EventId = 2, EventName = "BadRequest", Level = LogLevel.Information, Message = "Rejected {Method} {Path} from {Peer} with 400: {Reason}")]
    private static partial void LogBadRequest(ILogger logger, string peer, string method, string path, string reason);

    [LoggerMessage(EventId = 30, EventName = "NoInboundPolicy", Level = LogLevel.Warning, Message = "Port {Port} answers 503 until the control plane sends its inbound policy ({Reason})")]
    private static partial void LogNoPolicy(ILogger logger, int port, string reason);

    [LoggerMessage(EventId = 40, EventName = "RateLimited", Level = LogLevel.Debug, Message = "Local rate limit ({Scope}) refused {Method} {Path} from {Peer}")]
    private static partial void LogRateLimited(ILogger logger, string peer, string method, string path, RateLimitScope scope);

    [LoggerMessage(EventId = 10, EventName = "JwtRejected", Level = LogLevel.Information, Message = "JWT rejected for {Peer}: {Method} {Path}: {Reason}")]
    private static partial void LogTokenRejected(ILogger logger, string peer, string method, string path, string reason);
}

/// <summary>
/// The response flag and details of a local reply the middleware sent, for the request metrics and the access log. Only
/// some replies carry a flag: Envoy's RBAC filter sets none on its 403 (source/extensions/filters/http/rbac/rbac_filter.cc
/// calls sendLocalReply(Forbidden, "RBAC: access denied", …, RcDetails RbacAccessDenied) and no setResponseFlag; the denial
/// shows in RESPONSE_CODE_DETAILS only), so a denied request reports response_code 403 and response_flags "-", as a
/// sidecar's. <see cref="Details"/> is Envoy's RESPONSE_CODE_DETAILS for the reply (envoy/stream_info/stream_info.h and
/// the filters named), or the mesh's own where Envoy has no such reply.
/// </summary>
internal sealed class LocalReply(ResponseFlags flags, string details)
{
    /// <summary>Envoy local_ratelimit's reply: RL, <c>local_rate_limited</c>.</summary>
    public static readonly LocalReply RateLimited = new(ResponseFlags.RateLimited, "local_rate_limited");

    /// <summary>Envoy RBAC's 403 (also STRICT without a client certificate): no flag, <c>rbac_access_denied</c>.</summary>
    public static readonly LocalReply RbacDenied = new(ResponseFlags.None, "rbac_access_denied");

    /// <summary>A request that cannot be authorized as spelled (400): Envoy's <c>path_normalization_failed</c>.</summary>
    public static readonly LocalReply BadRequest = new(ResponseFlags.None, "path_normalization_failed");

    /// <summary>A mesh-served port whose policy has not arrived (503, the mesh's own).</summary>
    public static readonly LocalReply PolicyNotReceived = new(ResponseFlags.None, "mesh_inbound_policy_not_received");

    /// <summary>A mesh-served port whose policy the control plane removed (503, the mesh's own).</summary>
    public static readonly LocalReply PolicyRemoved = new(ResponseFlags.None, "mesh_inbound_policy_removed");

    public ResponseFlags Flags { get; } = flags;

    public string Details { get; } = details;

    /// <summary>Envoy jwt_authn's reply: <c>jwt_authn_access_denied{&lt;status, spaces as underscores&gt;}</c>.</summary>
    public static LocalReply JwtDenied(string status) => new(ResponseFlags.None, $"jwt_authn_access_denied{{{status.Replace(' ', '_')}}}");
}

/// <summary>Puts <see cref="MeshAuthorizationMiddleware"/> first in the pipeline, before the application's middleware.</summary>
internal sealed class MeshAuthorizationStartupFilter : IStartupFilter
{
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.UseMiddleware<MeshAuthorizationMiddleware>();
        next(app);
    };
}
