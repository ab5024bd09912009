using System.Collections.Immutable;
using System.Globalization;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using EnvoyHeaderMatcher = Mesh.Xds.Envoy.Config.Route.V3.HeaderMatcher;

namespace Mesh.Client.Authorization;

/// <summary>
/// One compiled envoy.config.rbac.v3.RBAC (a DENY or an ALLOW set of policies). No protobuf objects on the hot path:
/// each policy is a matcher tree; a policy matches when any permission and any principal match.
/// </summary>
internal sealed class RbacEngine
{
    /// <summary>Envoy's fields of envoy.extensions.filters.http.rbac.v3.RBAC that the client's subset leaves out.</summary>
    internal static readonly IReadOnlyDictionary<int, string> EnvoyHttpRbacFields = new Dictionary<int, string>
    {
        [4] = "matcher", [5] = "shadow_matcher", [7] = "track_per_rule_stats",
    };

    private static readonly IReadOnlyDictionary<int, string> EnvoyRbacFields = new Dictionary<int, string> { [3] = "audit_logging_options" };

    private static readonly IReadOnlyDictionary<int, string> EnvoyPolicyFields = new Dictionary<int, string>
    {
        [3] = "condition", [4] = "checked_condition", [5] = "cel_config",
    };

    private static readonly IReadOnlyDictionary<int, string> EnvoyPermissionFields = new Dictionary<int, string>
    {
        [7] = "metadata", [11] = "destination_port_range", [12] = "matcher", [13] = "uri_template", [14] = "sourced_metadata",
    };

    private static readonly IReadOnlyDictionary<int, string> EnvoyPrincipalFields = new Dictionary<int, string>
    {
        [12] = "filter_state", [13] = "sourced_metadata", [14] = "custom",
    };

    private readonly CompiledPolicy[] _policies;

    private RbacEngine(bool isDeny, CompiledPolicy[] policies)
    {
        IsDeny = isDeny;
        _policies = policies;
    }

    public bool IsDeny { get; }

    public int PolicyCount => _policies.Length;

    public ImmutableArray<string> PolicyNames => [.. _policies.Select(p => p.Name)];

    /// <summary>The name of the first matching policy (policies in ordinal name order), or null.</summary>
    public string? FirstMatch(in AuthorizationRequest request)
    {
        foreach (var policy in _policies)
        {
            if (policy.Permission.Matches(request) && policy.Principal.Matches(request))
            {
                return policy.Name;
            }
        }

        return null;
    }

    /// <summary>
    /// The name of the first policy matching an opaque TCP connection (no method, path or headers), or null; as Istio builds
    /// TCP filter chains: an ALLOW policy that reads HTTP fields is left out (the allow gets narrower), a DENY policy loses
    /// its HTTP conditions (the deny gets wider), so what TCP cannot check never lets a connection through.
    /// </summary>
    public string? FirstConnectionMatch(in AuthorizationRequest request)
    {
        foreach (var policy in _policies)
        {
            var matches = IsDeny
                ? policy.Permission.MatchesConnection(request) && policy.Principal.MatchesConnection(request)
                : !policy.Permission.UsesHttp && !policy.Principal.UsesHttp && policy.Permission.Matches(request) && policy.Principal.Matches(request);
            if (matches)
            {
                return policy.Name;
            }
        }

        return null;
    }

    /// <summary>Compiles <paramref name="rbac"/>; returns null and adds errors (each with its field path under <paramref name="path"/>) when invalid.</summary>
    public static RbacEngine? Compile(RBAC rbac, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(rbac);
        ArgumentNullException.ThrowIfNull(errors);
        var before = errors.Count;

        // Every field this client does not model is refused (NACK), never skipped: Envoy ANDs a policy's condition with its
        // permissions and principals, so dropping it would widen an ALLOW.
        XdsResourceDecoder.RejectUnknownFields(rbac, path, errors, EnvoyRbacFields);
        if (rbac.Action is not (RBAC.Types.Action.Allow or RBAC.Types.Action.Deny))
        {
            errors.Add($"{path}.action: {rbac.Action} is not supported; use ALLOW or DENY");
        }

        var policies = new List<CompiledPolicy>();
        foreach (var (name, policy) in rbac.Policies.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var policyPath = $"{path}.policies[{name}]";
            XdsResourceDecoder.RejectUnknownFields(policy, policyPath, errors, EnvoyPolicyFields);
            if (policy.Permissions.Count == 0)
            {
                errors.Add($"{policyPath}.permissions: must contain at least one permission");
            }

            if (policy.Principals.Count == 0)
            {
                errors.Add($"{policyPath}.principals: must contain at least one principal");
            }

            var permissions = policy.Permissions.Select((p, i) => Permission(p, $"{policyPath}.permissions[{i}]", errors)).ToArray();
            var principals = policy.Principals.Select((p, i) => Principal(p, $"{policyPath}.principals[{i}]", errors)).ToArray();
            policies.Add(new CompiledPolicy(name, Or(permissions), Or(principals)));
        }

        return errors.Count == before ? new RbacEngine(rbac.Action == RBAC.Types.Action.Deny, [.. policies]) : null;
    }

    private static RbacMatcher Or(RbacMatcher[] children) => children.Length == 1 ? children[0] : new OrMatcher(children);

    private static RbacMatcher Permission(Permission permission, string path, List<string> errors)
    {
        if (!XdsResourceDecoder.RejectUnknownFields(permission, path, errors, EnvoyPermissionFields))
        {
            return AnyMatcher.Instance;
        }

        switch (permission.RuleCase)
        {
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.AndRules:
                XdsResourceDecoder.RejectUnknownFields(permission.AndRules, $"{path}.and_rules", errors);
                return new AndMatcher(Children(permission.AndRules.Rules, $"{path}.and_rules.rules", errors, Permission));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.OrRules:
                XdsResourceDecoder.RejectUnknownFields(permission.OrRules, $"{path}.or_rules", errors);
                return new OrMatcher(Children(permission.OrRules.Rules, $"{path}.or_rules.rules", errors, Permission));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.Any:
                if (!permission.Any)
                {
                    errors.Add($"{path}.any: must be true");
                }

                return AnyMatcher.Instance;
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.Header:
                return Header(permission.Header, $"{path}.header", errors);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.DestinationPort:
                if (permission.DestinationPort is < 1 or > 65535)
                {
                    errors.Add($"{path}.destination_port: {permission.DestinationPort.ToString(CultureInfo.InvariantCulture)} is not a port");
                }

                return new DestinationPortMatcher(permission.DestinationPort);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.NotRule:
                return new NotMatcher(Permission(permission.NotRule, $"{path}.not_rule", errors));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.UrlPath:
                return UrlPath(permission.UrlPath, $"{path}.url_path", errors);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Permission.RuleOneofCase.None:
                errors.Add($"{path}: no rule set (or a rule kind this client does not know)");
                return AnyMatcher.Instance;
            default:
                errors.Add($"{path}: rule {permission.RuleCase} is not supported");
                return AnyMatcher.Instance;
        }
    }

    private static RbacMatcher Principal(Principal principal, string path, List<string> errors)
    {
        if (!XdsResourceDecoder.RejectUnknownFields(principal, path, errors, EnvoyPrincipalFields))
        {
            return AnyMatcher.Instance;
        }

        switch (principal.IdentifierCase)
        {
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.AndIds:
                XdsResourceDecoder.RejectUnknownFields(principal.AndIds, $"{path}.and_ids", errors);
                return new AndMatcher(Children(principal.AndIds.Ids, $"{path}.and_ids.ids", errors, Principal));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.OrIds:
                XdsResourceDecoder.RejectUnknownFields(principal.OrIds, $"{path}.or_ids", errors);
                return new OrMatcher(Children(principal.OrIds.Ids, $"{path}.or_ids.ids", errors, Principal));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.Any:
                if (!principal.Any)
                {
                    errors.Add($"{path}.any: must be true");
                }

                return AnyMatcher.Instance;
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.Authenticated:
                XdsResourceDecoder.RejectUnknownFields(principal.Authenticated, $"{path}.authenticated", errors);
                // A principal name may be a safe_regex (Istio's namespace wildcards): a full match on the non-backtracking
                // engine, linear in the SPIFFE ID, whose length the TLS layer bounds.
                return new AuthenticatedMatcher(principal.Authenticated.PrincipalName is { } name
                    ? StringMatch.Decode(name, $"{path}.authenticated.principal_name", errors, allowRegex: true) ?? new StringMatch(StringMatchKind.Exact, string.Empty, IgnoreCase: false)
                    : null);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.Header:
                return Header(principal.Header, $"{path}.header", errors);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.Metadata:
                return Jwt.JwtMetadataMatcher.Compile(principal.Metadata, $"{path}.metadata", errors);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.NotId:
                return new NotMatcher(Principal(principal.NotId, $"{path}.not_id", errors));
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.UrlPath:
                return UrlPath(principal.UrlPath, $"{path}.url_path", errors);
            case Mesh.Xds.Envoy.Config.Rbac.V3.Principal.IdentifierOneofCase.None:
                errors.Add($"{path}: no identifier set (or an identifier kind this client does not know)");
                return AnyMatcher.Instance;
            default:
                // Ignoring an IP matcher would widen a DENY or an ALLOW's principal set: reject instead.
                errors.Add($"{path}: identifier {principal.IdentifierCase} is not supported");
                return AnyMatcher.Instance;
        }
    }

    private static RbacMatcher[] Children<T>(IReadOnlyList<T> items, string path, List<string> errors, Func<T, string, List<string>, RbacMatcher> compile)
    {
        if (items.Count == 0)
        {
            errors.Add($"{path}: must not be empty");
        }

        var result = new RbacMatcher[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            result[i] = compile(items[i], $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]", errors);
        }

        return result;
    }

    private static UrlPathMatcher UrlPath(PathMatcher matcher, string path, List<string> errors)
    {
        if (matcher.RuleCase != PathMatcher.RuleOneofCase.Path)
        {
            errors.Add($"{path}.path: is required");
            return new UrlPathMatcher(new StringMatch(StringMatchKind.Exact, string.Empty, IgnoreCase: false));
        }

        return new UrlPathMatcher(String(matcher.Path, $"{path}.path", errors));
    }

    private static HeaderMatcher Header(EnvoyHeaderMatcher matcher, string path, List<string> errors)
    {
        if (string.IsNullOrEmpty(matcher.Name))
        {
            errors.Add($"{path}.name: is required");
        }

        StringMatch.TryDecodeHeader(matcher, path, errors, out var match, out var invert);
        return new HeaderMatcher(matcher.Name.ToLowerInvariant(), match, invert);
    }

    internal static StringMatch String(StringMatcher matcher, string path, List<string> errors) =>
        StringMatch.Decode(matcher, path, errors) ?? new StringMatch(StringMatchKind.Exact, string.Empty, IgnoreCase: false);

    private sealed record CompiledPolicy(string Name, RbacMatcher Permission, RbacMatcher Principal);
}
