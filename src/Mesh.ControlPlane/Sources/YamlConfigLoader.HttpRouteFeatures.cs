using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Wire;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// VirtualService <c>http[]</c> fault, mirror, rewrite, headers, redirect and directResponse, validated as Istio
/// (validation.go: validateHTTPRoute and its helpers) plus what a Mesh or gRPC client could not apply.
/// </summary>
internal static partial class YamlConfigLoader
{
    /// <summary>Istio refuses a direct response body above 1 MB (validateHTTPDirectResponse) and warns above 100 KB.</summary>
    internal const int MaxDirectResponseBody = 1024 * 1024;

    private const int DirectResponseBodyWarning = 100 * 1024;

    /// <summary>gRPC status names Istio accepts for <c>fault.abort.grpcStatus</c>, by code.</summary>
    private static readonly string[] GrpcStatusNames =
    [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// <summary>The redirect codes Envoy's RedirectAction can send; Istio would silently send 301 for another 3xx.</summary>
    private static readonly uint[] RedirectCodes = [301, 302, 303, 307, 308];

    private static HttpRouteModel ParseRouteFeatures(ResourceContext ctx, YamlMappingNode node, string path, string ns, List<DestinationReference> references, HttpRouteModel route)
    {
        var fault = ctx.Mapping(Child(node, "fault"), node, $"{path}.fault", required: false) is { } faultNode ? ParseFault(ctx, faultNode, $"{path}.fault") : null;
        var mirrors = ParseMirrors(ctx, node, path, ns, references);
        var rewrite = ctx.Mapping(Child(node, "rewrite"), node, $"{path}.rewrite", required: false) is { } rewriteNode ? ParseRewrite(ctx, rewriteNode, $"{path}.rewrite") : null;
        var headers = ctx.Mapping(Child(node, "headers"), node, $"{path}.headers", required: false) is { } headersNode ? ParseHeaders(ctx, headersNode, $"{path}.headers") : null;
        var redirect = ctx.Mapping(Child(node, "redirect"), node, $"{path}.redirect", required: false) is { } redirectNode ? ParseRedirect(ctx, redirectNode, $"{path}.redirect", route.Matches) : null;
        var direct = ctx.Mapping(Child(node, "directResponse"), node, $"{path}.directResponse", required: false) is { } directNode
            ? ParseDirectResponse(ctx, directNode, $"{path}.directResponse")
            : null;

        // Istio's exclusions (validateHTTPRoute); timeout, retries and mirrors would be dropped by istiod without a word, so they are errors here.
        foreach (var (local, name) in new[] { (Child(node, "redirect"), "redirect"), (Child(node, "directResponse"), "directResponse") })
        {
            if (local is null)
            {
                continue;
            }

            foreach (var other in new[] { "route", "fault", "rewrite", "timeout", "retries", "mirror", "mirrors" })
            {
                if (Child(node, other) is not null)
                {
                    ctx.Error(local, $"{path}.{name}", $"cannot be used together with {other} (the route answers the request itself)");
                }
            }
        }

        if (Child(node, "redirect") is not null && Child(node, "directResponse") is { } both)
        {
            ctx.Error(both, $"{path}.directResponse", "cannot be used together with redirect");
        }

        // Only one place may set the authority (Istio: rewrite.authority or a request :authority/host header).
        if (rewrite?.Authority is not null && headers?.Authority is not null)
        {
            ctx.Error(Child(node, "headers")!, $"{path}.headers.request", "sets :authority/host while rewrite.authority also sets it; keep one");
        }

        return route with
        {
            Fault = fault,
            Mirrors = mirrors,
            Rewrite = rewrite,
            Headers = headers,
            Redirect = redirect,
            DirectResponse = direct,
        };
    }

    private static HttpFaultModel? ParseFault(ResourceContext ctx, YamlMappingNode node, string path)
    {
        RejectUnsupportedFields(ctx, node, path, ["delay", "abort"]);
        FaultDelayModel? delay = null;
        FaultAbortModel? abort = null;
        if (ctx.Mapping(Child(node, "delay"), node, $"{path}.delay", required: false) is { } delayNode)
        {
            var delayPath = $"{path}.delay";
            RejectUnsupportedFields(ctx, delayNode, delayPath, ["fixedDelay", "percentage", "percent", "exponentialDelay"]);
            if (Child(delayNode, "exponentialDelay") is { } exponential)
            {
                // Istio: "exponentialDelay not supported yet".
                ctx.Error(exponential, $"{delayPath}.exponentialDelay", "is not supported (Istio refuses it too); use fixedDelay");
            }

            var fixedNode = Child(delayNode, "fixedDelay");
            if (fixedNode is null)
            {
                ctx.Error(delayNode, $"{delayPath}.fixedDelay", "is required");
            }

            var fixedDelay = fixedNode is null ? null : ParseRouteDuration(ctx, fixedNode, $"{delayPath}.fixedDelay");
            var percent = ParseFaultPercent(ctx, delayNode, delayPath);
            if (fixedDelay is { } value)
            {
                delay = new FaultDelayModel(value, percent);
            }
        }

        if (ctx.Mapping(Child(node, "abort"), node, $"{path}.abort", required: false) is { } abortNode)
        {
            var abortPath = $"{path}.abort";
            RejectUnsupportedFields(ctx, abortNode, abortPath, ["httpStatus", "grpcStatus", "http2Error", "percentage"]);
            var percent = ParseFaultPercent(ctx, abortNode, abortPath);
            uint? httpStatus = null;
            uint? grpcStatus = null;
            var kinds = 0;
            if (Child(abortNode, "httpStatus") is { } httpNode)
            {
                kinds++;
                var text = ctx.String(httpNode, $"{abortPath}.httpStatus");
                if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var status) || status is < 200 or > 599)
                {
                    // Istio accepts 600 too, but Envoy's FaultAbort.http_status is below 600: every client would refuse it.
                    ctx.Error(httpNode, $"{abortPath}.httpStatus", $"HTTP status '{text}' is not in range 200-599");
                }
                else
                {
                    httpStatus = status;
                }
            }

            if (Child(abortNode, "grpcStatus") is { } grpcNode)
            {
                kinds++;
                var text = ctx.String(grpcNode, $"{abortPath}.grpcStatus");
                var code = Array.IndexOf(GrpcStatusNames, text);
                if (code < 0)
                {
                    ctx.Error(grpcNode, $"{abortPath}.grpcStatus", $"gRPC status '{text}' is not a status name (for example UNAVAILABLE or NOT_FOUND)");
                }
                else
                {
                    grpcStatus = (uint)code;
                }
            }

            if (Child(abortNode, "http2Error") is { } http2Node)
            {
                kinds++;
                ctx.Error(http2Node, $"{abortPath}.http2Error", "HTTP/2 abort fault injection is not supported (Istio refuses it too)");
            }

            if (kinds == 0)
            {
                // Istio only warns ("error type not set"), but such an abort has no status to answer with.
                ctx.Error(abortNode, abortPath, "needs httpStatus or grpcStatus");
            }
            else if (kinds > 1)
            {
                ctx.Error(abortNode, abortPath, "must set exactly one of httpStatus, grpcStatus and http2Error");
            }
            else if (httpStatus is not null || grpcStatus is not null)
            {
                abort = new FaultAbortModel(httpStatus, grpcStatus, percent);
            }
        }

        if (Child(node, "delay") is null && Child(node, "abort") is null)
        {
            ctx.Error(node, path, "HTTP fault injection must have an abort and/or a delay");
        }

        return delay is null && abort is null ? null : new HttpFaultModel(delay, abort);
    }

    /// <summary>
    /// <c>percentage.value</c>, else the deprecated integer <c>percent</c> (delay only), else 0: Istio's "if not specified,
    /// no request will be" delayed or aborted. Istio refuses values outside 0 and [0.0001, 100].
    /// </summary>
    private static double ParseFaultPercent(ResourceContext ctx, YamlMappingNode node, string path)
    {
        if (Child(node, "percentage") is { } percentageNode)
        {
            return ParsePercentage(ctx, percentageNode, node, $"{path}.percentage") ?? 0;
        }

        if (Child(node, "percent") is { } percentNode)
        {
            var text = ctx.String(percentNode, $"{path}.percent");
            if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var percent) || percent > 100)
            {
                ctx.Error(percentNode, $"{path}.percent", $"must be an integer in [0, 100] (got '{text}')");
                return 0;
            }

            ctx.Warn(percentNode, $"{path}.percent", "is deprecated; use percentage.value");
            return percent;
        }

        ctx.Warn(node, $"{path}.percentage", "is not set, so no request is affected (as in Istio); set percentage.value");
        return 0;
    }

    /// <summary>An Istio <c>Percent</c> mapping: <c>value</c> in [0, 100], at most 4 decimals (Envoy counts per million).</summary>
    private static double? ParsePercentage(ResourceContext ctx, YamlNode node, YamlNode parent, string path)
    {
        var mapping = ctx.Mapping(node, parent, path, required: true);
        if (mapping is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, mapping, path, ["value"]);
        var valueNode = Child(mapping, "value");
        var text = ctx.String(valueNode, $"{path}.value");
        if (valueNode is null)
        {
            // Istio's Percent{} is 0.
            return 0;
        }

        if (!double.TryParse(text, NumberStyles.AllowDecimalPoint | NumberStyles.AllowLeadingSign | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out var value)
            || double.IsNaN(value) || value < 0 || value > 100)
        {
            ctx.Error(valueNode, $"{path}.value", $"percentage '{text}' is not in range [0, 100]");
            return null;
        }

        if (value is > 0 and < 0.0001)
        {
            ctx.Error(valueNode, $"{path}.value", $"percentage {text} is below 0.0001, the smallest share Envoy can express (per million)");
            return null;
        }

        return value;
    }

    private static ImmutableArray<HttpMirrorModel> ParseMirrors(ResourceContext ctx, YamlMappingNode node, string path, string ns, List<DestinationReference> references)
    {
        var mirrors = ImmutableArray.CreateBuilder<HttpMirrorModel>();
        var mirrorNode = Child(node, "mirror");
        var mirrorsNode = Child(node, "mirrors");
        if (mirrorNode is not null && mirrorsNode is not null)
        {
            ctx.Error(mirrorsNode, $"{path}.mirrors", "cannot be used together with mirror");
            return [];
        }

        if (mirrorNode is null)
        {
            foreach (var field in new[] { "mirrorPercentage", "mirrorPercent" })
            {
                if (Child(node, field) is { } stray)
                {
                    ctx.Error(stray, $"{path}.{field}", "applies to mirror, which is not set (mirrors[] carry their own percentage)");
                }
            }
        }

        if (ctx.Mapping(mirrorNode, node, $"{path}.mirror", required: false) is { } single)
        {
            double percent = 100;
            if (Child(node, "mirrorPercentage") is { } percentageNode)
            {
                percent = ParsePercentage(ctx, percentageNode, node, $"{path}.mirrorPercentage") ?? 0;
                if (Child(node, "mirrorPercent") is { } both)
                {
                    ctx.Error(both, $"{path}.mirrorPercent", "cannot be used together with mirrorPercentage (it is the deprecated form)");
                }
            }
            else if (Child(node, "mirrorPercent") is { } percentNode)
            {
                var text = ctx.String(percentNode, $"{path}.mirrorPercent");
                if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value > 100)
                {
                    ctx.Error(percentNode, $"{path}.mirrorPercent", $"must be an integer in [0, 100] (got '{text}')");
                }
                else
                {
                    ctx.Warn(percentNode, $"{path}.mirrorPercent", "is deprecated; use mirrorPercentage.value");
                    percent = value;
                }
            }

            if (ParseDestination(ctx, single, $"{path}.mirror", ns, references, weight: 0) is { } destination)
            {
                mirrors.Add(new HttpMirrorModel(destination, percent));
            }
        }

        var list = ctx.Sequence(mirrorsNode, node, $"{path}.mirrors", required: false);
        for (var i = 0; list is not null && i < list.Children.Count; i++)
        {
            var itemPath = $"{path}.mirrors[{i}]";
            if (ctx.Mapping(list.Children[i], list, itemPath, required: true) is not { } item)
            {
                continue;
            }

            RejectUnsupportedFields(ctx, item, itemPath, ["destination", "percentage"]);
            var percent = Child(item, "percentage") is { } percentageNode ? ParsePercentage(ctx, percentageNode, item, $"{itemPath}.percentage") ?? 0 : 100;
            if (ctx.Mapping(Child(item, "destination"), item, $"{itemPath}.destination", required: true) is { } destinationNode
                && ParseDestination(ctx, destinationNode, $"{itemPath}.destination", ns, references, weight: 0) is { } destination)
            {
                mirrors.Add(new HttpMirrorModel(destination, percent));
            }
        }

        return mirrors.ToImmutable();
    }

    private static HttpRewriteModel? ParseRewrite(ResourceContext ctx, YamlMappingNode node, string path)
    {
        RejectUnsupportedFields(ctx, node, path, ["uri", "authority", "uriRegexRewrite"]);
        var uri = ctx.String(Child(node, "uri"), $"{path}.uri");
        var authority = ctx.String(Child(node, "authority"), $"{path}.authority");
        string? match = null;
        string? substitution = null;
        var regexNode = ctx.Mapping(Child(node, "uriRegexRewrite"), node, $"{path}.uriRegexRewrite", required: false);
        if (regexNode is not null)
        {
            RejectUnsupportedFields(ctx, regexNode, $"{path}.uriRegexRewrite", ["match", "rewrite"]);
            match = ctx.String(Child(regexNode, "match"), $"{path}.uriRegexRewrite.match");
            substitution = ctx.String(Child(regexNode, "rewrite"), $"{path}.uriRegexRewrite.rewrite");
            if (string.IsNullOrEmpty(match) || string.IsNullOrEmpty(substitution))
            {
                ctx.Error(regexNode, $"{path}.uriRegexRewrite", "requires both match and rewrite");
            }
            else if (!CheckRegex(ctx, Child(regexNode, "match")!, $"{path}.uriRegexRewrite.match", match))
            {
                match = null;
            }
        }

        if (!string.IsNullOrEmpty(uri) && regexNode is not null)
        {
            ctx.Error(node, path, "may only contain one of uri and uriRegexRewrite");
        }

        if (!string.IsNullOrEmpty(uri) && uri[0] != '/')
        {
            ctx.Error(Child(node, "uri")!, $"{path}.uri", $"'{uri}' must start with '/'");
        }

        if (!string.IsNullOrEmpty(authority) && !IsAuthority(authority))
        {
            ctx.Error(Child(node, "authority")!, $"{path}.authority", $"'{authority}' is not a host or host:port");
        }

        if (string.IsNullOrEmpty(uri) && regexNode is null && string.IsNullOrEmpty(authority))
        {
            ctx.Error(node, path, "must specify at least one of uri, uriRegexRewrite or authority");
        }

        return new HttpRewriteModel(
            string.IsNullOrEmpty(uri) ? null : uri,
            string.IsNullOrEmpty(substitution) ? null : match,
            string.IsNullOrEmpty(match) ? null : substitution,
            string.IsNullOrEmpty(authority) ? null : authority);
    }

    private static HttpHeadersModel ParseHeaders(ResourceContext ctx, YamlMappingNode node, string path)
    {
        RejectUnsupportedFields(ctx, node, path, ["request", "response"]);
        string? authority = null;
        var request = ctx.Mapping(Child(node, "request"), node, $"{path}.request", required: false) is { } requestNode
            ? ParseHeaderOperations(ctx, requestNode, $"{path}.request", ref authority)
            : null;
        string? unused = null;
        var response = ctx.Mapping(Child(node, "response"), node, $"{path}.response", required: false) is { } responseNode
            ? ParseHeaderOperations(ctx, responseNode, $"{path}.response", ref unused)
            : null;
        return new HttpHeadersModel(request, response, authority);
    }

    /// <summary>
    /// <c>set</c>, <c>add</c>, <c>remove</c>. Names are HTTP tokens; pseudo-headers and <c>host</c> are refused, except that a
    /// request's <c>:authority</c>/<c>host</c> in set or add rewrites the authority (<paramref name="authority"/>), as istiod does.
    /// </summary>
    private static HeaderOperationsModel ParseHeaderOperations(ResourceContext ctx, YamlMappingNode node, string path, ref string? authority)
    {
        RejectUnsupportedFields(ctx, node, path, ["set", "add", "remove"]);
        var isRequest = path.EndsWith(".request", StringComparison.Ordinal);
        var set = new List<KeyValuePair<string, string>>();
        var add = new List<KeyValuePair<string, string>>();
        foreach (var (field, target) in new[] { ("set", set), ("add", add) })
        {
            if (ctx.Mapping(Child(node, field), node, $"{path}.{field}", required: false) is not { } map)
            {
                continue;
            }

            foreach (var (key, value) in map.Children)
            {
                var name = (key as YamlScalarNode)?.Value ?? string.Empty;
                var itemPath = $"{path}.{field}.{name}";
                var text = ctx.String(value, itemPath) ?? string.Empty;
                if (isRequest && (string.Equals(name, ":authority", StringComparison.OrdinalIgnoreCase) || string.Equals(name, "host", StringComparison.OrdinalIgnoreCase)))
                {
                    if (authority is not null)
                    {
                        ctx.Error(key, itemPath, "sets the authority a second time");
                    }
                    else if (!IsAuthority(text))
                    {
                        ctx.Error(value, itemPath, $"'{text}' is not a host or host:port");
                    }
                    else
                    {
                        authority = text;
                    }

                    continue;
                }

                if (CheckHeaderOperationName(ctx, key, itemPath, name) && CheckHeaderValue(ctx, value, itemPath, text))
                {
                    target.Add(new(name.ToLowerInvariant(), text));
                }
            }
        }

        var remove = new List<string>();
        var removeNode = ctx.Sequence(Child(node, "remove"), node, $"{path}.remove", required: false);
        for (var i = 0; removeNode is not null && i < removeNode.Children.Count; i++)
        {
            var name = ctx.String(removeNode.Children[i], $"{path}.remove[{i}]") ?? string.Empty;
            if (CheckHeaderOperationName(ctx, removeNode.Children[i], $"{path}.remove[{i}]", name))
            {
                remove.Add(name.ToLowerInvariant());
            }
        }

        return new HeaderOperationsModel(
            [.. set.OrderBy(h => h.Key, StringComparer.Ordinal)],
            [.. add.OrderBy(h => h.Key, StringComparer.Ordinal)],
            [.. remove.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)]);
    }

    private static bool CheckHeaderOperationName(ResourceContext ctx, YamlNode node, string path, string name)
    {
        if (name.Length == 0)
        {
            ctx.Error(node, path, "header name must not be empty");
            return false;
        }

        if (name[0] == ':' || string.Equals(name, "host", StringComparison.OrdinalIgnoreCase))
        {
            ctx.Error(node, path, $"'{name}' cannot be changed here (pseudo-headers and host are not headers a route may set or remove; rewrite.authority sets the authority)");
            return false;
        }

        if (!name.All(IsTokenChar))
        {
            ctx.Error(node, path, $"'{name}' is not a valid HTTP header name");
            return false;
        }

        return true;
    }

    /// <summary>
    /// Istio's <c>ValidateHTTPHeaderValue</c>: no control character but tab, and a valid Envoy format (a literal % is %%).
    /// Of Envoy's operators only those Mesh clients expand pass, since the clients NACK a route with any other.
    /// </summary>
    private static bool CheckHeaderValue(ResourceContext ctx, YamlNode node, string path, string value)
    {
        if (value.Any(c => c is (< ' ' and not '\t') or '\u007f'))
        {
            ctx.Error(node, path, "header values must not contain control characters (CR, LF, NUL…)");
            return false;
        }

        if (!HeaderValueFormat.TryParse(value, out var parts, out var problem))
        {
            ctx.Error(node, path, $"'{value}' is not a valid Envoy header value: {problem}");
            return false;
        }

        var unsupported = parts.Where(p => p.IsOperator && p.Text != HeaderValueFormat.Hostname).Select(p => $"%{p.Text}%").ToList();
        if (unsupported.Count > 0)
        {
            ctx.Error(node, path, $"{string.Join(", ", unsupported)}: Mesh clients expand only %{HeaderValueFormat.Hostname}% in header values (write a literal % as %%)");
            return false;
        }

        return true;
    }

    private static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);

    private static bool IsAuthority(string value)
    {
        var colon = value.LastIndexOf(':');
        var host = colon > 0 ? value[..colon] : value;
        return (colon < 0 || (uint.TryParse(value.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535))
            && IsAddress(host);
    }

    private static HttpRedirectModel? ParseRedirect(ResourceContext ctx, YamlMappingNode node, string path, ImmutableArray<HttpMatchModel> matches)
    {
        RejectUnsupportedFields(ctx, node, path, ["uri", "prefixRewrite", "authority", "port", "scheme", "redirectCode", "derivePort"]);
        var before = ctx.ErrorCount;
        var uri = ctx.String(Child(node, "uri"), $"{path}.uri");
        var prefixRewrite = ctx.String(Child(node, "prefixRewrite"), $"{path}.prefixRewrite");
        if (!string.IsNullOrEmpty(prefixRewrite))
        {
            var prefixNode = Child(node, "prefixRewrite")!;
            if (!string.IsNullOrEmpty(uri))
            {
                ctx.Error(prefixNode, $"{path}.prefixRewrite", "redirect may only specify one of uri or prefixRewrite");
            }
            else if (prefixRewrite[0] != '/')
            {
                ctx.Error(prefixNode, $"{path}.prefixRewrite", $"'{prefixRewrite}' must start with '/'");
            }

            // Istio's validateHTTPRedirect: the replaced part is the matched prefix, so every uri match must be a prefix.
            if (matches.Any(m => m.Uri is { Kind: not RouteStringMatchKind.Prefix }))
            {
                ctx.Error(prefixNode, $"{path}.prefixRewrite", "redirect prefixRewrite requires all URI matches to use prefix match type");
            }
        }

        var authority = ctx.String(Child(node, "authority"), $"{path}.authority");
        var scheme = ctx.String(Child(node, "scheme"), $"{path}.scheme");
        var port = ctx.Port(Child(node, "port"), node, $"{path}.port", required: false);
        if (Child(node, "derivePort") is { } derive)
        {
            ctx.Error(derive, $"{path}.derivePort", "is not supported yet; set port");
        }

        if (string.IsNullOrEmpty(uri) && string.IsNullOrEmpty(prefixRewrite) && string.IsNullOrEmpty(authority) && Child(node, "port") is null && string.IsNullOrEmpty(scheme))
        {
            ctx.Error(node, path, "redirect must specify uri, prefixRewrite, authority, scheme, or port");
        }

        if (!string.IsNullOrEmpty(uri) && uri[0] != '/')
        {
            ctx.Error(Child(node, "uri")!, $"{path}.uri", $"'{uri}' must start with '/'");
        }

        if (!string.IsNullOrEmpty(authority) && !IsAddress(authority))
        {
            ctx.Error(Child(node, "authority")!, $"{path}.authority", $"'{authority}' is not a host name (give the port in port)");
        }

        if (!string.IsNullOrEmpty(scheme) && scheme is not ("http" or "https"))
        {
            ctx.Error(Child(node, "scheme")!, $"{path}.scheme", "invalid redirect scheme, must be \"http\" or \"https\"");
        }

        uint code = 301;
        if (Child(node, "redirectCode") is { } codeNode)
        {
            var text = ctx.String(codeNode, $"{path}.redirectCode");
            if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out code) || code is < 300 or > 399)
            {
                ctx.Error(codeNode, $"{path}.redirectCode", $"'{text}' is not a valid redirect code, must be 3xx");
            }
            else if (!RedirectCodes.Contains(code))
            {
                // istiod would send 301 instead, silently; Envoy's RedirectAction has no other code.
                ctx.Error(codeNode, $"{path}.redirectCode", $"{code} cannot be sent; use one of {string.Join(", ", RedirectCodes)}");
            }
        }

        return ctx.ErrorCount == before
            ? new HttpRedirectModel(string.IsNullOrEmpty(uri) ? null : uri, string.IsNullOrEmpty(authority) ? null : authority, port, string.IsNullOrEmpty(scheme) ? null : scheme, code, string.IsNullOrEmpty(prefixRewrite) ? null : prefixRewrite)
            : null;
    }

    private static HttpDirectResponseModel? ParseDirectResponse(ResourceContext ctx, YamlMappingNode node, string path)
    {
        RejectUnsupportedFields(ctx, node, path, ["status", "body"]);
        var statusNode = Child(node, "status");
        var text = ctx.String(statusNode, $"{path}.status");
        uint status = 0;
        if (statusNode is null)
        {
            ctx.Error(node, $"{path}.status", "is required");
        }
        else if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out status) || status is < 200 or > 599)
        {
            ctx.Error(statusNode, $"{path}.status", $"HTTP status '{text}' is not in range 200-599");
            status = 0;
        }

        byte[]? body = null;
        if (ctx.Mapping(Child(node, "body"), node, $"{path}.body", required: false) is { } bodyNode)
        {
            RejectUnsupportedFields(ctx, bodyNode, $"{path}.body", ["string", "bytes"]);
            if (bodyNode.Children.Count != 1)
            {
                ctx.Error(bodyNode, $"{path}.body", "must set exactly one of string and bytes");
            }
            else if (Child(bodyNode, "string") is { } stringNode)
            {
                body = Encoding.UTF8.GetBytes(ctx.String(stringNode, $"{path}.body.string") ?? string.Empty);
            }
            else if (Child(bodyNode, "bytes") is { } bytesNode)
            {
                try
                {
                    body = Convert.FromBase64String(ctx.String(bytesNode, $"{path}.body.bytes") ?? string.Empty);
                }
                catch (FormatException)
                {
                    ctx.Error(bytesNode, $"{path}.body.bytes", "must be base64");
                }
            }

            if (body is { Length: > MaxDirectResponseBody })
            {
                ctx.Error(bodyNode, $"{path}.body", $"is {body.Length} bytes; large direct_responses may impact control plane performance, must be less than 1MB");
                body = null;
            }
            else if (body is { Length: > DirectResponseBodyWarning })
            {
                ctx.Warn(bodyNode, $"{path}.body", "large direct_responses may impact control plane performance");
            }
        }

        return status == 0 ? null : new HttpDirectResponseModel(status, body);
    }
}
