using Mesh.ControlPlane.Model;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// AuthorizationPolicy → envoy.config.rbac.v3, shaped like Istio's authz builder: one Policy per rule named
/// <c>ns[&lt;ns&gt;]-policy[&lt;name&gt;]-rule[&lt;i&gt;]</c>; each <c>from</c> entry is one principal and each <c>to</c>
/// entry one permission (OR across entries, AND across fields); <c>not*</c> fields become not_id / not_rule.
/// </summary>
/// <remarks>
/// Our StringMatcher subset has no regex, so two Istio regexes are expressed differently: a namespace is
/// "authenticated, principal starts with <c>spiffe://</c> and contains <c>/ns/&lt;ns&gt;/sa/</c>" (trust domains and
/// service accounts cannot contain '/'), and a host also matches with any <c>:port</c> suffix.
/// </remarks>
internal static class RbacTranslator
{
    public const string SpiffePrefix = "spiffe://";

    /// <summary>The jwt_authn filter whose metadata <c>payload</c> holds the validated token's claims.</summary>
    public const string JwtFilterName = "envoy.filters.http.jwt_authn";
    public const string JwtPayloadKey = "payload";

    public static string PolicyName(string ns, string name, int rule) =>
        $"ns[{ns}]-policy[{name}]-rule[{rule.ToString(System.Globalization.CultureInfo.InvariantCulture)}]";

    /// <summary>The RBAC config for the policies of <paramref name="action"/>, or null when none applies; paths match per <paramref name="paths"/> (default <see cref="InboundPathSettings.Default"/>).</summary>
    public static RBAC? Build(IEnumerable<AuthorizationPolicyModel> policies, AuthorizationAction action, InboundPathSettings? paths = null)
    {
        ArgumentNullException.ThrowIfNull(policies);
        paths ??= InboundPathSettings.Default;
        var selected = policies.Where(p => p.Action == action).OrderBy(p => p.Namespace, StringComparer.Ordinal).ThenBy(p => p.Name, StringComparer.Ordinal).ToList();
        if (selected.Count == 0)
        {
            return null;
        }

        var rbac = new RBAC { Action = action == AuthorizationAction.Deny ? RBAC.Types.Action.Deny : RBAC.Types.Action.Allow };
        foreach (var policy in selected)
        {
            // An ALLOW policy without rules (allow-nothing) contributes no Policy: the ALLOW filter then matches nothing.
            for (var i = 0; i < policy.Rules.Length; i++)
            {
                rbac.Policies[PolicyName(policy.Namespace, policy.Name, i)] = BuildPolicy(policy.Rules[i], paths);
            }
        }

        return rbac;
    }

    public static Policy BuildPolicy(AuthorizationRule rule, InboundPathSettings? paths = null)
    {
        ArgumentNullException.ThrowIfNull(rule);
        paths ??= InboundPathSettings.Default;
        Permission PathRule(string value) => Path(value, paths);
        var conditions = rule.When.Select(Condition).ToList();
        var policy = new Policy();
        if (rule.From.IsEmpty)
        {
            policy.Principals.Add(AndIds(conditions));
        }

        foreach (var source in rule.From)
        {
            var ids = new List<Principal>();
            AddIds(ids, source.Principals, PrincipalId, negate: false);
            AddIds(ids, source.NotPrincipals, PrincipalId, negate: true);
            AddIds(ids, source.Namespaces, NamespaceId, negate: false);
            AddIds(ids, source.NotNamespaces, NamespaceId, negate: true);
            AddRequestPrincipalIds(ids, source);
            ids.AddRange(conditions);
            policy.Principals.Add(AndIds(ids));
        }

        if (rule.To.IsEmpty)
        {
            policy.Permissions.Add(new Permission { Any = true });
        }

        foreach (var operation in rule.To)
        {
            var rules = new List<Permission>();
            AddRules(rules, operation.Methods, Method, negate: false);
            AddRules(rules, operation.NotMethods, Method, negate: true);
            AddRules(rules, operation.Paths, PathRule, negate: false);
            AddRules(rules, operation.NotPaths, PathRule, negate: true);
            AddRules(rules, [.. operation.Ports.Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture))], Port, negate: false);
            AddRules(rules, [.. operation.NotPorts.Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture))], Port, negate: true);
            AddRules(rules, operation.Hosts, Host, negate: false);
            AddRules(rules, operation.NotHosts, Host, negate: true);
            policy.Permissions.Add(rules.Count switch
            {
                0 => new Permission { Any = true },
                1 => rules[0],
                _ => new Permission { AndRules = new Permission.Types.Set { Rules = { rules } } },
            });
        }

        return policy;
    }

    /// <summary>Istio string match: <c>*</c> presence, <c>abc*</c> prefix, <c>*abc</c> suffix, else exact.</summary>
    public static StringMatcher Match(string value, string exactPrefix = "", bool ignoreCase = false)
    {
        ArgumentNullException.ThrowIfNull(value);
        var matcher = value switch
        {
            "*" => new StringMatcher { Prefix = exactPrefix },
            _ when value.EndsWith('*') => new StringMatcher { Prefix = exactPrefix + value[..^1] },
            _ when value.StartsWith('*') => new StringMatcher { Suffix = value[1..] },
            _ => new StringMatcher { Exact = exactPrefix + value },
        };
        matcher.IgnoreCase = ignoreCase;
        return matcher;
    }

    private static Principal Condition(RuleCondition condition)
    {
        Func<string, Principal> id = condition.Key switch
        {
            ConditionKeys.SourcePrincipal => PrincipalId,
            ConditionKeys.SourceNamespace => NamespaceId,
            ConditionKeys.RequestPrincipal or ConditionKeys.RequestAudiences or ConditionKeys.RequestPresenter or ConditionKeys.RequestClaims => RequestAuthId(condition),
            _ => value => new Principal { Header = Header(condition.HeaderName!, value) },
        };
        var ids = new List<Principal>();
        AddIds(ids, condition.Values, id, negate: false);
        AddIds(ids, condition.NotValues, id, negate: true);
        return AndIds(ids);
    }

    private static void AddRequestPrincipalIds(List<Principal> ids, RuleSource source)
    {
        AddIds(ids, source.RequestPrincipals, RequestPrincipalId, negate: false);
        AddIds(ids, source.NotRequestPrincipals, RequestPrincipalId, negate: true);
    }

    /// <summary>The JWT condition keys, on the jwt_authn payload metadata as Istio's "extended" JWT principals.</summary>
    private static Func<string, Principal> RequestAuthId(RuleCondition condition) => condition.Key switch
    {
        ConditionKeys.RequestPrincipal => RequestPrincipalId,
        ConditionKeys.RequestAudiences => value => ClaimId(["aud"], value),
        ConditionKeys.RequestPresenter => value => ClaimId(["azp"], value),
        _ => value => ClaimId(condition.ClaimPath, value),
    };

    /// <summary>
    /// A request principal <c>iss/sub</c>, split at the last '/' (an issuer may be a URL): AND of the payload's
    /// <c>iss</c> and <c>sub</c> matchers; <c>*</c> = both non-empty strings (Istio's regex <c>.+</c>: a token with an
    /// empty or non-string <c>sub</c> has no principal), <c>*x</c> and <c>x*</c> glob the part they touch.
    /// </summary>
    public static Principal RequestPrincipalId(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var slash = value.LastIndexOf('/');
        var found = slash >= 0;
        var (iss, sub) = found ? (value[..slash], value[(slash + 1)..]) : (value, string.Empty);
        ValueMatcher matchIss, matchSub;
        if (value == "*")
        {
            (matchIss, matchSub) = (NonEmptyString(), NonEmptyString());
        }
        else if (value.StartsWith('*'))
        {
            (matchIss, matchSub) = found
                ? (iss == "*" ? Present() : StringValue(new StringMatcher { Suffix = iss[1..] }), StringValue(new StringMatcher { Exact = sub }))
                : (Present(), StringValue(new StringMatcher { Suffix = value[1..] }));
        }
        else if (value.EndsWith('*'))
        {
            (matchIss, matchSub) = found
                ? (StringValue(new StringMatcher { Exact = iss }), sub == "*" ? Present() : StringValue(new StringMatcher { Prefix = sub[..^1] }))
                : (StringValue(new StringMatcher { Prefix = value[..^1] }), Present());
        }
        else
        {
            (matchIss, matchSub) = (StringValue(new StringMatcher { Exact = iss }), StringValue(new StringMatcher { Exact = sub }));
        }

        return new Principal
        {
            AndIds = new Principal.Types.Set { Ids = { Metadata(["iss"], matchIss), Metadata(["sub"], matchSub) } },
        };
    }

    /// <summary>A claim (nested path) equal to the value or, when the claim is a list, with an element equal to it.</summary>
    public static Principal ClaimId(IReadOnlyList<string> claimPath, string value)
    {
        ArgumentNullException.ThrowIfNull(claimPath);
        var single = StringValue(Match(value));
        var matcher = new ValueMatcher
        {
            OrMatch = new OrMatcher { ValueMatchers = { single, new ValueMatcher { ListMatch = new ListMatcher { OneOf = single } } } },
        };
        return Metadata(claimPath, matcher);
    }

    private static Principal Metadata(IEnumerable<string> claimPath, ValueMatcher value)
    {
        var metadata = new MetadataMatcher { Filter = JwtFilterName, Value = value };
        metadata.Path.Add(new MetadataMatcher.Types.PathSegment { Key = JwtPayloadKey });
        foreach (var key in claimPath)
        {
            metadata.Path.Add(new MetadataMatcher.Types.PathSegment { Key = key });
        }

        return new Principal { Metadata = metadata };
    }

    private static ValueMatcher Present() => new() { PresentMatch = true };

    /// <summary>Istio's matcher for "any principal": safe_regex <c>.+</c> (a string of at least one character).</summary>
    private static ValueMatcher NonEmptyString() => StringValue(new StringMatcher { SafeRegex = new RegexMatcher { Regex = ".+" } });

    private static ValueMatcher StringValue(StringMatcher matcher) => new() { StringMatch = matcher };

    private static Principal PrincipalId(string value) =>
        value == "*"
            ? new Principal { Authenticated = new Principal.Types.Authenticated() }
            : new Principal { Authenticated = new Principal.Types.Authenticated { PrincipalName = Match(value, SpiffePrefix) } };

    /// <summary>
    /// A namespace as the peer's SPIFFE ID <c>spiffe://&lt;td&gt;/ns/&lt;ns&gt;/sa/&lt;sa&gt;</c> shows it: <c>*</c> any
    /// authenticated peer; a name the whole <c>/ns/&lt;ns&gt;/sa/</c> segment; <c>test-*</c> or <c>*-prod</c> (Istio's prefix
    /// and suffix wildcards, which istiod turns into the regex <c>.*/ns/test-.*/.*</c>) a full-match safe_regex that keeps
    /// the wildcard inside the namespace segment, so no spelling of the trust domain or service account can satisfy it.
    /// </summary>
    private static Principal NamespaceId(string ns) =>
        ns == "*"
            ? new Principal { Authenticated = new Principal.Types.Authenticated() }
            : ns.Contains('*', StringComparison.Ordinal)
            ? new Principal
            {
                Authenticated = new Principal.Types.Authenticated
                {
                    PrincipalName = new StringMatcher { SafeRegex = new RegexMatcher { Regex = NamespaceWildcardRegex(ns) } },
                },
            }
            : new Principal
            {
                AndIds = new Principal.Types.Set
                {
                    Ids =
                    {
                        new Principal { Authenticated = new Principal.Types.Authenticated { PrincipalName = new StringMatcher { Prefix = SpiffePrefix } } },
                        new Principal { Authenticated = new Principal.Types.Authenticated { PrincipalName = new StringMatcher { Contains = $"/ns/{ns}/sa/" } } },
                    },
                },
            };

    /// <summary>The full-match RE2 pattern of a SPIFFE ID whose namespace starts (<c>p*</c>) or ends (<c>*s</c>) with the literal part.</summary>
    internal static string NamespaceWildcardRegex(string ns)
    {
        var literal = RegexLiteral(ns.Trim('*'));
        var segment = ns.EndsWith('*') ? $"{literal}[^/]*" : $"[^/]*{literal}";
        return $"spiffe://[^/]+/ns/{segment}/sa/[^/]+";
    }

    // Escapes every character but letters, digits, '_' and '-' (RE2 and .NET read "\." and the like alike).
    private static string RegexLiteral(string text)
    {
        var builder = new System.Text.StringBuilder(text.Length * 2);
        foreach (var ch in text)
        {
            if (!(char.IsAsciiLetterOrDigit(ch) || ch is '_' or '-'))
            {
                builder.Append('\\');
            }

            builder.Append(ch);
        }

        return builder.ToString();
    }

    private static Permission Method(string method) => new() { Header = new HeaderMatcher { Name = ":method", StringMatch = new StringMatcher { Exact = method } } };

    /// <summary>
    /// A <c>paths</c> entry. Ignoring case sets the matcher's ignore_case. Ignoring a trailing slash ORs in the other
    /// spelling that the ASP.NET Core router treats as the same route (it drops one trailing slash): exact <c>/a</c>
    /// also matches <c>/a/</c> (and the reverse), prefix <c>/a/</c> also matches exactly <c>/a</c>, suffix <c>.css</c>
    /// also matches <c>.css/</c>; a prefix not ending in '/' already covers both spellings.
    /// </summary>
    private static Permission Path(string path, InboundPathSettings paths)
    {
        var matcher = Match(path, ignoreCase: paths.IgnoreCase);
        var permission = new Permission { UrlPath = new PathMatcher { Path = matcher } };
        var twin = paths.IgnoreTrailingSlash ? TrailingSlashTwin(matcher) : null;
        return twin is null
            ? permission
            : new Permission { OrRules = new Permission.Types.Set { Rules = { permission, new Permission { UrlPath = new PathMatcher { Path = twin } } } } };
    }

    private static StringMatcher? TrailingSlashTwin(StringMatcher matcher)
    {
        static string Toggle(string value) => value.EndsWith('/') ? value[..^1] : value + "/";
        var twin = matcher.MatchPatternCase switch
        {
            StringMatcher.MatchPatternOneofCase.Exact when matcher.Exact.Length > 1 => new StringMatcher { Exact = Toggle(matcher.Exact) },
            StringMatcher.MatchPatternOneofCase.Prefix when matcher.Prefix.Length > 1 && matcher.Prefix.EndsWith('/') => new StringMatcher { Exact = matcher.Prefix[..^1] },
            StringMatcher.MatchPatternOneofCase.Suffix when matcher.Suffix.Length > 1 => new StringMatcher { Suffix = Toggle(matcher.Suffix) },
            _ => null,
        };
        if (twin is not null)
        {
            twin.IgnoreCase = matcher.IgnoreCase;
        }

        return twin;
    }

    private static Permission Port(string port) => new() { DestinationPort = uint.Parse(port, System.Globalization.CultureInfo.InvariantCulture) };

    private static Permission Host(string host)
    {
        if (host == "*")
        {
            return new Permission { Header = new HeaderMatcher { Name = ":authority", PresentMatch = true } };
        }

        Permission Authority(StringMatcher matcher) => new() { Header = new HeaderMatcher { Name = ":authority", StringMatch = matcher } };
        if (host.EndsWith('*'))
        {
            return Authority(new StringMatcher { Prefix = host[..^1], IgnoreCase = true });
        }

        var withPort = host.StartsWith('*')
            ? new StringMatcher { Contains = host[1..] + ":", IgnoreCase = true }
            : new StringMatcher { Prefix = host + ":", IgnoreCase = true };
        return new Permission
        {
            OrRules = new Permission.Types.Set { Rules = { Authority(Match(host, ignoreCase: true)), Authority(withPort) } },
        };
    }

    private static HeaderMatcher Header(string name, string value) =>
        value == "*" ? new HeaderMatcher { Name = name, PresentMatch = true } : new HeaderMatcher { Name = name, StringMatch = Match(value) };

    private static void AddIds(List<Principal> ids, IReadOnlyList<string> values, Func<string, Principal> map, bool negate)
    {
        if (values.Count == 0)
        {
            return;
        }

        var or = values.Count == 1 ? map(values[0]) : new Principal { OrIds = new Principal.Types.Set { Ids = { values.Select(map) } } };
        ids.Add(negate ? new Principal { NotId = or } : or);
    }

    private static void AddRules(List<Permission> rules, IReadOnlyList<string> values, Func<string, Permission> map, bool negate)
    {
        if (values.Count == 0)
        {
            return;
        }

        var or = values.Count == 1 ? map(values[0]) : new Permission { OrRules = new Permission.Types.Set { Rules = { values.Select(map) } } };
        rules.Add(negate ? new Permission { NotRule = or } : or);
    }

    private static Principal AndIds(List<Principal> ids) => ids.Count switch
    {
        0 => new Principal { Any = true },
        1 => ids[0],
        _ => new Principal { AndIds = new Principal.Types.Set { Ids = { ids } } },
    };
}
