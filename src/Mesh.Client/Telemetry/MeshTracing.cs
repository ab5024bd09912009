using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Runtime.CompilerServices;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The mesh's spans and the attributes it adds to .NET's own (docs/telemetry/tracing.md). Outbound, one
/// <see cref="AttemptActivityName"/> span (kind Internal) per attempt the mesh routes to an endpoint: the parent of that
/// attempt's <c>System.Net.Http</c> client span, carrying what the mesh decided (service, route, cluster, subset,
/// endpoint, attempt, retry reason, peer identity) while the HTTP semantics stay on .NET's span. Inbound, no span of its
/// own: ASP.NET Core's server span gets the authorization decision and the caller's identity.
/// </summary>
/// <remarks>
/// Nothing here runs unless the mesh's <see cref="ActivitySource"/> has a listener (<see cref="IsEnabled"/>, one volatile
/// read); attributes are added only to activities that record (<see cref="Activity.IsAllDataRequested"/>), so a
/// sampled-out request builds no tags.
/// </remarks>
internal static class MeshTracing
{
    /// <summary>The name of the span of one outbound attempt.</summary>
    public const string AttemptActivityName = "mesh.attempt";

    /// <summary>The mesh service's host (its FQDN).</summary>
    public const string Service = "mesh.service";

    /// <summary>The name of the VirtualService route the attempt was matched to (absent when the route has none).</summary>
    public const string Route = "mesh.route";

    /// <summary>The Envoy cluster the attempt went to (Istio's <c>outbound|port|subset|host</c>).</summary>
    public const string Cluster = "mesh.cluster";

    /// <summary>The DestinationRule subset of the cluster, when it is one.</summary>
    public const string Subset = "mesh.subset";

    /// <summary>The 1-based number of the attempt within the request.</summary>
    public const string Attempt = "mesh.attempt";

    /// <summary>What failed the previous attempt (an <c>error.type</c> value), on attempts after the first.</summary>
    public const string RetryReason = "mesh.retry.reason";

    /// <summary>The peer's SPIFFE ID: outbound the server's, verified by the mTLS handshake; inbound the caller's.</summary>
    public const string PeerSpiffeId = "mesh.peer.spiffe_id";

    /// <summary>The inbound authorization decision: <c>allow</c> or <c>deny</c>.</summary>
    public const string AuthzDecision = "mesh.authz.decision";

    /// <summary>Why an inbound request was denied: the DENY policy that matched, or what was missing.</summary>
    public const string AuthzPolicy = "mesh.authz.policy";

    // OpenTelemetry semantic-convention names (server, error and HTTP attribute registries).
    public const string ServerAddress = "server.address";
    public const string ServerPort = "server.port";
    public const string ErrorType = "error.type";
    public const string ResendCount = "http.request.resend_count";

    public const string Allow = "allow";
    public const string Deny = "deny";

    // The attempt number and retry reason of requests the mesh's resilience handler retried, for the next attempt's span.
    // A weak table, not request.Options (which allocates its dictionary): a request that is never retried adds nothing.
    private static readonly ConditionalWeakTable<HttpRequestMessage, RetryState> Retries = [];

    /// <summary>Gets whether anything listens to the mesh's spans: the only work the hot path does while nothing does.</summary>
    public static bool IsEnabled => MeshTelemetry.ActivitySource.HasListeners();

    /// <summary>Notes that <paramref name="request"/> is about to be sent again as its 0-based <paramref name="attempt"/>.</summary>
    public static void OnRetry(HttpRequestMessage request, int attempt, string reason) =>
        Retries.AddOrUpdate(request, new RetryState(attempt, reason));

    /// <summary>Gets the 0-based attempt <paramref name="request"/> is on and what failed the previous one; (0, null) before any retry.</summary>
    public static (int Attempt, string? Reason) RetryOf(HttpRequestMessage request) =>
        Retries.TryGetValue(request, out var state) ? (state.Attempt, state.Reason) : (0, null);

    /// <summary>
    /// Starts the span of one attempt as the current activity, so that the attempt's <c>System.Net.Http</c> span becomes
    /// its child. Null when no listener samples it in.
    /// </summary>
    public static Activity? StartAttempt(
        HttpRequestMessage request,
        MeshService service,
        MeshCluster cluster,
        MeshEndpoint endpoint,
        int attempt,
        string? retryReason)
    {
        // Under a caller's span that is not recorded (the parent-based sampler, OpenTelemetry's default, dropped this
        // trace), no child would be recorded either: an attempt span would be built only to be thrown away, one Activity per
        // attempt on the 90 % of requests a 10 % sampler drops. .NET's own span of the attempt still carries the trace
        // context to the endpoint, parented to the caller's span.
        if (Activity.Current is { Recorded: false })
        {
            return null;
        }

        var activity = MeshTelemetry.ActivitySource.StartActivity(AttemptActivityName, ActivityKind.Internal);
        if (activity is not { IsAllDataRequested: true })
        {
            return activity;
        }

        activity.SetTag(Service, service.Host);
        if (request.RequestUri is { } uri && MeshRouter.MatchRoute(service, request, uri) is { Name.Length: > 0 } route)
        {
            activity.SetTag(Route, route.Name);
        }

        activity.SetTag(Cluster, cluster.Name);
        if (SubsetOf(cluster.Name) is { } subset)
        {
            activity.SetTag(Subset, subset);
        }

        activity.SetTag(ServerAddress, endpoint.Address);
        activity.SetTag(ServerPort, endpoint.Port);
        activity.SetTag(Attempt, attempt + 1);
        if (attempt > 0)
        {
            // Semantic conventions: set on resends only, the ordinal of the resend.
            activity.SetTag(ResendCount, attempt);
            if (retryReason is not null)
            {
                activity.SetTag(RetryReason, retryReason);
            }
        }

        return activity;
    }

    /// <summary>Ends an attempt span that got a response; a 5xx fails the attempt (what outlier detection and retries count).</summary>
    public static void EndAttempt(Activity activity, HttpResponseMessage response, string? peer)
    {
        if (activity.IsAllDataRequested)
        {
            if (peer is not null)
            {
                activity.SetTag(PeerSpiffeId, peer);
            }

            var code = (int)response.StatusCode;
            if (code >= 500)
            {
                activity.SetTag(ErrorType, StatusCodeText(code));
                activity.SetStatus(ActivityStatusCode.Error);
            }
        }

        activity.Stop();
    }

    /// <summary>Ends an attempt span that failed without a response.</summary>
    public static void FailAttempt(Activity activity, Exception exception, bool timedOut)
    {
        if (activity.IsAllDataRequested)
        {
            activity.SetTag(ErrorType, ErrorTypeOf(null, exception, timedOut));
            activity.SetStatus(ActivityStatusCode.Error, exception.Message);
        }

        activity.Stop();
    }

    /// <summary>
    /// What failed an attempt, as OpenTelemetry's <c>error.type</c> for HTTP spells it: the status code of a 5xx
    /// response; <c>timeout</c> for an attempt timeout; .NET's <see cref="HttpRequestError"/> in snake case (as
    /// System.Net.Http's own spans report it); else the exception's type.
    /// </summary>
    public static string ErrorTypeOf(HttpResponseMessage? response, Exception? exception, bool timedOut)
    {
        if (timedOut)
        {
            return "timeout";
        }

        if (exception is null)
        {
            return response is null ? "_OTHER" : StatusCodeText((int)response.StatusCode);
        }

        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: not HttpRequestError.Unknown } http)
            {
                return http.HttpRequestError switch
                {
                    HttpRequestError.NameResolutionError => "name_resolution_error",
                    HttpRequestError.ConnectionError => "connection_error",
                    HttpRequestError.SecureConnectionError => "secure_connection_error",
                    HttpRequestError.HttpProtocolError => "http_protocol_error",
                    HttpRequestError.ExtendedConnectNotSupported => "extended_connect_not_supported",
                    HttpRequestError.VersionNegotiationError => "version_negotiation_error",
                    HttpRequestError.UserAuthenticationError => "user_authentication_error",
                    HttpRequestError.ProxyTunnelError => "proxy_tunnel_error",
                    HttpRequestError.InvalidResponse => "invalid_response",
                    HttpRequestError.ResponseEnded => "response_ended",
                    HttpRequestError.ConfigurationLimitExceeded => "configuration_limit_exceeded",
                    _ => "_OTHER",
                };
            }
        }

        return exception.GetType().FullName ?? "_OTHER";
    }

    /// <summary>Tags ASP.NET Core's server span with the inbound authorization decision (no span of the mesh's own).</summary>
    public static void TagInbound(bool allowed, string? policy, string? caller)
    {
        if (Activity.Current is not { IsAllDataRequested: true } activity)
        {
            return;
        }

        activity.SetTag(AuthzDecision, allowed ? Allow : Deny);
        if (!allowed && policy is not null)
        {
            activity.SetTag(AuthzPolicy, policy);
        }

        if (caller is not null)
        {
            activity.SetTag(PeerSpiffeId, caller);
        }
    }

    /// <summary>The subset of an Istio cluster name <c>outbound|port|subset|host</c>; null when it has none.</summary>
    internal static string? SubsetOf(string cluster)
    {
        var span = cluster.AsSpan();
        var first = span.IndexOf('|');
        if (first < 0)
        {
            return null;
        }

        var rest = span[(first + 1)..];
        var second = rest.IndexOf('|');
        if (second < 0)
        {
            return null;
        }

        rest = rest[(second + 1)..];
        var third = rest.IndexOf('|');
        return third > 0 ? rest[..third].ToString() : null;
    }

    private sealed record RetryState(int Attempt, string Reason);

    private static string StatusCodeText(int code) =>
        code is >= 100 and < 600 ? StatusCodes.Texts[code - 100] : code.ToString(CultureInfo.InvariantCulture);

    // Apart from the activity source so that the strings are made when a span first needs one, not at the first check.
    private static class StatusCodes
    {
        public static readonly string[] Texts = Enumerable.Range(100, 500).Select(code => code.ToString(CultureInfo.InvariantCulture)).ToArray();
    }
}
