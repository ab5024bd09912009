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
/// Ports without an inbound listener from the control plane are not mesh ports and pass through.
/// </summary>
internal sealed partial class MeshAuthorizationMiddleware(RequestDelegate next, InboundPolicyStore store, ILogger<MeshAuthorizationMiddleware> logger)
{
    public const string DeniedBody = "RBAC: access denied";

    public Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!store.TryGet(context.Connection.LocalPort, out var policy))
        {
            return next(context);
        }

        var identity = context.Features.Get<IMeshPeerIdentityFeature>();
        var peer = identity?.SpiffeId;
        AuthorizationDecision decision;
        if (policy.Mode == PeerAuthenticationMode.Strict && peer is null)
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
