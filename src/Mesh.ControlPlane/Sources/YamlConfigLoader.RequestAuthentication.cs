using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>RequestAuthentication (security.istio.io): JWT rules.</summary>
internal static partial class YamlConfigLoader
{
    private static readonly string[] RequestAuthenticationFields = ["selector", "jwtRules"];

    private static readonly string[] JwtRuleFields =
        ["issuer", "audiences", "jwksUri", "jwks", "fromHeaders", "fromParams", "forwardOriginalToken", "outputPayloadToHeader", "outputClaimToHeaders", "spaceDelimitedClaims", "timeout"];

    private static RequestAuthenticationModel ParseRequestAuthentication(ResourceContext ctx, YamlMappingNode spec, string ns, string name, string file, int line)
    {
        foreach (var key in spec.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is "targetRef" or "targetRefs")
            {
                ctx.Error(key, $"spec.{field}", "is not supported (it attaches policies to gateways); use spec.selector");
            }
            else if (field is null || !RequestAuthenticationFields.Contains(field, StringComparer.Ordinal))
            {
                ctx.Error(key, $"spec.{field}", $"is not a RequestAuthentication field; supported fields are {string.Join(", ", RequestAuthenticationFields)}");
            }
        }

        var selector = ParseSelector(ctx, spec);
        var rules = ImmutableArray.CreateBuilder<JwtRuleModel>();
        var rulesNode = ctx.Sequence(Child(spec, "jwtRules"), spec, "spec.jwtRules", required: false);
        var issuers = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; rulesNode is not null && i < rulesNode.Children.Count; i++)
        {
            var path = $"spec.jwtRules[{i}]";
            var ruleNode = ctx.Mapping(rulesNode.Children[i], rulesNode, path, required: true);
            if (ruleNode is null)
            {
                continue;
            }

            var rule = ParseJwtRule(ctx, ruleNode, path);
            if (rule is null)
            {
                continue;
            }

            if (issuers.TryGetValue(rule.Issuer, out var first))
            {
                ctx.Error(Child(ruleNode, "issuer")!, $"{path}.issuer", $"issuer '{rule.Issuer}' is already configured by {first}; each issuer may appear once per RequestAuthentication");
            }
            else
            {
                issuers[rule.Issuer] = path;
                rules.Add(rule);
            }
        }

        return new RequestAuthenticationModel(ns, name, selector, rules.ToImmutable(), file, line);
    }

    private static JwtRuleModel? ParseJwtRule(ResourceContext ctx, YamlMappingNode rule, string path)
    {
        foreach (var key in rule.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field == "fromCookies")
            {
                ctx.Error(key, $"{path}.fromCookies", "is not supported; send the token in a header (fromHeaders) or a query parameter (fromParams)");
            }
            else if (field == "timeout")
            {
                ctx.Warn(key, $"{path}.timeout", "is ignored: the control plane fetches every jwksUri with ControlPlane:Jwks:FetchTimeout");
            }
            else if (field is null || !JwtRuleFields.Contains(field, StringComparer.Ordinal))
            {
                ctx.Error(key, $"{path}.{field}", $"is not a jwtRules field; supported fields are {string.Join(", ", JwtRuleFields.Where(f => f != "timeout"))}");
            }
        }

        var before = ctx.ErrorCount;
        var issuerNode = Child(rule, "issuer");
        var issuer = ctx.String(issuerNode, $"{path}.issuer");
        if (string.IsNullOrEmpty(issuer))
        {
            ctx.Error(issuerNode ?? rule, $"{path}.issuer", "is required (the value the token's \"iss\" claim must equal)");
        }

        var audiences = StringList(ctx, Child(rule, "audiences"), $"{path}.audiences");
        if (audiences.Any(string.IsNullOrEmpty))
        {
            ctx.Error(Child(rule, "audiences")!, $"{path}.audiences", "must not contain empty strings");
        }

        var uriNode = Child(rule, "jwksUri");
        var jwksNode = Child(rule, "jwks");
        var uriText = ctx.String(uriNode, $"{path}.jwksUri");
        var jwks = ctx.String(jwksNode, $"{path}.jwks");
        Uri? jwksUri = null;
        if (!string.IsNullOrEmpty(uriText) && !string.IsNullOrEmpty(jwks))
        {
            ctx.Error(jwksNode!, $"{path}.jwks", "cannot be combined with jwksUri; set one of them");
        }
        else if (string.IsNullOrEmpty(uriText) && string.IsNullOrEmpty(jwks))
        {
            // istiod would try OIDC discovery at <issuer>/.well-known/openid-configuration; we ask for the keys explicitly.
            ctx.Error(rule, path, "needs jwksUri or jwks (OIDC discovery from the issuer is not supported)");
        }
        else if (!string.IsNullOrEmpty(uriText))
        {
            if (!Uri.TryCreate(uriText, UriKind.Absolute, out jwksUri) || jwksUri.Scheme is not ("https" or "http") || !string.IsNullOrEmpty(jwksUri.UserInfo))
            {
                ctx.Error(uriNode!, $"{path}.jwksUri", $"'{uriText}' must be an absolute https:// (or http://) URI without user info");
                jwksUri = null;
            }
        }
        else if (JwksDocument.Validate(jwks!) is { } problem)
        {
            ctx.Error(jwksNode!, $"{path}.jwks", problem);
        }

        var headers = ImmutableArray.CreateBuilder<JwtHeaderLocation>();
        var headersNode = ctx.Sequence(Child(rule, "fromHeaders"), rule, $"{path}.fromHeaders", required: false);
        for (var i = 0; headersNode is not null && i < headersNode.Children.Count; i++)
        {
            var itemPath = $"{path}.fromHeaders[{i}]";
            var item = ctx.Mapping(headersNode.Children[i], headersNode, itemPath, required: true);
            if (item is null)
            {
                continue;
            }

            foreach (var key in item.Children.Keys)
            {
                if ((key as YamlScalarNode)?.Value is not ("name" or "prefix"))
                {
                    ctx.Error(key, $"{itemPath}.{(key as YamlScalarNode)?.Value}", "is not supported; use name and prefix");
                }
            }

            var headerName = ctx.String(Child(item, "name"), $"{itemPath}.name");
            if (string.IsNullOrEmpty(headerName) || !IsHeaderName(headerName))
            {
                ctx.Error(Child(item, "name") ?? item, $"{itemPath}.name", $"must be an HTTP header name (got '{headerName}')");
                continue;
            }

            headers.Add(new JwtHeaderLocation(headerName.ToLowerInvariant(), ctx.String(Child(item, "prefix"), $"{itemPath}.prefix") ?? string.Empty));
        }

        var parameters = StringList(ctx, Child(rule, "fromParams"), $"{path}.fromParams");
        if (parameters.Any(string.IsNullOrEmpty))
        {
            ctx.Error(Child(rule, "fromParams")!, $"{path}.fromParams", "must not contain empty strings");
        }

        var forward = false;
        if (Child(rule, "forwardOriginalToken") is { } forwardNode)
        {
            var text = ctx.String(forwardNode, $"{path}.forwardOriginalToken");
            if (!bool.TryParse(text, out forward))
            {
                ctx.Error(forwardNode, $"{path}.forwardOriginalToken", $"must be true or false (got '{text}')");
            }
        }

        var payloadHeader = ctx.String(Child(rule, "outputPayloadToHeader"), $"{path}.outputPayloadToHeader");
        if (payloadHeader is not null && !IsHeaderName(payloadHeader))
        {
            ctx.Error(Child(rule, "outputPayloadToHeader")!, $"{path}.outputPayloadToHeader", $"must be an HTTP header name (got '{payloadHeader}')");
        }

        var claimHeaders = ImmutableArray.CreateBuilder<JwtClaimToHeader>();
        var claimsNode = ctx.Sequence(Child(rule, "outputClaimToHeaders"), rule, $"{path}.outputClaimToHeaders", required: false);
        for (var i = 0; claimsNode is not null && i < claimsNode.Children.Count; i++)
        {
            var itemPath = $"{path}.outputClaimToHeaders[{i}]";
            var item = ctx.Mapping(claimsNode.Children[i], claimsNode, itemPath, required: true);
            if (item is null)
            {
                continue;
            }

            foreach (var key in item.Children.Keys)
            {
                if ((key as YamlScalarNode)?.Value is not ("header" or "claim"))
                {
                    ctx.Error(key, $"{itemPath}.{(key as YamlScalarNode)?.Value}", "is not supported; use header and claim");
                }
            }

            var header = ctx.String(Child(item, "header"), $"{itemPath}.header");
            var claim = ctx.String(Child(item, "claim"), $"{itemPath}.claim");
            if (string.IsNullOrEmpty(header) || !IsHeaderName(header))
            {
                ctx.Error(Child(item, "header") ?? item, $"{itemPath}.header", $"must be an HTTP header name (got '{header}')");
            }
            else if (string.IsNullOrEmpty(claim))
            {
                ctx.Error(Child(item, "claim") ?? item, $"{itemPath}.claim", "is required");
            }
            else
            {
                claimHeaders.Add(new JwtClaimToHeader(header.ToLowerInvariant(), claim));
            }
        }

        var spaceDelimited = StringList(ctx, Child(rule, "spaceDelimitedClaims"), $"{path}.spaceDelimitedClaims");
        if (ctx.ErrorCount != before || string.IsNullOrEmpty(issuer))
        {
            return null;
        }

        return new JwtRuleModel(issuer, audiences, jwksUri, string.IsNullOrEmpty(jwks) ? null : jwks, headers.ToImmutable(), parameters, forward,
            string.IsNullOrEmpty(payloadHeader) ? null : payloadHeader.ToLowerInvariant(), claimHeaders.ToImmutable(), spaceDelimited);
    }

    /// <summary>RFC 9110 token characters (what Envoy's HTTP_HEADER_NAME accepts, minus pseudo-headers).</summary>
    private static bool IsHeaderName(string value) =>
        value.Length is > 0 and <= 256 && value.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal));

    /// <summary>
    /// <c>request.auth.claims[a][b]</c> → <c>["a", "b"]</c>, or null when the brackets are malformed (empty name, text
    /// between or after brackets, a '[' inside a name).
    /// </summary>
    private static ImmutableArray<string>? ParseClaimPath(string key)
    {
        var rest = key.AsSpan(ConditionKeys.RequestClaims.Length);
        var path = ImmutableArray.CreateBuilder<string>();
        while (!rest.IsEmpty)
        {
            if (rest[0] != '[')
            {
                return null;
            }

            var end = rest.IndexOf(']');
            if (end <= 1 || rest[1..end].Contains('['))
            {
                return null;
            }

            path.Add(rest[1..end].ToString());
            rest = rest[(end + 1)..];
        }

        return path.Count == 0 ? null : path.ToImmutable();
    }
}
