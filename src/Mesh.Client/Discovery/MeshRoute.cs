using System.Collections.Immutable;
using System.Net.Http.Headers;
using Mesh.Client.Resilience;
using Mesh.Client.Xds;

namespace Mesh.Client.Discovery;

/// <summary>A cluster and its share of a route's traffic (RDS <c>weighted_clusters</c>).</summary>
internal readonly record struct WeightedCluster(MeshCluster Cluster, uint Weight);

/// <summary>
/// An RDS header matcher: a value matcher (null tests presence), optionally inverted. A missing header matches nothing, as
/// in Envoy, unless <paramref name="TreatMissingAsEmpty"/> (then its value is ""); only an inverted presence test matches it.
/// </summary>
internal sealed record HeaderMatch(string Name, StringMatch? Match, bool Invert, bool TreatMissingAsEmpty = false)
{
    /// <summary>Whether <paramref name="name"/> is a pseudo-header every request has and this client reads (Istio's method, authority, scheme; and :path).</summary>
    public static bool IsRequestPseudoHeader(string name) => name is ":method" or ":authority" or ":scheme" or ":path";

    /// <summary>
    /// Like <see cref="Matches(HttpHeaders)"/>; the pseudo-headers read the request as Envoy sees it from the app:
    /// <c>:method</c>, <c>:scheme</c> (of the request URI), <c>:authority</c> (the Host header the request sends),
    /// <c>:path</c> (path and query).
    /// </summary>
    public bool Matches(HttpRequestMessage request) => Matches(request, HasNoHeaders(request));

    /// <summary>
    /// Whether <paramref name="request"/> carries no header at all, on itself or its content (pseudo-headers aside): then
    /// every header matcher of a route table is decided without looking a name up (<see cref="Matches(HttpRequestMessage, bool)"/>).
    /// </summary>
    public static bool HasNoHeaders(HttpRequestMessage request) =>
        request.Headers.NonValidated.Count == 0 && (request.Content is null || request.Content.Headers.NonValidated.Count == 0);

    /// <summary>Like <see cref="Matches(HttpRequestMessage)"/>, for a request whose <see cref="HasNoHeaders"/> the caller read once for all matchers.</summary>
    public bool Matches(HttpRequestMessage request, bool noHeaders)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (noHeaders && (Name.Length == 0 || Name[0] != ':'))
        {
            return MatchesMissing();
        }

        if (Name.Length > 0 && Name[0] == ':')
        {
            var uri = request.RequestUri is { IsAbsoluteUri: true } absolute ? absolute : null;
            var value = Name switch
            {
                ":method" => request.Method.Method,
                ":scheme" => uri?.Scheme,
                ":authority" => uri is null ? null : Authority(request, uri),
                ":path" => uri is null ? null : uri.Query.Length == 0 ? uri.AbsolutePath : uri.PathAndQuery,
                _ => null,
            };
            return value is null ? Match is null && Invert : (Match is null || Match.Matches(value)) != Invert;
        }

        // Content-Type and the other content headers live on the content, not the request (a gRPC/REST split reads them).
        return request.Content is { } content && !request.Headers.NonValidated.Contains(Name) && content.Headers.NonValidated.Contains(Name)
            ? Matches(content.Headers)
            : Matches(request.Headers);
    }

    /// <summary>What the request sends as Host (HTTP/1) or :authority (HTTP/2): an explicit Host header, else the URI's host[:port].</summary>
    internal static string Authority(HttpRequestMessage request, Uri uri)
    {
        if (request.Headers.NonValidated.TryGetValues("Host", out var host) && host.Count > 0)
        {
            return host.ToString();
        }

        return uri.IsDefaultPort ? uri.IdnHost : uri.Authority;
    }

    // A header the request does not carry: only an inverted presence test matches it, or a value matcher that takes "".
    private bool MatchesMissing() => Match is null ? Invert : TreatMissingAsEmpty && Match.Matches(string.Empty) != Invert;

    public bool Matches(HttpHeaders headers)
    {
        ArgumentNullException.ThrowIfNull(headers);
        if (!headers.NonValidated.TryGetValues(Name, out var values))
        {
            return MatchesMissing();
        }

        // Several values of one header are matched as Envoy does: joined with ",".
        var matched = Match is null || Match.Matches(values.Count == 1 ? values.ToString() : string.Join(',', values));
        return matched != Invert;
    }
}

/// <summary>
/// An RDS query parameter matcher, with Envoy's reading of the request's query: split at '&amp;', each part at its first
/// '=' (no '=' is an empty value), nothing percent-decoded, and only the first part with the name counts. Without
/// <paramref name="Match"/> it tests presence (absence when <paramref name="Present"/> is false).
/// </summary>
internal sealed record QueryParameterMatch(string Name, StringMatch? Match, bool Present)
{
    /// <summary>Matches <paramref name="query"/>, the request URI's query with or without its leading '?'. Allocates nothing.</summary>
    public bool Matches(ReadOnlySpan<char> query)
    {
        if (!query.IsEmpty && query[0] == '?')
        {
            query = query[1..];
        }

        while (true)
        {
            var end = query.IndexOf('&');
            var part = end < 0 ? query : query[..end];
            var equals = part.IndexOf('=');
            var name = equals < 0 ? part : part[..equals];
            if (name.Equals(Name, StringComparison.Ordinal))
            {
                return Match is null ? Present : Match.Matches(equals < 0 ? ReadOnlySpan<char>.Empty : part[(equals + 1)..]);
            }

            if (end < 0)
            {
                return Match is null && !Present;
            }

            query = query[(end + 1)..];
        }
    }
}

/// <summary>An RDS route: a path match (prefix, exact path or full-path regex), optional header matches and weighted clusters.</summary>
internal sealed class MeshRoute
{
    private readonly uint _totalWeight;

    public MeshRoute(
        string? prefix,
        string? path,
        bool caseSensitive,
        ImmutableArray<WeightedCluster> clusters,
        ImmutableArray<HeaderMatch> headers = default,
        string? name = null,
        StringMatch? pathRegex = null,
        Routing.RouteFeatures? features = null)
    {
        if ((prefix is null ? 0 : 1) + (path is null ? 0 : 1) + (pathRegex is null ? 0 : 1) != 1)
        {
            throw new ArgumentException("Exactly one of prefix, path and pathRegex must be set.", nameof(prefix));
        }

        if (pathRegex is { Kind: not StringMatchKind.Regex })
        {
            throw new ArgumentException("pathRegex must be a regex matcher.", nameof(pathRegex));
        }

        // A redirect or direct response answers the request itself: it has no cluster.
        var local = features is { AnswersLocally: true };
        if (clusters.IsDefaultOrEmpty && !local)
        {
            throw new ArgumentException("A route needs at least one cluster.", nameof(clusters));
        }

        Prefix = prefix;
        Path = path;
        PathRegex = pathRegex;
        CaseSensitive = caseSensitive;
        Clusters = clusters.IsDefault ? [] : clusters;
        Features = features;
        Headers = headers.IsDefault ? [] : headers;
        Name = name ?? string.Empty;
        foreach (var cluster in Clusters)
        {
            _totalWeight += cluster.Weight;
        }

        if (_totalWeight == 0 && !local)
        {
            throw new ArgumentException("The cluster weights of a route must not add up to 0.", nameof(clusters));
        }

        MatchesAnyPath = prefix is { Length: 0 } || prefix == "/";
    }

    public string? Prefix { get; }

    public string? Path { get; }

    /// <summary>Gets RDS <c>safe_regex</c>: matched against the whole path; <see cref="CaseSensitive"/> does not apply (as in Envoy).</summary>
    public StringMatch? PathRegex { get; }

    public bool CaseSensitive { get; }

    public ImmutableArray<WeightedCluster> Clusters { get; }

    public ImmutableArray<HeaderMatch> Headers { get; }

    /// <summary>Gets RDS <c>query_parameters</c>, all of which must match.</summary>
    public ImmutableArray<QueryParameterMatch> QueryParameters { get; init; } = [];

    public string Name { get; }

    /// <summary>
    /// Gets the fault, mirrors, rewrites, header mutations, redirect or direct response of the route; null when it has none
    /// (then nothing of it is looked at per request). With a redirect or direct response, <see cref="Clusters"/> is empty.
    /// </summary>
    public Routing.RouteFeatures? Features { get; }

    /// <summary>Gets the route's timeout and retry policy from RDS; null when it sets neither (then <c>Mesh:Resilience</c> applies).</summary>
    public RouteResilience? Resilience { get; init; }

    /// <summary>Gets the route's <c>hash_policy</c> (the key a RING_HASH cluster picks by); null when it has none.</summary>
    public Routing.RouteHashPolicy? HashPolicy { get; init; }

    /// <summary>Gets whether the route matches every path, so the request path need not be read at all.</summary>
    public bool MatchesAnyPath { get; }

    public bool MatchesPath(ReadOnlySpan<char> requestPath)
    {
        if (MatchesAnyPath)
        {
            return true;
        }

        if (PathRegex is not null)
        {
            return PathRegex.Matches(requestPath);
        }

        var comparison = CaseSensitive ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        return Prefix is not null
            ? requestPath.StartsWith(Prefix, comparison)
            : requestPath.Equals(Path, comparison);
    }

    /// <summary>Whether every query parameter matcher matches <paramref name="query"/> (the request URI's <see cref="Uri.Query"/>).</summary>
    public bool MatchesQuery(ReadOnlySpan<char> query)
    {
        foreach (var parameter in QueryParameters)
        {
            if (!parameter.Matches(query))
            {
                return false;
            }
        }

        return true;
    }

    public bool MatchesHeaders(HttpRequestMessage request) => MatchesHeaders(request, HeaderMatch.HasNoHeaders(request));

    /// <summary>Like <see cref="MatchesHeaders(HttpRequestMessage)"/>, with <see cref="HeaderMatch.HasNoHeaders"/> read once by the caller for every route.</summary>
    public bool MatchesHeaders(HttpRequestMessage request, bool noHeaders)
    {
        ArgumentNullException.ThrowIfNull(request);
        foreach (var header in Headers)
        {
            if (!header.Matches(request, noHeaders))
            {
                return false;
            }
        }

        return true;
    }

    public bool MatchesHeaders(HttpRequestHeaders headers)
    {
        foreach (var header in Headers)
        {
            if (!header.Matches(headers))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Picks a cluster by weight; <paramref name="random"/> returns a value in [0, maxExclusive).</summary>
    public MeshCluster PickCluster(Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(random);
        if (Clusters.Length == 1)
        {
            return Clusters[0].Cluster;
        }

        var ticket = (uint)random((int)Math.Min(_totalWeight, int.MaxValue));
        foreach (var cluster in Clusters)
        {
            if (ticket < cluster.Weight)
            {
                return cluster.Cluster;
            }

            ticket -= cluster.Weight;
        }

        return Clusters[^1].Cluster;
    }
}
