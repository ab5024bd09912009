using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Mesh.Client.Discovery;

namespace Mesh.Client.Routing;

/// <summary>A share of requests, in parts per million (Envoy's <c>FractionalPercent</c> scaled to MILLION).</summary>
internal readonly record struct PerMillion(uint Value)
{
    public const uint Million = 1_000_000;

    public static PerMillion All => new(Million);

    /// <summary>Draws once: true for <see cref="Value"/> out of a million. <paramref name="random"/> returns [0, maxExclusive).</summary>
    public bool Hit(Func<int, int> random) => Value >= Million || (Value > 0 && (uint)random((int)Million) < Value);
}

/// <summary>Envoy fault filter per-route config: a fixed delay for a share of requests.</summary>
internal sealed record FaultDelay(TimeSpan Delay, PerMillion Share);

/// <summary>Envoy fault filter abort: an HTTP status, or a gRPC status (then <see cref="HttpStatus"/> is its HTTP mapping).</summary>
internal sealed record FaultAbort(int HttpStatus, int? GrpcStatus, PerMillion Share);

/// <summary>An RDS request mirror policy: a copy of a share of the route's requests goes to <see cref="Cluster"/>.</summary>
internal sealed record RouteMirror(MeshCluster Cluster, PerMillion Share);

/// <summary>A header mutation (<c>HeaderValueOption</c>): Envoy's append actions.</summary>
internal enum HeaderAppendAction
{
    AppendIfExistsOrAdd = 0,
    AddIfAbsent = 1,
    OverwriteIfExistsOrAdd = 2,
    OverwriteIfExists = 3,
}

internal sealed record HeaderMutation(string Name, string Value, HeaderAppendAction Action);

/// <summary>The headers a route adds, sets and removes on one side (request or response).</summary>
internal sealed class HeaderMutations(ImmutableArray<HeaderMutation> add, ImmutableArray<string> remove)
{
    public ImmutableArray<HeaderMutation> Add { get; } = add;

    public ImmutableArray<string> Remove { get; } = remove;

    /// <summary>As Envoy: removals first, then additions (so a route may replace a header it removes).</summary>
    public void Apply(System.Net.Http.Headers.HttpHeaders headers, System.Net.Http.Headers.HttpHeaders? contentHeaders)
    {
        foreach (var name in Remove)
        {
            headers.Remove(name);
            contentHeaders?.Remove(name);
        }

        foreach (var mutation in Add)
        {
            // Content headers (content-type…) live on the content; HttpHeaders refuses them on the message.
            var target = contentHeaders is not null && IsContentHeader(mutation.Name) ? contentHeaders : headers;
            var exists = target.NonValidated.Contains(mutation.Name);
            switch (mutation.Action)
            {
                case HeaderAppendAction.AddIfAbsent when exists:
                case HeaderAppendAction.OverwriteIfExists when !exists:
                    continue;
                case HeaderAppendAction.OverwriteIfExists:
                case HeaderAppendAction.OverwriteIfExistsOrAdd:
                    target.Remove(mutation.Name);
                    break;
            }

            target.TryAddWithoutValidation(mutation.Name, mutation.Value);
        }
    }

    private static bool IsContentHeader(string name) =>
        name.StartsWith("content-", StringComparison.OrdinalIgnoreCase) || string.Equals(name, "expires", StringComparison.OrdinalIgnoreCase)
        || string.Equals(name, "last-modified", StringComparison.OrdinalIgnoreCase) || string.Equals(name, "allow", StringComparison.OrdinalIgnoreCase);
}

/// <summary>An RDS <c>RedirectAction</c>: the parts of the request URL it replaces.</summary>
internal sealed record RouteRedirect(
    string? Scheme,
    string? Host,
    int Port,
    string? PathRedirect,
    string? PrefixRewrite,
    bool StripQuery,
    HttpStatusCode Status);

/// <summary>An RDS <c>DirectResponseAction</c>: a status and an optional body.</summary>
internal sealed record RouteDirectResponse(HttpStatusCode Status, byte[]? Body);

/// <summary>
/// What a route does besides picking a cluster: Envoy's fault filter override, request mirrors, path/authority rewrites,
/// header mutations, or answering itself (redirect, direct response). Parsed once per snapshot; null on a route that
/// sets none of them, so such routes cost nothing per request.
/// </summary>
internal sealed class RouteFeatures
{
    public FaultDelay? Delay { get; init; }

    public FaultAbort? Abort { get; init; }

    public ImmutableArray<RouteMirror> Mirrors { get; init; } = [];

    /// <summary>Gets RDS <c>prefix_rewrite</c>: replaces the matched prefix (or the whole path of a path or regex route).</summary>
    public string? PrefixRewrite { get; init; }

    /// <summary>Gets RDS <c>regex_rewrite</c>: every match in the path is replaced by <see cref="RegexSubstitution"/> (.NET syntax).</summary>
    public Regex? RegexRewrite { get; init; }

    public string? RegexSubstitution { get; init; }

    /// <summary>Gets RDS <c>host_rewrite_literal</c>: the Host/:authority the upstream sees.</summary>
    public string? HostRewrite { get; init; }

    public HeaderMutations? RequestHeaders { get; init; }

    public HeaderMutations? ResponseHeaders { get; init; }

    public RouteRedirect? Redirect { get; init; }

    public RouteDirectResponse? DirectResponse { get; init; }

    /// <summary>Gets whether the route answers the request itself and has no cluster.</summary>
    public bool AnswersLocally => Redirect is not null || DirectResponse is not null;

    /// <summary>Gets whether the request's URL or headers change before it is sent.</summary>
    public bool MutatesRequest => PrefixRewrite is not null || RegexRewrite is not null || HostRewrite is not null || RequestHeaders is not null;

    /// <summary>RE2's <c>\1</c> capture references as .NET's <c>${1}</c>; a literal <c>$</c> is escaped.</summary>
    public static string ToDotNetSubstitution(string re2)
    {
        ArgumentNullException.ThrowIfNull(re2);
        var result = new StringBuilder(re2.Length + 8);
        for (var i = 0; i < re2.Length; i++)
        {
            var c = re2[i];
            if (c == '\\' && i + 1 < re2.Length && char.IsAsciiDigit(re2[i + 1]))
            {
                result.Append("${").Append(re2[++i]).Append('}');
            }
            else if (c == '\\' && i + 1 < re2.Length && re2[i + 1] == '\\')
            {
                result.Append('\\');
                i++;
            }
            else if (c == '$')
            {
                result.Append("$$");
            }
            else
            {
                result.Append(c);
            }
        }

        return result.ToString();
    }

    /// <summary>The path (and query) the upstream sees, per <see cref="PrefixRewrite"/> or <see cref="RegexRewrite"/>; the query is kept.</summary>
    public string RewritePath(MeshRoute route, string path, string query)
    {
        ArgumentNullException.ThrowIfNull(route);
        if (RegexRewrite is not null)
        {
            return RegexRewrite.Replace(path, RegexSubstitution!) + query;
        }

        if (PrefixRewrite is null)
        {
            return path + query;
        }

        // Envoy replaces the matched prefix of a prefix route, and the whole path of an exact-path or regex route.
        var matched = route.Prefix is { } prefix ? Math.Min(prefix.Length, path.Length) : path.Length;
        return PrefixRewrite + path[matched..] + query;
    }

    /// <summary>Envoy's gRPC → HTTP status mapping for a local reply (grpc/common/status.cc).</summary>
    public static int GrpcToHttpStatus(int grpcStatus) => grpcStatus switch
    {
        0 => 200,
        1 => 499,
        3 or 9 or 11 => 400,
        4 => 504,
        5 => 404,
        6 or 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500,
    };

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"features(delay={Delay}, abort={Abort}, mirrors={Mirrors.Length}, local={AnswersLocally})");
}
