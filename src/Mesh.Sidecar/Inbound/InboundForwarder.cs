using System.Net;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Inbound;

/// <summary>
/// The mesh port's requests (already through mTLS, PeerAuthentication and AuthorizationPolicy, counted in the
/// destination metrics by Mesh.Client's inbound middleware) forwarded to the app on 127.0.0.1:&lt;AppPort&gt;, with the
/// caller's identity in <c>X-Forwarded-Client-Cert</c>.
/// </summary>
/// <remarks>
/// An upgraded request (a WebSocket: HTTP/1.1 <c>Upgrade</c>, or HTTP/2 extended CONNECT) is re-decided on every inbound
/// policy change as the TCP tunnels are (<see cref="InboundPolicyDrain"/>): one the new policy denies, with the method,
/// target, headers, peer and token principal it was authorized with, is aborted after the drain. Before, it outlived a
/// DENY until one side closed it (review-sidecar #3). Other requests end on their own, as the requests Envoy drains do.
/// </remarks>
internal sealed partial class InboundForwarder : IDisposable
{
    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _app;
    private readonly string _destination;
    private readonly ForwarderRequestConfig _config;
    private readonly InboundTransformer _transformer;
    private readonly ILogger _logger;
    private readonly InboundPolicyDrain _drain;

    public InboundForwarder(IHttpForwarder forwarder, SidecarOptions options, IWorkloadCertificateSource certificates, InboundPolicyStore policies, TimeProvider time, ILogger<InboundForwarder> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _forwarder = forwarder;
        _logger = logger;
        _drain = new InboundPolicyDrain(policies, time);
        _destination = $"http://127.0.0.1:{options.AppPort}";
        _config = RequestConfig(options.AppProtocol);
        _app = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            ActivityHeadersPropagator = null,
        });
        _transformer = new InboundTransformer(certificates);
    }

    /// <summary>How requests go to the app: its protocol exactly, cut after Envoy's stream idle timeout without a byte.</summary>
    internal static ForwarderRequestConfig RequestConfig(SidecarAppProtocol protocol) => new()
    {
        Version = protocol == SidecarAppProtocol.Http2 ? HttpVersion.Version20 : HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        ActivityTimeout = SidecarTimeouts.StreamIdleTimeout,
    };

    /// <summary>Gets the number of upgraded requests in flight (for tests).</summary>
    internal int OpenUpgrades => _drain.Count;

    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        ForwarderError error;
        using (TrackUpgrade(context))
        {
            error = await _forwarder.SendAsync(context, _destination, _app, _config, _transformer).ConfigureAwait(false);
        }

        if (error == ForwarderError.None)
        {
            return;
        }

        var exception = context.GetForwarderErrorFeature()?.Exception;
        Log.ForwardFailed(_logger, _destination, error, exception);
        if (context.Response.HasStarted || context.RequestAborted.IsCancellationRequested)
        {
            return;
        }

        var (code, flags, reason) = Classify(error, exception, context.RequestAborted);
        context.Features.Set(new LocalReply(flags, Details(flags)));
        context.Response.Clear();
        context.Response.StatusCode = code;
        context.Response.ContentType = "text/plain; charset=utf-8";

        // Envoy's body: what failed, never where the app listens (its loopback port is for this machine's operator, in the
        // log line above, not for a remote caller; found in review).
        await context.Response.WriteAsync(
            $"upstream connect error or disconnect/reset before headers. reset reason: {reason} (response flags {flags.ToLabel()})\n",
            context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// An upgradable request, tracked while it is forwarded and re-decided on policy changes with what it was authorized
    /// with (the headers copied: YARP and Kestrel own the request's own after the upgrade); null for any other request.
    /// </summary>
    private IDisposable? TrackUpgrade(HttpContext context)
    {
        if (context.Features.Get<IHttpUpgradeFeature>() is not { IsUpgradableRequest: true }
            && context.Features.Get<IHttpExtendedConnectFeature>() is not { IsExtendedConnect: true })
        {
            return null;
        }

        var request = context.Request;
        var (method, target, host) = (request.Method, MeshAuthorizationMiddleware.AuthorizedTarget(context), request.Host.Value);
        var headers = new HeaderDictionary();
        foreach (var (name, value) in request.Headers)
        {
            headers[name] = value;
        }

        var identity = context.Features.Get<IMeshPeerIdentityFeature>();
        var (peer, peerNamespace) = (identity?.SpiffeId, identity?.PeerNamespace);
        var principal = context.Features.Get<IMeshRequestPrincipalFeature>() as Mesh.Client.Authorization.Jwt.JwtPrincipal;
        var remote = context.Connection.RemoteIpAddress?.ToString() ?? "?";
        var path = request.Path.Value ?? string.Empty;
        return _drain.Track(
            context.Connection.LocalPort,
            policy => (policy.RefusePlaintext(peer) ?? policy.Authorize(method, target, host, headers, peer, peerNamespace, principal)) is { IsAllowed: false } decision
                ? decision.Reason
                : null,
            reason => Log.Draining(_logger, method, path, remote, peer ?? "plaintext", reason, MeshInboundConnectionMiddleware.PolicyChangeDrain),
            // Never after the request has ended: the drain runs it under the handle's lock, which ending the request takes.
            _ => context.Abort());
    }

    /// <summary>What Envoy's inbound listener would answer for a failed forward: status, response flags and reset reason.</summary>
    internal static (int Code, ResponseFlags Flags, string Reason) Classify(ForwarderError error, Exception? exception, CancellationToken callerToken)
    {
        if (error == ForwarderError.RequestTimedOut)
        {
            return (StatusCodes.Status504GatewayTimeout, ResponseFlags.UpstreamRequestTimeout, "timeout");
        }

        if (error is ForwarderError.RequestBodyClient)
        {
            return (StatusCodes.Status400BadRequest, ResponseFlags.DownstreamConnectionTermination, "the caller's request body failed");
        }

        var (code, flags) = exception is null ? (0, ResponseFlags.None) : OutboundOutcome.Classify(exception, callerToken);
        var reason = flags switch
        {
            ResponseFlags.UpstreamConnectionFailure => "connection failure",
            ResponseFlags.UpstreamConnectionTermination => "connection termination",
            ResponseFlags.UpstreamProtocolError => "protocol error",
            _ => "remote reset",
        };
        return code == 0 ? (StatusCodes.Status502BadGateway, flags, reason) : (code, flags, reason);
    }

    // Envoy's %RESPONSE_CODE_DETAILS% for these local replies.
    private static string Details(ResponseFlags flags) => flags switch
    {
        ResponseFlags.UpstreamConnectionFailure => "upstream_reset_before_response_started{connection_failure}",
        ResponseFlags.UpstreamConnectionTermination => "upstream_reset_before_response_started{connection_termination}",
        ResponseFlags.UpstreamProtocolError => "upstream_reset_before_response_started{protocol_error}",
        ResponseFlags.UpstreamRequestTimeout => "response_timeout",
        _ => "upstream_reset_before_response_started{remote_reset}",
    };

    public void Dispose()
    {
        _drain.Dispose();
        _app.Dispose();
    }

    /// <summary>
    /// Copies the request as YARP does without the headers the caller's Connection names, keeps the caller's Host, and
    /// replaces any XFCC with this hop's own.
    /// </summary>
    private sealed class InboundTransformer(IWorkloadCertificateSource certificates) : HttpTransformer
    {
        private static readonly UriCreationOptions AsIs = new() { DangerousDisablePathAndQueryCanonicalization = true };

        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
            // Under a listener that lets an escaped slash through, the target the policy decided on, as Envoy forwards its
            // normalized path: YARP would forward Request.Path, re-escaping %2F as %252F, a path no policy saw
            // (dotnet/yarp#1419). Sent as written (already in its final, escaped form) and never normalized again here.
            if (httpContext.Features.Get<MeshAuthorizedTargetFeature>() is { } authorized)
            {
                proxyRequest.RequestUri = new Uri(destinationPrefix + authorized.Target, AsIs);
            }

            ConnectionHeader.RemoveNominatedHeaders(httpContext.Request.Headers, proxyRequest);
            proxyRequest.Headers.Host = httpContext.Request.Host.Value;

            // Whatever a caller sent as XFCC is its own claim, never the mesh's: only this hop's element reaches the app. Also
            // its underscore spelling: CGI and WSGI servers (Python's wsgiref among them) read X_Forwarded_Client_Cert and
            // X-Forwarded-Client-Cert as the same HTTP_X_FORWARDED_CLIENT_CERT, so it would pass for the mesh's.
            proxyRequest.Headers.Remove(ForwardedClientCert.HeaderName);
            RemoveUnderscoreSpellings(proxyRequest.Headers);
            if (httpContext.Features.Get<IMeshPeerIdentityFeature>() is { SpiffeId: { } peer, Certificate: { } certificate }
                && certificates.Current is { } own)
            {
                proxyRequest.Headers.TryAddWithoutValidation(ForwardedClientCert.HeaderName, ForwardedClientCert.Format(own.Id.ToString()!, certificate, peer));
            }
        }

        private static void RemoveUnderscoreSpellings(System.Net.Http.Headers.HttpRequestHeaders headers)
        {
            List<string>? spoofed = null;
            foreach (var (name, _) in headers.NonValidated)
            {
                if (name.Contains('_', StringComparison.Ordinal)
                    && name.Length == ForwardedClientCert.HeaderName.Length
                    && string.Equals(name.Replace('_', '-'), ForwardedClientCert.HeaderName, StringComparison.OrdinalIgnoreCase))
                {
                    (spoofed ??= []).Add(name);
                }
            }

            foreach (var name in spoofed ?? [])
            {
                headers.Remove(name);
            }
        }
    }
}
