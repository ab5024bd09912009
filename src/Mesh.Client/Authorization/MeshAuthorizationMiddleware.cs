using Mesh.Client.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Authorization;

/// <summary>
/// Enforces the inbound policy of the connection's local port: STRICT needs an authenticated peer, then
/// AuthorizationPolicy (DENY before ALLOW). Denied: 403 <c>RBAC: access denied</c>; a request that cannot be
/// authorized as spelled (method not upper case, encoded slash or NUL): 400, even on a port without rules.
/// A mesh-served port without a current policy (not received yet, or removed by the control plane) fails closed: 503,
/// no application code runs. Ports of a workload that takes no inbound mesh traffic pass through.
/// </summary>
internal sealed partial class MeshAuthorizationMiddleware(RequestDelegate next, InboundPolicyStore store, ILogger<MeshAuthorizationMiddleware> logger)
{
    public const string DeniedBody = "RBAC: access denied";

    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, InboundPortState> _logged = new();

    public Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var state = store.Lookup(context.Connection.LocalPort, out var policy);
        if (state != InboundPortState.Policy)
        {
            return state == InboundPortState.NotMeshServed ? next(context) : UnavailableAsync(context, state);
        }

        var identity = context.Features.Get<IMeshPeerIdentityFeature>();
        var peer = identity?.SpiffeId;
        AuthorizationDecision decision;
        if (policy!.Mode == PeerAuthenticationMode.Strict && peer is null)
        {
            decision = new AuthorizationDecision(AuthorizationOutcome.Denied, AuthorizationDecision.StrictRequiresMtls);
        }
        else
        {
            var request = context.Request;
            var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
            if (string.IsNullOrEmpty(target) || target[0] != '/')
            {
                // Absolute-form or missing raw target: authorize the path Kestrel parsed.
                target = request.PathBase.Add(request.Path).ToUriComponent();
            }

            decision = policy.Authorize(request.Method, target, request.Host.Value, request.Headers, peer, identity?.PeerNamespace);
        }

        return decision.IsAllowed ? next(context) : RejectAsync(context, decision);
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

        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
    }

    private async Task RejectAsync(HttpContext context, AuthorizationDecision decision)
    {
        var request = context.Request;
        var peer = context.Features.Get<IMeshPeerIdentityFeature>()?.SpiffeId ?? "plaintext";
        var path = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? request.Path.Value ?? string.Empty;
        if (decision.Outcome == AuthorizationOutcome.BadRequest)
        {
            LogBadRequest(logger, peer, request.Method, path, decision.Reason);
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("Bad Request: " + decision.Reason, context.RequestAborted).ConfigureAwait(false);
            return;
        }

        LogDenied(logger, peer, request.Method, path, decision.Reason);
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
