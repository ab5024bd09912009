using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Matching;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>VirtualService (mesh traffic) and DestinationRule subsets; every field Mesh does not apply is an error.</summary>
internal static partial class YamlConfigLoader
{
    private static readonly System.Buffers.SearchValues<char> DurationNumber = System.Buffers.SearchValues.Create("0123456789.");
    private static readonly System.Buffers.SearchValues<char> QueryNameDelimiters = System.Buffers.SearchValues.Create("&=#?");

    private static readonly string[] VirtualServiceFields = ["hosts", "gateways", "http", "exportTo"];
    private static readonly string[] HttpRouteFields =
    [
        "name", "match", "route", "timeout", "retries", "fault", "mirror", "mirrorPercentage", "mirrorPercent", "mirrors", "rewrite", "headers",
        "redirect", "directResponse",
    ];
    private static readonly string[] HttpMatchFields =
    [
        "name", "uri", "scheme", "method", "authority", "headers", "port", "sourceLabels", "gateways", "queryParams", "ignoreUriCase",
        "withoutHeaders", "sourceNamespace", "statPrefix",
    ];

    /// <summary>The pseudo-headers a request has and Mesh clients read (Istio also accepts <c>:status</c>, which no request carries).</summary>
    private static readonly string[] RequestPseudoHeaders = [":method", ":authority", ":scheme", ":path"];
    private static readonly string[] RouteDestinationFields = ["destination", "weight"];
    private static readonly string[] DestinationFields = ["host", "subset", "port"];
    private static readonly string[] RetryFields = ["attempts", "perTryTimeout", "retryOn", "backoff", "retryIgnorePreviousHosts", "retryRemoteLocalities"];
    private static readonly string[] SubsetFields = ["name", "labels", "trafficPolicy"];

    /// <summary>Istio's accepted <c>retryOn</c> policies (agent/validation.go); HTTP status codes are accepted besides.</summary>
    private static readonly string[] RetryOnPolicies =
    [
        "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx", "refused-stream", "retriable-status-codes",
        "envoy-ratelimited", "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
    ];

    /// <summary>The most retries a Mesh client applies (its RDS decoder NACKs more, as Mesh:Resilience:MaxRetryAttempts is bounded).</summary>
    private const uint MaxRetryAttempts = 10;

    /// <summary>
    /// A VirtualService for mesh traffic; null (with a warning) when its <c>gateways</c> do not name <c>mesh</c>: in Istio it
    /// then binds to those ingress gateways only, and Mesh has none, so it applies to no Mesh client (as to no sidecar).
    /// </summary>
    private static VirtualServiceModel? ParseVirtualService(ResourceContext ctx, YamlMappingNode spec, string ns, string name, List<DestinationReference> references)
    {
        var errorsBefore = ctx.ErrorCount;
        RejectUnsupportedFields(ctx, spec, "spec", VirtualServiceFields);
        var namespaceOnly = ParseExportTo(ctx, spec, ns, namespaceScopeApplies: true);
        if (!AppliesToMesh(ctx, spec, "spec.gateways"))
        {
            return null;
        }

        var hosts = new List<string>();
        var hostsNode = ctx.Sequence(Child(spec, "hosts"), spec, "spec.hosts", required: true);
        for (var i = 0; hostsNode is not null && i < hostsNode.Children.Count; i++)
        {
            var host = ctx.String(hostsNode.Children[i], $"spec.hosts[{i}]");
            if (string.IsNullOrEmpty(host) || !IsHostName(host))
            {
                ctx.Error(hostsNode.Children[i], $"spec.hosts[{i}]", $"'{host}' must be a DNS name (wildcards are not supported)");
                continue;
            }

            var fqdn = HostNames.Qualify(host, ns, ctx.ClusterDomain);
            if (hosts.Contains(fqdn))
            {
                ctx.Error(hostsNode.Children[i], $"spec.hosts[{i}]", $"duplicate host {fqdn}");
                continue;
            }

            hosts.Add(fqdn);
            references.Add(new DestinationReference(Line(hostsNode.Children[i]), $"spec.hosts[{i}]", fqdn, Subset: null, Port: null, IsVirtualServiceHost: true));
        }

        if (hostsNode is { Children.Count: 0 })
        {
            ctx.Error(hostsNode, "spec.hosts", "must list at least one host");
        }

        var http = ImmutableArray.CreateBuilder<HttpRouteModel>();
        var httpNode = ctx.Sequence(Child(spec, "http"), spec, "spec.http", required: true);
        for (var i = 0; httpNode is not null && i < httpNode.Children.Count; i++)
        {
            var path = $"spec.http[{i}]";
            var routeNode = ctx.Mapping(httpNode.Children[i], httpNode, path, required: true);
            if (routeNode is not null && ParseHttpRoute(ctx, routeNode, path, ns, references) is { } route)
            {
                http.Add(route);
            }
        }

        if (httpNode is { Children.Count: 0 })
        {
            ctx.Error(httpNode, "spec.http", "must list at least one route");
        }
        else if (httpNode is not null && http.Count == 0 && ctx.ErrorCount == errorsBefore)
        {
            // Every route was bound to gateways only: nothing is left for mesh traffic, which keeps its default route.
            ctx.Warn(httpNode, "spec.http", "every route's matches name gateways only: no route applies to mesh traffic, so no Mesh client applies this VirtualService");
            return null;
        }

        if (namespaceOnly && http.Count > 0)
        {
            ScopeToNamespace(ctx, http, Child(spec, "exportTo")!, ns);
            if (http.Count == 0)
            {
                return null;
            }
        }

        return new VirtualServiceModel(ns, name, [.. hosts], http.ToImmutable()) { ExportedTo = namespaceOnly ? ns : null };
    }

    /// <summary>
    /// <c>exportTo: ["."]</c>: the VirtualService is visible to clients of its own namespace only (istiod leaves it out of
    /// other namespaces' routes, which keep the service's default route). Applied as a <c>sourceNamespace</c> on every match
    /// block, so the per-caller routes (<see cref="SourceSelector"/>) leave it out for other namespaces, as istiod does.
    /// </summary>
    private static void ScopeToNamespace(ResourceContext ctx, ImmutableArray<HttpRouteModel>.Builder http, YamlNode exportTo, string ns)
    {
        for (var i = http.Count - 1; i >= 0; i--)
        {
            var route = http[i];
            var matches = route.Matches.IsEmpty
                ? [new HttpMatchModel(null, null, false, null, [], []) { Source = new SourceSelector(ImmutableSortedDictionary<string, string>.Empty, ns) }]
                : route.Matches
                    .Where(m => m.Source?.Namespace is null || m.Source.Namespace == ns)
                    .Select(m => m with { Source = new SourceSelector(m.Source?.Labels ?? ImmutableSortedDictionary<string, string>.Empty, ns) })
                    .ToImmutableArray();
            if (matches.Length < route.Matches.Length)
            {
                ctx.Warn(exportTo, "spec.exportTo", $"route {(route.Name is { Length: > 0 } name ? name : i.ToString(CultureInfo.InvariantCulture))}: a match with a sourceNamespace other than {ns} selects no caller that can see this VirtualService (exported to {ns} only), so it is left out");
            }

            if (matches.IsEmpty)
            {
                http.RemoveAt(i);
            }
            else
            {
                http[i] = route with { Matches = matches };
            }
        }
    }

    /// <summary>
    /// Istio's <c>gateways</c> of a VirtualService: absent or empty means <c>mesh</c>. A list naming <c>mesh</c> applies to
    /// mesh traffic, and its ingress gateways (which Mesh does not have) get a warning naming them; a list without
    /// <c>mesh</c> binds the VirtualService to gateways only: false, with a warning that it is not applied.
    /// </summary>
    private static bool AppliesToMesh(ResourceContext ctx, YamlMappingNode node, string path)
    {
        var gateways = ctx.Sequence(Child(node, "gateways"), node, path, required: false);
        if (gateways is not { Children.Count: > 0 })
        {
            return true;
        }

        var names = new List<string>();
        for (var i = 0; i < gateways.Children.Count; i++)
        {
            names.Add(ctx.String(gateways.Children[i], $"{path}[{i}]") ?? string.Empty);
        }

        var others = names.Where(n => n != "mesh").ToArray();
        if (others.Length == names.Count)
        {
            ctx.Warn(gateways, path, $"names no 'mesh' ({string.Join(", ", others)}): in Istio it binds to those ingress gateways only, which Mesh does not have, so no Mesh client applies it");
            return false;
        }

        if (others.Length > 0)
        {
            ctx.Warn(gateways, path, $"ingress gateways {string.Join(", ", others)} are not Mesh's (it has none): applied to mesh traffic only, as its 'mesh' entry says");
        }

        return true;
    }

    /// <summary>
    /// Istio's <c>exportTo</c>: <c>*</c> (every namespace) is the default and what Mesh does. With
    /// <paramref name="namespaceScopeApplies"/>, <c>.</c> (or the resource's own namespace) alone is visibility in that
    /// namespace only: true, and the caller scopes the resource. Other visibilities (another namespace, <c>~</c>) are not
    /// implemented, and applying the resource mesh-wide instead would route other namespaces by it: an error naming the field.
    /// </summary>
    private static bool ParseExportTo(ResourceContext ctx, YamlMappingNode spec, string ns, bool namespaceScopeApplies)
    {
        var exportTo = ctx.Sequence(Child(spec, "exportTo"), spec, "spec.exportTo", required: false);
        if (exportTo is null)
        {
            return false;
        }

        var values = new List<string?>();
        for (var i = 0; i < exportTo.Children.Count; i++)
        {
            values.Add(ctx.String(exportTo.Children[i], $"spec.exportTo[{i}]"));
        }

        // '*' makes the others redundant: every namespace sees it.
        if (values.Contains("*"))
        {
            return false;
        }

        // Every entry that cannot be applied is reported, not only the first.
        var applies = values.Count > 0;
        for (var i = 0; i < values.Count; i++)
        {
            var value = values[i];
            if (value != "." && value != ns)
            {
                ctx.Error(exportTo.Children[i], $"spec.exportTo[{i}]", $"'{value}' is not supported yet: Mesh makes a resource visible to every namespace ('*', Istio's default){(namespaceScopeApplies ? " or to its own ('.')" : string.Empty)}; remove exportTo or set [\"*\"]");
                applies = false;
            }
            else if (!namespaceScopeApplies)
            {
                // Cluster policies are the same for every client: a DestinationRule cannot be left out for other namespaces.
                ctx.Error(exportTo.Children[i], $"spec.exportTo[{i}]", $"'{value}' is not supported yet: Mesh applies a DestinationRule to the clients of every namespace ('*', Istio's default); remove exportTo or set [\"*\"]");
                applies = false;
            }
        }

        return applies;
    }

    private static HttpRouteModel? ParseHttpRoute(ResourceContext ctx, YamlMappingNode node, string path, string ns, List<DestinationReference> references)
    {
        RejectUnsupportedFields(ctx, node, path, HttpRouteFields);
        var routeName = ctx.String(Child(node, "name"), $"{path}.name");

        var matches = ImmutableArray.CreateBuilder<HttpMatchModel>();
        var matchNode = ctx.Sequence(Child(node, "match"), node, $"{path}.match", required: false);
        var gatewayOnly = 0;
        for (var i = 0; matchNode is not null && i < matchNode.Children.Count; i++)
        {
            var matchPath = $"{path}.match[{i}]";
            var match = ctx.Mapping(matchNode.Children[i], matchNode, matchPath, required: true);
            if (match is null)
            {
                continue;
            }

            // As istiod for a sidecar: a match bound to gateways only is left out (and a route whose every match is, too).
            if (!AppliesToMesh(ctx, match, $"{matchPath}.gateways"))
            {
                gatewayOnly++;
                continue;
            }

            matches.Add(ParseHttpMatch(ctx, match, matchPath));
        }

        if (gatewayOnly > 0 && gatewayOnly == matchNode!.Children.Count)
        {
            return null;
        }

        var destinations = ImmutableArray.CreateBuilder<RouteDestinationModel>();
        var firstReference = references.Count;

        // A redirect or a direct response answers the request itself: Istio wants no route then, and one of the three otherwise.
        var answersLocally = Child(node, "redirect") is not null || Child(node, "directResponse") is not null;
        if (!answersLocally && Child(node, "route") is null)
        {
            ctx.Error(node, $"{path}.route", "is required (or redirect, or directResponse)");
        }

        var routeNode = ctx.Sequence(Child(node, "route"), node, $"{path}.route", required: false);
        if (routeNode is { Children.Count: 0 })
        {
            ctx.Error(routeNode, $"{path}.route", "must list at least one destination");
        }

        for (var i = 0; routeNode is not null && i < routeNode.Children.Count; i++)
        {
            var destinationPath = $"{path}.route[{i}]";
            var item = ctx.Mapping(routeNode.Children[i], routeNode, destinationPath, required: true);
            if (item is not null && ParseRouteDestination(ctx, item, destinationPath, ns, references) is { } destination)
            {
                destinations.Add(destination);
            }
        }

        // Istio ≥ 1.15: weights need not sum to 100, but with two or more destinations their sum must be above 0.
        if (routeNode is { Children.Count: >= 2 } && destinations.Count == routeNode.Children.Count && destinations.All(d => d.Weight == 0))
        {
            ctx.Error(routeNode, $"{path}.route", "total destination weight = 0; give at least one destination a weight above 0");
        }

        // Envoy and gRPC clients NACK a weighted_clusters sum above UINT32_MAX, with the whole route config.
        var total = destinations.Aggregate(0UL, (sum, d) => sum + d.Weight);
        if (routeNode is not null && total > uint.MaxValue)
        {
            ctx.Error(routeNode, $"{path}.route", $"total destination weight {total} is more than {uint.MaxValue}");
        }

        var timeoutNode = Child(node, "timeout");
        var timeout = timeoutNode is null ? null : ParseRouteDuration(ctx, timeoutNode, $"{path}.timeout");
        HttpRetryModel? retries = null;
        if (ctx.Mapping(Child(node, "retries"), node, $"{path}.retries", required: false) is { } retriesNode)
        {
            retries = ParseRetries(ctx, retriesNode, $"{path}.retries", timeout);
        }

        var route = ParseRouteFeatures(ctx, node, path, ns, references, new HttpRouteModel(routeName, matches.ToImmutable(), destinations.ToImmutable(), timeout, retries));

        // The request ports this route's destinations (and mirrors) are reached on: a destination without port takes the
        // request's port, as istiod's GetDestinationCluster, so CheckVirtualServices needs to know which ports those are.
        if (!matches.Any(m => m.Port is null) && matches.Count > 0)
        {
            ImmutableArray<uint> requestPorts = [.. matches.Select(m => m.Port!.Value).Distinct()];
            for (var i = firstReference; i < references.Count; i++)
            {
                references[i] = references[i] with { RequestPorts = requestPorts };
            }
        }

        return route;
    }

    private static HttpMatchModel ParseHttpMatch(ResourceContext ctx, YamlMappingNode node, string path)
    {
        RejectUnsupportedFields(ctx, node, path, HttpMatchFields);
        var uri = ParseStringMatch(ctx, Child(node, "uri"), node, $"{path}.uri", allowPresence: false);
        if (uri is { Kind: RouteStringMatchKind.Prefix, Value: "" })
        {
            ctx.Error(Child(node, "uri")!, $"{path}.uri.prefix", "must not be empty (omit uri to match every path)");
        }

        var method = ParseStringMatch(ctx, Child(node, "method"), node, $"{path}.method", allowPresence: true);
        var authority = ParseStringMatch(ctx, Child(node, "authority"), node, $"{path}.authority", allowPresence: true);
        var scheme = ParseStringMatch(ctx, Child(node, "scheme"), node, $"{path}.scheme", allowPresence: true);
        var present = ImmutableArray.CreateBuilder<string>();
        foreach (var (field, value) in new[] { ("method", method), ("authority", authority), ("scheme", scheme) })
        {
            var fieldNode = Child(node, field);
            RejectEmptyPattern(ctx, fieldNode, $"{path}.{field}", value);
            if (fieldNode is YamlMappingNode { Children.Count: 0 })
            {
                // istiod's translateHeaderMatch: a StringMatch without exact, prefix or regex is a present_match.
                present.Add(":" + field);
            }
            else if (value is null && fieldNode is YamlMappingNode { Children.Count: 1 } star && Child(star, "regex") is YamlScalarNode { Value: "*" } regex)
            {
                // A regex "*" is not RE2: Istio's validation refuses it here (only header and query matches take it).
                ctx.Error(regex, $"{path}.{field}.regex", "'*' is not a valid RE2 regex; use {} to match any value");
            }
        }

        if (Child(node, "statPrefix") is { } statPrefix)
        {
            // Istio: for stats only. Mesh clients keep no per-route stats, so it changes nothing here; said, not silently dropped.
            ctx.Warn(statPrefix, $"{path}.statPrefix", "is ignored: Mesh clients keep no per-route statistics (routing is unaffected)");
        }

        uint? port = null;
        if (Child(node, "port") is { } portNode)
        {
            port = ctx.Port(portNode, node, $"{path}.port", required: false);
        }

        var source = ParseSourceSelector(ctx, node, path);
        var ignoreCase = false;
        if (Child(node, "ignoreUriCase") is { } ignoreNode)
        {
            var text = ctx.String(ignoreNode, $"{path}.ignoreUriCase");
            if (!bool.TryParse(text, out ignoreCase))
            {
                ctx.Error(ignoreNode, $"{path}.ignoreUriCase", $"must be true or false (got '{text}')");
            }
        }

        return new HttpMatchModel(
            ctx.String(Child(node, "name"), $"{path}.name"),
            uri,
            ignoreCase,
            method,
            ParseHeaderMatches(ctx, node, "headers", path),
            ParseHeaderMatches(ctx, node, "withoutHeaders", path))
        {
            Authority = authority,
            Scheme = scheme,
            PresentPseudoHeaders = present.ToImmutable(),
            QueryParams = ParseQueryParams(ctx, node, path),
            Port = port,
            Source = source,
        };
    }

    /// <summary>Envoy's StringMatcher refuses an empty prefix or regex (min_len 1), and so does Istio's validation.</summary>
    private static void RejectEmptyPattern(ResourceContext ctx, YamlNode? node, string path, RouteStringMatch? value)
    {
        if (node is not null && value is { Kind: RouteStringMatchKind.Prefix or RouteStringMatchKind.Regex, Value: "" })
        {
            var kind = value.Kind == RouteStringMatchKind.Prefix ? "prefix" : "regex";
            ctx.Error(node, $"{path}.{kind}", "must not be empty (every Envoy and gRPC client NACKs an empty pattern)");
        }
    }

    /// <summary>
    /// <c>queryParams</c>: Envoy's query_parameters (the raw query of the request, split at '&amp;' and the first '=', the
    /// first value of a name counting). <c>exact: ""</c> matches <c>?key</c> and <c>?key=</c>; <c>{}</c> or <c>regex: "*"</c>
    /// is a presence test, as istiod translates it.
    /// </summary>
    private static ImmutableArray<RouteQueryParamMatch> ParseQueryParams(ResourceContext ctx, YamlMappingNode match, string path)
    {
        var result = ImmutableArray.CreateBuilder<RouteQueryParamMatch>();
        var node = ctx.Mapping(Child(match, "queryParams"), match, $"{path}.queryParams", required: false);
        if (node is null)
        {
            return result.ToImmutable();
        }

        foreach (var (key, value) in node.Children)
        {
            var name = (key as YamlScalarNode)?.Value;
            var paramPath = $"{path}.queryParams.{name}";
            if (string.IsNullOrEmpty(name))
            {
                ctx.Error(key, $"{path}.queryParams", "query parameter names must be non-empty");
                continue;
            }

            if (name.AsSpan().IndexOfAny(QueryNameDelimiters) >= 0)
            {
                // The request's query is split at '&' and the first '=': such a name can never be found.
                ctx.Error(key, paramPath, "must not contain '&', '=', '#' or '?' (a query parameter with that name can never match)");
                continue;
            }

            var stringMatch = ParseStringMatch(ctx, value, node, paramPath, allowPresence: true);
            RejectEmptyPattern(ctx, value, paramPath, stringMatch);
            result.Add(new RouteQueryParamMatch(name, stringMatch));
        }

        // Sorted, so that the emitted route does not depend on YAML key order (istiod iterates a Go map).
        return [.. result.OrderBy(q => q.Name, StringComparer.Ordinal)];
    }

    /// <summary>
    /// <c>sourceLabels</c> and <c>sourceNamespace</c>. istiod reads sourceLabels only when the match names no gateways, so
    /// gateways together with a source selector are an error rather than a selector silently dropped.
    /// </summary>
    private static SourceSelector? ParseSourceSelector(ResourceContext ctx, YamlMappingNode node, string path)
    {
        // Which gateways the match binds to was read by AppliesToMesh; here only whether it names any.
        var gateways = Child(node, "gateways") as YamlSequenceNode;
        var labelsNode = Child(node, "sourceLabels");
        var namespaceNode = Child(node, "sourceNamespace");
        if (labelsNode is null && namespaceNode is null)
        {
            return null;
        }

        if (gateways is { Children.Count: > 0 })
        {
            ctx.Error(gateways, $"{path}.gateways", "Istio ignores sourceLabels and sourceNamespace when a match names gateways; remove gateways from this match (mesh is the default)");
        }

        var labels = ctx.Labels(labelsNode, node, $"{path}.sourceLabels");
        foreach (var (key, value) in labels)
        {
            if (!IsLabelKey(key) || (value.Length > 0 && !IsLabelValue(value)))
            {
                ctx.Error(labelsNode!, $"{path}.sourceLabels.{key}", $"'{key}: {value}' is not a valid Kubernetes label");
            }
        }

        string? ns = null;
        if (namespaceNode is not null)
        {
            ns = ctx.String(namespaceNode, $"{path}.sourceNamespace");
            if (string.IsNullOrEmpty(ns) || ns.Length > 63 || !IsDnsLabelish(ns) || ns.Contains('.', StringComparison.Ordinal))
            {
                ctx.Error(namespaceNode, $"{path}.sourceNamespace", $"'{ns}' must be a namespace name (an RFC 1123 label)");
                ns = null;
            }
        }

        return new SourceSelector(labels, ns);
    }

    // Kubernetes label syntax: an optional DNS prefix and '/', then a name of at most 63 of [A-Za-z0-9._-], alphanumeric at both ends.
    private static bool IsLabelKey(string key)
    {
        var slash = key.LastIndexOf('/');
        return (slash < 0 || (slash > 0 && IsDnsLabelish(key[..slash]))) && IsLabelValue(key[(slash + 1)..]);
    }

    private static bool IsLabelValue(string value) =>
        value.Length is > 0 and <= 63 && char.IsAsciiLetterOrDigit(value[0]) && char.IsAsciiLetterOrDigit(value[^1])
        && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static ImmutableArray<RouteHeaderMatch> ParseHeaderMatches(ResourceContext ctx, YamlMappingNode match, string field, string path)
    {
        var headers = ImmutableArray.CreateBuilder<RouteHeaderMatch>();
        var node = ctx.Mapping(Child(match, field), match, $"{path}.{field}", required: false);
        if (node is null)
        {
            return headers.ToImmutable();
        }

        foreach (var (key, value) in node.Children)
        {
            var written = (key as YamlScalarNode)?.Value;
            var headerPath = $"{path}.{field}.{written}";
            if (string.IsNullOrEmpty(written))
            {
                ctx.Error(key, headerPath, "header names must be non-empty");
                continue;
            }

            // Header names are case-insensitive: Istio accepts X-Canary and Envoy matches it lower-cased, as clients send it.
            var header = written.ToLowerInvariant();

            if (header[0] == ':' && !RequestPseudoHeaders.Contains(header, StringComparer.Ordinal))
            {
                ctx.Error(key, headerPath, $"is not a request pseudo-header a route can match (use one of {string.Join(", ", RequestPseudoHeaders)})");
                continue;
            }

            var headerMatch = ParseStringMatch(ctx, value, node, headerPath, allowPresence: true);
            RejectEmptyPattern(ctx, value, headerPath, headerMatch);
            headers.Add(new RouteHeaderMatch(header, headerMatch));
        }

        // Istio sorts header matchers by name, so the emitted route does not depend on YAML key order.
        return [.. headers.OrderBy(h => h.Name, StringComparer.Ordinal)];
    }

    /// <summary>An Istio StringMatch: exactly one of exact, prefix, regex. With <paramref name="allowPresence"/>, an empty value means "present".</summary>
    private static RouteStringMatch? ParseStringMatch(ResourceContext ctx, YamlNode? node, YamlNode parent, string path, bool allowPresence)
    {
        if (node is null or YamlScalarNode { Value: null or "" or "~" })
        {
            return null;
        }

        var mapping = ctx.Mapping(node, parent, path, required: false);
        if (mapping is null)
        {
            return null;
        }

        if (mapping.Children.Count == 0)
        {
            if (!allowPresence)
            {
                ctx.Error(mapping, path, "needs one of exact, prefix or regex");
            }

            return null;
        }

        if (mapping.Children.Count > 1)
        {
            ctx.Error(mapping, path, "must set exactly one of exact, prefix or regex");
            return null;
        }

        var (key, value) = mapping.Children.First();
        var kind = (key as YamlScalarNode)?.Value;
        var text = ctx.String(value, $"{path}.{kind}") ?? string.Empty;
        switch (kind)
        {
            case "exact":
                return new RouteStringMatch(RouteStringMatchKind.Exact, text);
            case "prefix":
                return new RouteStringMatch(RouteStringMatchKind.Prefix, text);
            case "regex" when allowPresence && text == "*":
                // istiod reads a header regex "*" as "present" (route.go), though it is not a valid RE2 pattern.
                return null;
            case "regex":
                return CheckRegex(ctx, value, $"{path}.regex", text) ? new RouteStringMatch(RouteStringMatchKind.Regex, text) : null;
            default:
                ctx.Error(key, $"{path}.{kind}", "is not a string match; use exact, prefix or regex");
                return null;
        }
    }

    /// <summary>
    /// Istio takes RE2: validated by the same RE2 reading the Mesh client compiles with, so what passes here means the
    /// same in Envoy, in grpc-js-xds and in the client, and what RE2 refuses (lookaround, backreferences) is refused.
    /// </summary>
    private static bool CheckRegex(ResourceContext ctx, YamlNode node, string path, string pattern)
    {
        if (Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out var error) is null)
        {
            ctx.Error(node, path, error!);
            return false;
        }

        return true;
    }

    private static RouteDestinationModel? ParseRouteDestination(ResourceContext ctx, YamlMappingNode node, string path, string ns, List<DestinationReference> references)
    {
        RejectUnsupportedFields(ctx, node, path, RouteDestinationFields);
        uint weight = 0;
        if (Child(node, "weight") is { } weightNode)
        {
            var text = ctx.String(weightNode, $"{path}.weight");
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed))
            {
                ctx.Error(weightNode, $"{path}.weight", $"must be an integer (got '{text}')");
            }
            else if (parsed < 0)
            {
                ctx.Error(weightNode, $"{path}.weight", $"weight {parsed} < 0");
            }
            else
            {
                weight = (uint)parsed;
            }
        }

        var destination = ctx.Mapping(Child(node, "destination"), node, $"{path}.destination", required: true);
        if (destination is null)
        {
            return null;
        }

        return ParseDestination(ctx, destination, $"{path}.destination", ns, references, weight);
    }

    /// <summary>An Istio <c>Destination</c> (host, subset, port), checked against the folder once everything is read.</summary>
    private static RouteDestinationModel? ParseDestination(ResourceContext ctx, YamlMappingNode destination, string path, string ns, List<DestinationReference> references, uint weight)
    {
        RejectUnsupportedFields(ctx, destination, path, DestinationFields);
        var host = ctx.String(Child(destination, "host"), $"{path}.host");
        if (string.IsNullOrEmpty(host) || !IsHostName(host))
        {
            ctx.Error(Child(destination, "host") ?? destination, $"{path}.host", string.IsNullOrEmpty(host) ? "is required" : $"'{host}' must be a DNS name");
            return null;
        }

        var subset = ctx.String(Child(destination, "subset"), $"{path}.subset");
        uint? port = null;
        if (ctx.Mapping(Child(destination, "port"), destination, $"{path}.port", required: false) is { } portNode)
        {
            RejectUnsupportedFields(ctx, portNode, $"{path}.port", ["number"]);
            port = ctx.Port(Child(portNode, "number"), portNode, $"{path}.port.number", required: true);
        }

        var fqdn = HostNames.Qualify(host, ns, ctx.ClusterDomain);
        references.Add(new DestinationReference(Line(destination), path, fqdn, string.IsNullOrEmpty(subset) ? null : subset, port, IsVirtualServiceHost: false));
        return new RouteDestinationModel(fqdn, string.IsNullOrEmpty(subset) ? null : subset, port, weight);
    }

    private static HttpRetryModel? ParseRetries(ResourceContext ctx, YamlMappingNode node, string path, TimeSpan? timeout)
    {
        RejectUnsupportedFields(ctx, node, path, RetryFields);
        uint attempts = 0;
        var attemptsValid = true;
        var attemptsNode = Child(node, "attempts");
        if (attemptsNode is not null)
        {
            var text = ctx.String(attemptsNode, $"{path}.attempts");
            if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out attempts))
            {
                attemptsValid = false;
                ctx.Error(attemptsNode, $"{path}.attempts", $"must be a non-negative integer (got '{text}')");
            }
            else if (attempts > MaxRetryAttempts)
            {
                // Istio sets no bound, but every Mesh client would NACK the route (and grpc-js caps it at 4 retries).
                ctx.Error(attemptsNode, $"{path}.attempts", $"{attempts} is more than Mesh clients retry (at most {MaxRetryAttempts})");
            }
        }

        var perTryNode = Child(node, "perTryTimeout");
        var perTry = perTryNode is null ? null : ParseRouteDuration(ctx, perTryNode, $"{path}.perTryTimeout");
        if (perTry is { } value && timeout is { } total && value > total)
        {
            // Istio accepts it (ValidateHTTPRetry has no such rule): the route timeout bounds the whole call, attempts included.
            ctx.Warn(perTryNode!, $"{path}.perTryTimeout", $"{FormatDuration(value)} is longer than the route timeout {FormatDuration(total)}; the route timeout bounds the whole call, so an attempt ends at {FormatDuration(total)} at the latest");
        }

        var retryOnNode = Child(node, "retryOn");
        var retryOn = ctx.String(retryOnNode, $"{path}.retryOn");
        if (retryOn is not null)
        {
            // Split, not trimmed, as Istio's ValidateHTTPRetry: "5xx, connect-failure" names the policy " connect-failure".
            foreach (var policy in retryOn.Split(','))
            {
                if (policy == "retriable-headers")
                {
                    // A VirtualService cannot name the headers (Envoy's retriable_headers), and Mesh clients NACK the token.
                    ctx.Error(retryOnNode!, $"{path}.retryOn", "'retriable-headers' is not supported: a VirtualService cannot say which response headers to retry on");
                }
                else if (!RetryOnPolicies.Contains(policy, StringComparer.Ordinal) && !TryParseHttpStatus(policy, out _))
                {
                    var hint = policy.Trim() != policy ? " (no spaces around commas, as Istio)" : string.Empty;
                    ctx.Error(retryOnNode!, $"{path}.retryOn", $"'{policy}' is not a retry policy{hint} (known: {string.Join(", ", RetryOnPolicies)}, or an HTTP status code that has a reason phrase)");
                }
            }
        }

        var backoffNode = Child(node, "backoff");
        var backoff = backoffNode is null ? null : ParseRouteDuration(ctx, backoffNode, $"{path}.backoff");
        if (backoff > MaxPolicyDuration)
        {
            ctx.Error(backoffNode!, $"{path}.backoff", $"must be at most {MaxPolicyDuration.TotalDays:0} days (the longest a Mesh client can arm a timer)");
        }

        var ignoreNode = Child(node, "retryIgnorePreviousHosts");
        var ignorePrevious = ignoreNode is null ? null : ctx.Bool(ignoreNode, $"{path}.retryIgnorePreviousHosts");
        if (ignorePrevious is false)
        {
            ctx.Error(ignoreNode!, $"{path}.retryIgnorePreviousHosts", "false is not supported: Mesh clients always retry on an endpoint earlier attempts did not take while one is left (Envoy's previous_hosts); remove it");
        }

        var remoteNode = Child(node, "retryRemoteLocalities");
        if (remoteNode is not null && ctx.Bool(remoteNode, $"{path}.retryRemoteLocalities") is true)
        {
            ctx.Error(remoteNode, $"{path}.retryRemoteLocalities", "true is not supported: Mesh clients retry on another endpoint of the same locality priority and do not skip priorities already tried (Envoy's previous_priorities); remove it or set false");
        }

        if (attemptsValid && attempts == 0 && (perTryNode is not null || retryOnNode is not null || remoteNode is not null))
        {
            ctx.Error(attemptsNode ?? node, $"{path}.attempts", "is 0, so perTryTimeout, retryOn and retryRemoteLocalities would do nothing; set attempts above 0 or remove them");
        }

        return attemptsNode is null && perTryNode is null && retryOnNode is null && backoffNode is null && ignoreNode is null && remoteNode is null
            ? null
            : new HttpRetryModel(attempts, perTry, retryOn, backoff, ignorePrevious is true);
    }

    /// <summary>
    /// An HTTP status code in <c>retryOn</c>, as istiod reads one: Go's <c>strconv.Atoi</c> (an optional sign, decimal
    /// digits) of a code that has a reason phrase in Go's <c>http.StatusText</c>; so 599 or 306 is not a code.
    /// </summary>
    internal static bool TryParseHttpStatus(string value, out uint code)
    {
        code = 0;
        if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) || !GoStatusTexts.Contains(number))
        {
            return false;
        }

        code = (uint)number;
        return true;
    }

    /// <summary>The codes Go's net/http StatusText names (status.go).</summary>
    private static readonly FrozenSet<int> GoStatusTexts = new[]
    {
        100, 101, 102, 103,
        200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
        300, 301, 302, 303, 304, 305, 307, 308,
        400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418,
        421, 422, 423, 424, 425, 426, 428, 429, 431, 451,
        500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
    }.ToFrozenSet();

    /// <summary>A protobuf/Go style duration (<c>1.5s</c>, <c>250ms</c>, <c>1m30s</c>, <c>1h</c>), at least 1 ms, as Istio requires.</summary>
    private static TimeSpan? ParseRouteDuration(ResourceContext ctx, YamlNode node, string path)
    {
        var text = ctx.String(node, path);
        if (text is null || !TryParseDuration(text, out var value))
        {
            ctx.Error(node, path, $"must be a duration such as 250ms, 1.5s or 1m (got '{text}')");
            return null;
        }

        if (value < TimeSpan.FromMilliseconds(1))
        {
            ctx.Error(node, path, $"must be at least 1ms (got '{text}')");
            return null;
        }

        if (value.Ticks % TimeSpan.TicksPerMillisecond != 0)
        {
            // Istio's ValidateDuration: a sub-millisecond part would be cut by every proxy's millisecond timers.
            ctx.Error(node, path, $"only durations to ms precision are supported (got '{text}')");
            return null;
        }

        return value;
    }

    internal static bool TryParseDuration(string text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        var rest = text.AsSpan().Trim();
        if (rest.IsEmpty)
        {
            return false;
        }

        var ticks = 0m;
        while (!rest.IsEmpty)
        {
            var numberLength = rest.IndexOfAnyExcept(DurationNumber);
            if (numberLength <= 0)
            {
                return false;
            }

            if (!decimal.TryParse(rest[..numberLength], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                return false;
            }

            rest = rest[numberLength..];
            var unitLength = rest.IndexOfAny(DurationNumber);
            var unit = unitLength < 0 ? rest : rest[..unitLength];
            decimal scale = unit switch
            {
                "h" => TimeSpan.TicksPerHour,
                "m" => TimeSpan.TicksPerMinute,
                "s" => TimeSpan.TicksPerSecond,
                "ms" => TimeSpan.TicksPerMillisecond,
                "us" or "µs" => TimeSpan.TicksPerMicrosecond,
                _ => -1,
            };
            if (scale < 0)
            {
                return false;
            }

            ticks += number * scale;
            if (ticks > TimeSpan.MaxValue.Ticks)
            {
                return false;
            }

            rest = unitLength < 0 ? [] : rest[unitLength..];
        }

        value = TimeSpan.FromTicks((long)ticks);
        return true;
    }

    private static string FormatDuration(TimeSpan value) => $"{value.TotalSeconds.ToString(CultureInfo.InvariantCulture)}s";

    private static void RejectUnsupportedFields(ResourceContext ctx, YamlMappingNode node, string path, string[] supported)
    {
        foreach (var key in node.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is null || !supported.Contains(field, StringComparer.Ordinal))
            {
                ctx.Error(key, $"{path}.{field}", $"is not supported yet (supported here: {string.Join(", ", supported)}); Mesh refuses the config rather than ignore it");
            }
        }
    }

    private static ImmutableArray<SubsetModel> ParseSubsets(ResourceContext ctx, YamlMappingNode spec)
    {
        var subsets = ImmutableArray.CreateBuilder<SubsetModel>();
        var node = ctx.Sequence(Child(spec, "subsets"), spec, "spec.subsets", required: false);
        for (var i = 0; node is not null && i < node.Children.Count; i++)
        {
            var path = $"spec.subsets[{i}]";
            var subset = ctx.Mapping(node.Children[i], node, path, required: true);
            if (subset is null)
            {
                continue;
            }

            RejectUnsupportedFields(ctx, subset, path, SubsetFields);
            var name = ctx.String(Child(subset, "name"), $"{path}.name");
            if (string.IsNullOrEmpty(name) || !IsDnsLabelish(name) || name.Contains('.', StringComparison.Ordinal))
            {
                ctx.Error(Child(subset, "name") ?? subset, $"{path}.name", $"'{name}' must be a lowercase RFC 1123 label");
                continue;
            }

            if (subsets.Any(s => s.Name == name))
            {
                ctx.Error(Child(subset, "name")!, $"{path}.name", $"subset {name} is defined twice");
                continue;
            }

            var labels = ctx.Labels(Child(subset, "labels"), subset, $"{path}.labels");
            LoadBalancerKind? lb = null;
            TrafficPolicyModel? traffic = null;
            ConsistentHashModel? consistentHash = null;
            if (ctx.Mapping(Child(subset, "trafficPolicy"), subset, $"{path}.trafficPolicy", required: false) is { } policy)
            {
                RejectUnsupportedFields(ctx, policy, $"{path}.trafficPolicy", ["loadBalancer", "connectionPool", "outlierDetection", "retryBudget", "portLevelSettings"]);
                lb = ParseLoadBalancer(ctx, policy, $"{path}.trafficPolicy.loadBalancer", out consistentHash);
                traffic = ParseTrafficPolicy(ctx, policy, $"{path}.trafficPolicy", lb);
            }

            subsets.Add(new SubsetModel(name, labels, lb) { Traffic = traffic, ConsistentHash = consistentHash });
        }

        return subsets.ToImmutable();
    }

    /// <summary>A destination or host named by a VirtualService, checked against the whole folder once everything is read.</summary>
    internal sealed record DestinationReference(int Line, string Path, string Host, string? Subset, uint? Port, bool IsVirtualServiceHost)
    {
        /// <summary>Gets the request ports the route applies to (its matches' <c>port</c>); null when every port of the VirtualService's hosts.</summary>
        public ImmutableArray<uint>? RequestPorts { get; init; }
    }

    /// <summary>Whether no caller sees both: each is exported to its own namespace only, and the namespaces differ.</summary>
    internal static bool ApartByExportTo(VirtualServiceModel a, VirtualServiceModel b) =>
        a.ExportedTo is { } one && b.ExportedTo is { } other && one != other;

    internal sealed record ParsedVirtualService(VirtualServiceModel Model, string File, int Line, List<DestinationReference> References);

    /// <summary>Cross-resource rules: hosts and destinations exist, subsets are defined, one VirtualService per host.</summary>
    private static void CheckVirtualServices(
        List<ParsedVirtualService> virtualServices,
        List<(ServiceEntryModel Model, string File, int Line)> services,
        List<(DestinationRuleModel Model, string File, int Line)> rules,
        List<ConfigError> errors)
    {
        var ports = new Dictionary<string, ImmutableArray<ServicePort>>(StringComparer.Ordinal);
        foreach (var (entry, _, _) in services)
        {
            foreach (var host in entry.Hosts)
            {
                ports.TryAdd(host, entry.Ports);
            }
        }

        var subsets = rules.GroupBy(r => r.Model.Host, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.First().Model.Subsets.Select(s => s.Name).ToHashSet(StringComparer.Ordinal), StringComparer.Ordinal);
        var owners = new Dictionary<string, List<ParsedVirtualService>>(StringComparer.Ordinal);
        foreach (var vs in virtualServices)
        {
            var resource = $"VirtualService {vs.Model.Namespace}/{vs.Model.Name}";
            foreach (var reference in vs.References)
            {
                void Fail(string message) => errors.Add(new ConfigError(vs.File, reference.Line, $"{resource}: {reference.Path}: {message}", Kind: "VirtualService"));
                if (!ports.TryGetValue(reference.Host, out var servicePorts))
                {
                    Fail($"host {reference.Host} is not declared by any ServiceEntry");
                    continue;
                }

                if (reference.IsVirtualServiceHost)
                {
                    // Each exported to its own namespace only, two VirtualServices never reach the same caller: Istio allows
                    // it, and each keeps its own namespace's callers (RouteTranslator puts their per-namespace routes together).
                    if (!owners.TryGetValue(reference.Host, out var existing))
                    {
                        owners.Add(reference.Host, [vs]);
                    }
                    else if (existing.FirstOrDefault(other => !ApartByExportTo(other.Model, vs.Model)) is { } first)
                    {
                        Fail($"host {reference.Host} already has VirtualService {first.Model.Namespace}/{first.Model.Name} ({first.File}:{first.Line}); merge them into one (two VirtualServices for one host are allowed only in different namespaces, each with exportTo: [\".\"])");
                    }
                    else
                    {
                        existing.Add(vs);
                    }

                    continue;
                }

                if (reference.Port is { } port && !servicePorts.Any(p => p.Number == port))
                {
                    Fail($"port.number {port} is not a port of {reference.Host} (ports: {string.Join(", ", servicePorts.Select(p => p.Number))})");
                }
                else if (reference.Port is null && servicePorts.Length > 1)
                {
                    // As istiod: a destination without port on a multi-port service takes the request's port, so each port
                    // the VirtualService's hosts are called on must be one of the destination's.
                    var missing = vs.Model.Hosts
                        .SelectMany(host => (ports.TryGetValue(host, out var hostPorts) ? hostPorts : []).Select(p => (Host: host, p.Number)))
                        .Where(r => reference.RequestPorts is not { } only || only.Contains(r.Number))
                        .Where(r => !servicePorts.Any(p => p.Number == r.Number))
                        .ToArray();
                    if (missing.Length > 0)
                    {
                        Fail($"port.number is required: {reference.Host} has several ports ({string.Join(", ", servicePorts.Select(p => p.Number))}), so a request takes its own port there, and {string.Join(", ", missing.Select(m => $"{m.Host}:{m.Number}"))} is not one of them");
                    }
                }

                if (reference.Subset is { } subset && !(subsets.TryGetValue(reference.Host, out var defined) && defined.Contains(subset)))
                {
                    Fail($"subset {subset} is not defined by any DestinationRule for host {reference.Host}");
                }
            }
        }
    }
}
