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

/// <summary>One <c>http[].match[]</c> block: its conditions are ANDed.</summary>
internal sealed record HttpMatchModel(
    string? Name,
    RouteStringMatch? Uri,
    bool IgnoreUriCase,
    RouteStringMatch? Method,
    ImmutableArray<RouteHeaderMatch> Headers,
    ImmutableArray<RouteHeaderMatch> WithoutHeaders);

/// <summary>One <c>http[].route[]</c> entry; <paramref name="Host"/> is fully qualified in the VirtualService's namespace.</summary>
internal sealed record RouteDestinationModel(string Host, string? Subset, uint? Port, uint Weight);

/// <summary><c>http[].retries</c>; <paramref name="RetryOn"/> is Istio's comma-separated list, as written.</summary>
internal sealed record HttpRetryModel(uint Attempts, TimeSpan? PerTryTimeout, string? RetryOn);

internal sealed record HttpRouteModel(
    string? Name,
    ImmutableArray<HttpMatchModel> Matches,
    ImmutableArray<RouteDestinationModel> Destinations,
    TimeSpan? Timeout,
    HttpRetryModel? Retries);

/// <summary>A mesh VirtualService (gateways absent or <c>mesh</c>); <paramref name="Hosts"/> are fully qualified.</summary>
internal sealed record VirtualServiceModel(string Namespace, string Name, ImmutableArray<string> Hosts, ImmutableArray<HttpRouteModel> Http);

/// <summary>A DestinationRule subset: the endpoints whose labels include <paramref name="Labels"/>.</summary>
internal sealed record SubsetModel(string Name, ImmutableSortedDictionary<string, string> Labels, LoadBalancerKind? LoadBalancer = null)
{
    /// <summary>The subset's own hash key when its <see cref="LoadBalancer"/> is <see cref="LoadBalancerKind.ConsistentHash"/>.</summary>
    public ConsistentHashModel? ConsistentHash { get; init; }
}
