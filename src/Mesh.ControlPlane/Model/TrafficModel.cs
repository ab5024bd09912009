using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>How a VirtualService string match compares (Istio <c>StringMatch</c>).</summary>
internal enum RouteStringMatchKind
{
    Exact,
    Prefix,

    /// <summary>RE2 syntax, matched against the whole string.</summary>
    Regex,
}

internal sealed record RouteStringMatch(RouteStringMatchKind Kind, string Value);

/// <summary>A header condition; <paramref name="Value"/> null means "the header is present".</summary>
internal sealed record RouteHeaderMatch(string Name, RouteStringMatch? Value);

/// <summary>A query parameter condition; <paramref name="Value"/> null means "the parameter is present".</summary>
internal sealed record RouteQueryParamMatch(string Name, RouteStringMatch? Value);

/// <summary>One <c>http[].match[]</c> block: its conditions are ANDed.</summary>
internal sealed record HttpMatchModel(
    string? Name,
    RouteStringMatch? Uri,
    bool IgnoreUriCase,
    RouteStringMatch? Method,
    ImmutableArray<RouteHeaderMatch> Headers,
    ImmutableArray<RouteHeaderMatch> WithoutHeaders)
{
    /// <summary>Gets <c>authority</c>: matched against <c>:authority</c> (the HTTP/1 Host header), as istiod translates it.</summary>
    public RouteStringMatch? Authority { get; init; }

    /// <summary>Gets <c>scheme</c>: matched against <c>:scheme</c>.</summary>
    public RouteStringMatch? Scheme { get; init; }

    /// <summary>
    /// Gets the pseudo-headers (<c>:method</c>, <c>:authority</c>, <c>:scheme</c>) whose match is <c>{}</c>: istiod sends
    /// them as present_match, in place of <see cref="Method"/>, <see cref="Authority"/> or <see cref="Scheme"/>.
    /// </summary>
    public ImmutableArray<string> PresentPseudoHeaders { get; init; } = [];

    /// <summary>Gets <c>queryParams</c>, sorted by name.</summary>
    public ImmutableArray<RouteQueryParamMatch> QueryParams { get; init; } = [];

    /// <summary>Gets <c>port</c>: the match block applies only to this service port (istiod leaves it out of other ports' routes).</summary>
    public uint? Port { get; init; }

    /// <summary>
    /// Gets <c>sourceLabels</c> and <c>sourceNamespace</c>: not a request condition but a selector of the calling workload,
    /// evaluated per client when its routes are built (as istiod does per proxy); null when the block selects every caller.
    /// </summary>
    public SourceSelector? Source { get; init; }
}

/// <summary>
/// A VirtualService match's <c>sourceLabels</c> + <c>sourceNamespace</c>: a caller is selected when its labels include
/// <see cref="Labels"/> and (when set) its namespace is <see cref="Namespace"/> — istiod's sourceMatchHTTP.
/// </summary>
internal sealed record SourceSelector(ImmutableSortedDictionary<string, string> Labels, string? Namespace)
{
    /// <summary>Gets a canonical text of the selector: equal selectors (whatever their YAML order) have equal keys.</summary>
    public string Key { get; } = $"{Namespace}|{string.Join(',', Labels.Select(l => $"{l.Key}={l.Value}"))}";

    public bool Selects(string clientNamespace, IReadOnlyDictionary<string, string> clientLabels)
    {
        ArgumentNullException.ThrowIfNull(clientLabels);
        if (Namespace is not null && !string.Equals(Namespace, clientNamespace, StringComparison.Ordinal))
        {
            return false;
        }

        foreach (var (key, value) in Labels)
        {
            if (!clientLabels.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    public bool Equals(SourceSelector? other) => other is not null && string.Equals(Key, other.Key, StringComparison.Ordinal);

    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Key);
}

/// <summary>One <c>http[].route[]</c> entry; <paramref name="Host"/> is fully qualified in the VirtualService's namespace.</summary>
internal sealed record RouteDestinationModel(string Host, string? Subset, uint? Port, uint Weight);

/// <summary><c>http[].retries</c>; <paramref name="RetryOn"/> is Istio's comma-separated list, as written.</summary>
/// <summary>
/// A VirtualService's <c>retries</c>. <paramref name="Backoff"/> is Envoy's retry_back_off base interval;
/// <paramref name="IgnorePreviousHosts"/> is an explicit <c>retryIgnorePreviousHosts: true</c> (Mesh clients always avoid
/// earlier hosts; standard clients get the previous_hosts predicate even on a consistent-hash route, as from istiod).
/// </summary>
internal sealed record HttpRetryModel(uint Attempts, TimeSpan? PerTryTimeout, string? RetryOn, TimeSpan? Backoff = null, bool IgnorePreviousHosts = false);

internal sealed record HttpRouteModel(
    string? Name,
    ImmutableArray<HttpMatchModel> Matches,
    ImmutableArray<RouteDestinationModel> Destinations,
    TimeSpan? Timeout,
    HttpRetryModel? Retries)
{
    /// <summary>Gets <c>fault</c>: injected before the request is routed, as Envoy's fault filter does.</summary>
    public HttpFaultModel? Fault { get; init; }

    /// <summary>Gets <c>mirror</c> + <c>mirrorPercentage</c>, or <c>mirrors[]</c>.</summary>
    public ImmutableArray<HttpMirrorModel> Mirrors { get; init; } = [];

    public HttpRewriteModel? Rewrite { get; init; }

    public HttpHeadersModel? Headers { get; init; }

    /// <summary>Gets <c>redirect</c>; then <see cref="Destinations"/> is empty.</summary>
    public HttpRedirectModel? Redirect { get; init; }

    /// <summary>Gets <c>directResponse</c>; then <see cref="Destinations"/> is empty.</summary>
    public HttpDirectResponseModel? DirectResponse { get; init; }
}

/// <summary><c>http[].fault</c>: at least one of delay and abort.</summary>
internal sealed record HttpFaultModel(FaultDelayModel? Delay, FaultAbortModel? Abort);

/// <summary><c>fault.delay</c>; <paramref name="Percent"/> in [0, 100] (0 when the VirtualService gives none: nothing is delayed).</summary>
internal sealed record FaultDelayModel(TimeSpan FixedDelay, double Percent);

/// <summary><c>fault.abort</c>: exactly one of an HTTP status and a gRPC status code; <paramref name="Percent"/> as for a delay.</summary>
internal sealed record FaultAbortModel(uint? HttpStatus, uint? GrpcStatus, double Percent);

/// <summary>A mirror destination and the share of requests copied to it (100 when the VirtualService gives none).</summary>
internal sealed record HttpMirrorModel(RouteDestinationModel Destination, double Percent);

/// <summary><c>http[].rewrite</c>: at most one of <paramref name="Uri"/> and a regex rewrite.</summary>
internal sealed record HttpRewriteModel(string? Uri, string? RegexMatch, string? RegexSubstitution, string? Authority);

/// <summary>One side's <c>set</c>, <c>add</c> and <c>remove</c>, sorted by header name.</summary>
internal sealed record HeaderOperationsModel(
    ImmutableArray<KeyValuePair<string, string>> Set,
    ImmutableArray<KeyValuePair<string, string>> Add,
    ImmutableArray<string> Remove);

/// <summary><c>http[].headers</c>; a request <c>:authority</c>/<c>host</c> in set or add is <paramref name="Authority"/> (a host rewrite).</summary>
internal sealed record HttpHeadersModel(HeaderOperationsModel? Request, HeaderOperationsModel? Response, string? Authority);

/// <summary><c>http[].redirect</c>; <paramref name="Code"/> is one of 301, 302, 303, 307, 308.</summary>
/// <summary>A VirtualService <c>redirect</c>; <paramref name="PrefixRewrite"/> replaces the matched URI prefix (Envoy's prefix_rewrite), in place of <paramref name="Uri"/>.</summary>
internal sealed record HttpRedirectModel(string? Uri, string? Authority, uint? Port, string? Scheme, uint Code, string? PrefixRewrite = null);

/// <summary><c>http[].directResponse</c>: the status and the body, if any.</summary>
internal sealed record HttpDirectResponseModel(uint Status, byte[]? Body);

/// <summary>A mesh VirtualService (gateways absent or <c>mesh</c>); <paramref name="Hosts"/> are fully qualified.</summary>
internal sealed record VirtualServiceModel(string Namespace, string Name, ImmutableArray<string> Hosts, ImmutableArray<HttpRouteModel> Http)
{
    /// <summary>
    /// Gets the one namespace the VirtualService is exported to (<c>exportTo: ["."]</c>; its matches then carry that
    /// <c>sourceNamespace</c>); null when every namespace sees it.
    /// </summary>
    public string? ExportedTo { get; init; }
}

/// <summary>A DestinationRule subset: the endpoints whose labels include <paramref name="Labels"/>.</summary>
internal sealed record SubsetModel(string Name, ImmutableSortedDictionary<string, string> Labels, LoadBalancerKind? LoadBalancer = null)
{
    /// <summary>The subset's own hash key when its <see cref="LoadBalancer"/> is <see cref="LoadBalancerKind.ConsistentHash"/>.</summary>
    public ConsistentHashModel? ConsistentHash { get; init; }
    /// <summary>Gets the subset's own traffic policy (merged over the rule's as istiod does); null when it sets none.</summary>
    public TrafficPolicyModel? Traffic { get; init; }
}
