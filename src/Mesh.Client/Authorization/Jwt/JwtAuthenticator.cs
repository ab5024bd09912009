using System.Globalization;
using Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;
using EnvoyJwtProvider = Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtProvider;

namespace Mesh.Client.Authorization.Jwt;

/// <summary>The result of JWT authentication for one request.</summary>
internal readonly record struct JwtOutcome(JwtStatus Status, JwtPrincipal? Principal, JwtProvider? Provider, string? TokenHeader)
{
    /// <summary>Gets an outcome for a request no rule applies to (no verification, no principal).</summary>
    public static JwtOutcome NotRequired => new(JwtStatus.Ok, null, null, null);

    public bool IsAllowed => Status == JwtStatus.Ok;
}

/// <summary>
/// The compiled envoy.filters.http.jwt_authn config of one inbound listener, immutable per snapshot (keys parsed once).
/// Evaluates the first matching rule's requirement (provider, requires_any, requires_all, allow_missing,
/// allow_missing_or_failed) over the tokens at each provider's locations (as Envoy, a provider fails when any of them
/// fails). Tokens seen before come from the providers' caches, and then the whole decision is synchronous and allocates
/// nothing.
/// </summary>
internal sealed class JwtAuthenticator
{
    /// <summary>Providers per listener we accept; keeps the per-request status array on the stack.</summary>
    public const int MaxProviders = 64;

    private readonly JwtProvider[] _providers;
    private readonly (string Prefix, Requirement Requirement)[] _rules;

    private JwtAuthenticator(JwtProvider[] providers, (string, Requirement)[] rules, bool bypassCorsPreflight)
    {
        _providers = providers;
        _rules = rules;
        BypassCorsPreflight = bypassCorsPreflight;
        OutputHeaders = [.. providers.SelectMany(p => p.ClaimHeaders.Select(c => c.Header).Append(p.PayloadHeader ?? string.Empty))
            .Where(h => h.Length > 0).Distinct(StringComparer.OrdinalIgnoreCase)];
    }

    /// <summary>Gets every header the providers write from a verified token (payload and claim headers).</summary>
    public string[] OutputHeaders { get; }

    public bool BypassCorsPreflight { get; }

    public IReadOnlyList<JwtProvider> Providers => _providers;

    /// <summary>Authenticates <paramref name="request"/>; completes synchronously unless a provider must verify a new token.</summary>
    public ValueTask<JwtOutcome> AuthenticateAsync(HttpRequest request, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (BypassCorsPreflight && HttpMethods.IsOptions(request.Method) && request.Headers.ContainsKey("origin") && request.Headers.ContainsKey("access-control-request-method"))
        {
            return ValueTask.FromResult(JwtOutcome.NotRequired);
        }

        var requirement = Match(request);
        if (requirement is null)
        {
            return ValueTask.FromResult(JwtOutcome.NotRequired);
        }

        Span<JwtStatus> statuses = stackalloc JwtStatus[_providers.Length];
        JwtPrincipal? principal = null;
        int chosen = -1, chosenLocation = -1;
        string? header = null;
        for (var i = 0; i < _providers.Length; i++)
        {
            var provider = _providers[i];
            var status = JwtStatus.Missing;
            JwtPrincipal? first = null;
            var firstLocation = -1;
            string? firstHeader = null;

            // As Envoy: the last location first, stopping at the first failure; the first location's principal is the one kept.
            for (var location = provider.LocationCount - 1; location >= 0 && status is JwtStatus.Missing or JwtStatus.Ok; location--)
            {
                var token = provider.ExtractAt(request, location);
                if (!token.Found)
                {
                    continue;
                }

                if (provider.TryGetCached(token, now, out var cached))
                {
                    (status, first, firstLocation, firstHeader) = (JwtStatus.Ok, cached, location, token.HeaderName);
                }
                else if (principal is not null && !string.Equals(principal.Issuer, provider.Issuer, StringComparison.Ordinal)
                         && token.Token.SequenceEqual(_providers[chosen].ExtractAt(request, chosenLocation).Token))
                {
                    // The same token already verified with another issuer: this provider would answer "issuer not configured".
                    status = JwtStatus.UnknownIssuer;
                }
                else
                {
                    return SlowAsync(request, requirement, now);
                }
            }

            statuses[i] = status;
            if (status == JwtStatus.Ok && chosen < 0)
            {
                (principal, chosen, chosenLocation, header) = (first, i, firstLocation, firstHeader);
            }
        }

        return ValueTask.FromResult(Decide(requirement, statuses, principal, chosen, header));
    }

    /// <summary>Compiles the filter config; null (and errors with field paths) when it cannot be enforced.</summary>
    public static JwtAuthenticator? Compile(JwtAuthentication config, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(errors);
        var before = errors.Count;
        if (config.Providers.Count > MaxProviders)
        {
            errors.Add($"{path}.providers: {config.Providers.Count.ToString(CultureInfo.InvariantCulture)} providers; at most {MaxProviders.ToString(CultureInfo.InvariantCulture)} are supported");
            return null;
        }

        var names = config.Providers.Keys.Order(StringComparer.Ordinal).ToList();
        var providers = names.Select(name => Provider(name, config.Providers[name], $"{path}.providers[{name}]", errors)).ToArray();
        var index = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        var rules = new List<(string, Requirement)>();
        for (var i = 0; i < config.Rules.Count; i++)
        {
            var rule = config.Rules[i];
            var rulePath = $"{path}.rules[{i.ToString(CultureInfo.InvariantCulture)}]";
            if (rule.Match is null || rule.Match.PathSpecifierCase != Mesh.Xds.Envoy.Config.Route.V3.RouteMatch.PathSpecifierOneofCase.Prefix || rule.Match.Headers.Count > 0)
            {
                errors.Add($"{rulePath}.match: only a path prefix match is supported");
                continue;
            }

            Requirement? requirement = rule.RequirementTypeCase switch
            {
                RequirementRule.RequirementTypeOneofCase.Requires => Compile(rule.Requires, index, $"{rulePath}.requires", errors, depth: 0),
                RequirementRule.RequirementTypeOneofCase.RequirementName when config.RequirementMap.TryGetValue(rule.RequirementName, out var named) =>
                    Compile(named, index, $"{path}.requirement_map[{rule.RequirementName}]", errors, depth: 0),
                RequirementRule.RequirementTypeOneofCase.RequirementName => Fail(errors, $"{rulePath}.requirement_name: '{rule.RequirementName}' is not in requirement_map"),
                _ => null,
            };
            rules.Add((rule.Match.Prefix, requirement ?? Requirement.AllowAll));
        }

        return errors.Count == before ? new JwtAuthenticator(providers, [.. rules], config.BypassCorsPreflight) : null;
    }

    private Requirement? Match(HttpRequest request)
    {
        foreach (var (prefix, requirement) in _rules)
        {
            if (PathStartsWith(request, prefix))
            {
                return requirement;
            }
        }

        return null;
    }

    private static bool PathStartsWith(HttpRequest request, string prefix)
    {
        var path = request.Path.Value ?? "/";
        var basePath = request.PathBase.Value ?? string.Empty;
        return basePath.Length == 0
            ? path.StartsWith(prefix, StringComparison.Ordinal)
            : string.Concat(basePath, path).StartsWith(prefix, StringComparison.Ordinal);
    }

    private async ValueTask<JwtOutcome> SlowAsync(HttpRequest request, Requirement requirement, DateTimeOffset now)
    {
        var statuses = new JwtStatus[_providers.Length];
        JwtPrincipal? principal = null;
        var chosen = -1;
        string? header = null;
        for (var i = 0; i < _providers.Length; i++)
        {
            var provider = _providers[i];
            var status = JwtStatus.Missing;
            JwtPrincipal? first = null;
            string? firstHeader = null;

            // Envoy verifies every token of the provider's locations and fails when any fails: a valid header token must
            // not carry a forged ?access_token= past the mesh to an app that reads the query.
            for (var location = provider.LocationCount - 1; location >= 0 && status is JwtStatus.Missing or JwtStatus.Ok; location--)
            {
                var token = provider.ExtractAt(request, location);
                if (!token.Found)
                {
                    continue;
                }

                var (tokenStatus, verified) = provider.TryGetCached(token, now, out var cached)
                    ? (JwtStatus.Ok, cached)
                    : await provider.VerifyAsync(token, now).ConfigureAwait(false);
                status = tokenStatus;
                if (tokenStatus == JwtStatus.Ok)
                {
                    (first, firstHeader) = (verified, token.HeaderName);
                }
            }

            statuses[i] = status;
            if (status == JwtStatus.Ok && chosen < 0)
            {
                (principal, chosen, header) = (first, i, firstHeader);
            }
        }

        return Decide(requirement, statuses, principal, chosen, header);
    }

    private JwtOutcome Decide(Requirement requirement, ReadOnlySpan<JwtStatus> statuses, JwtPrincipal? principal, int chosen, string? header)
    {
        var status = requirement.Evaluate(statuses);
        return status == JwtStatus.Ok
            ? new JwtOutcome(JwtStatus.Ok, principal, chosen < 0 ? null : _providers[chosen], header)
            : new JwtOutcome(status, null, null, null);
    }

    private static JwtProvider Provider(string name, EnvoyJwtProvider provider, string path, List<string> errors)
    {
        if (string.IsNullOrEmpty(provider.Issuer))
        {
            errors.Add($"{path}.issuer: is required");
        }

        if (provider.JwksSourceSpecifierCase != EnvoyJwtProvider.JwksSourceSpecifierOneofCase.LocalJwks
            || provider.LocalJwks.SpecifierCase != Mesh.Xds.Envoy.Config.Core.V3.DataSource.SpecifierOneofCase.InlineString)
        {
            errors.Add($"{path}.local_jwks.inline_string: is required (remote JWKS is fetched by the control plane, not by the client)");
        }

        if (provider.FromCookies.Count > 0)
        {
            errors.Add($"{path}.from_cookies: is not supported");
        }

        if (!string.IsNullOrEmpty(provider.PayloadInMetadata) && provider.PayloadInMetadata != "payload")
        {
            errors.Add($"{path}.payload_in_metadata: must be \"payload\" (what RBAC metadata matchers read)");
        }

        foreach (var header in provider.FromHeaders.Where(h => string.IsNullOrEmpty(h.Name)))
        {
            errors.Add($"{path}.from_headers: a header name is required");
        }

        var keys = Keys(provider.LocalJwks?.InlineString ?? string.Empty, $"{path}.local_jwks.inline_string", errors);
        var cacheSize = provider.JwtCacheConfig is { } cache ? (int)Math.Min(cache.JwtCacheSize, 100_000) : JwtTokenCache.DefaultCapacity;
        if (provider.JwtCacheConfig is { JwtCacheSize: 0 })
        {
            cacheSize = JwtTokenCache.DefaultCapacity;
        }

        return new JwtProvider(
            name,
            provider.Issuer,
            [.. provider.Audiences],
            keys,
            [.. provider.FromHeaders.Select(h => (h.Name.ToLowerInvariant(), h.ValuePrefix))],
            [.. provider.FromParams],
            provider.Forward,
            string.IsNullOrEmpty(provider.ForwardPayloadHeader) ? null : provider.ForwardPayloadHeader,
            provider.PadForwardPayloadHeader,
            [.. provider.ClaimToHeaders.Select(c => (c.HeaderName.ToLowerInvariant(), c.ClaimName))],
            TimeSpan.FromSeconds(provider.ClockSkewSeconds == 0 ? 60 : provider.ClockSkewSeconds),
            provider.NormalizePayloadInMetadata?.SpaceDelimitedClaims ?? (IEnumerable<string>)[],
            cacheSize);
    }

    /// <summary>Parses the JWKS once; an empty key set is valid (the control plane's "no keys yet": every token fails).</summary>
    private static JsonWebKey[] Keys(string json, string path, List<string> errors)
    {
        try
        {
            var member = PrivateMember(json);
            if (member is not null)
            {
                // A workload verifies; it must never hold a signing key (one would let it mint tokens for every peer).
                errors.Add($"{path}: {member}: a private key member; only public keys may be sent to workloads");
            }

            var set = new JsonWebKeySet(json);
            var keys = set.Keys.ToArray();
            foreach (var key in keys.Where(k => k.Kty is not (JsonWebAlgorithmsKeyTypes.RSA or JsonWebAlgorithmsKeyTypes.EllipticCurve)))
            {
                errors.Add($"{path}: key '{key.Kid}' has kty '{key.Kty}'; only RSA and EC keys are supported");
            }

            return member is null ? keys : [];
        }
        catch (Exception ex) when (ex is ArgumentException or System.Text.Json.JsonException)
        {
            errors.Add($"{path}: is not a JWKS: {ex.Message}");
            return [];
        }
    }

    /// <summary>"keys[i].member" of the first private member (RFC 7518 §6.2.2, §6.3.2, §6.4.1) in the set, or null.</summary>
    private static string? PrivateMember(string json)
    {
        using var document = System.Text.Json.JsonDocument.Parse(json, new System.Text.Json.JsonDocumentOptions { MaxDepth = 16 });
        if (document.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object
            || !document.RootElement.TryGetProperty("keys", out var keys) || keys.ValueKind != System.Text.Json.JsonValueKind.Array)
        {
            return null; // JsonWebKeySet reports the shape
        }

        var i = 0;
        foreach (var key in keys.EnumerateArray())
        {
            if (Mesh.Xds.Jwt.JwkMembers.FirstPrivate(key) is { } member)
            {
                return $"keys[{i.ToString(CultureInfo.InvariantCulture)}].{member}";
            }

            i++;
        }

        return null;
    }

    private static Requirement? Compile(JwtRequirement requirement, Dictionary<string, int> providers, string path, List<string> errors, int depth)
    {
        if (depth > 16)
        {
            return Fail(errors, $"{path}: requirements nest deeper than 16");
        }

        switch (requirement.RequiresTypeCase)
        {
            case JwtRequirement.RequiresTypeOneofCase.ProviderName:
                return providers.TryGetValue(requirement.ProviderName, out var index)
                    ? new Requirement(RequirementKind.Provider, index, [])
                    : Fail(errors, $"{path}.provider_name: '{requirement.ProviderName}' is not a provider");
            case JwtRequirement.RequiresTypeOneofCase.RequiresAny or JwtRequirement.RequiresTypeOneofCase.RequiresAll:
                var any = requirement.RequiresTypeCase == JwtRequirement.RequiresTypeOneofCase.RequiresAny;
                var list = any ? requirement.RequiresAny.Requirements : requirement.RequiresAll.Requirements;
                var listPath = $"{path}.{(any ? "requires_any" : "requires_all")}.requirements";
                if (list.Count == 0)
                {
                    return Fail(errors, $"{listPath}: must not be empty");
                }

                var children = list.Select((r, i) => Compile(r, providers, $"{listPath}[{i.ToString(CultureInfo.InvariantCulture)}]", errors, depth + 1) ?? Requirement.AllowAll).ToArray();
                return new Requirement(any ? RequirementKind.Any : RequirementKind.All, -1, children);
            case JwtRequirement.RequiresTypeOneofCase.AllowMissing:
                return new Requirement(RequirementKind.AllowMissing, -1, []);
            case JwtRequirement.RequiresTypeOneofCase.AllowMissingOrFailed:
                return Requirement.AllowAll;
            default:
                return Fail(errors, $"{path}: requirement {requirement.RequiresTypeCase} is not supported");
        }
    }

    private static Requirement? Fail(List<string> errors, string message)
    {
        errors.Add(message);
        return null;
    }

    private enum RequirementKind
    {
        Provider,
        Any,
        All,
        AllowMissing,
        AllowMissingOrFailed,
    }

    /// <summary>A compiled JwtRequirement, evaluated over the providers' statuses.</summary>
    private sealed class Requirement(RequirementKind kind, int provider, Requirement[] children)
    {
        public static Requirement AllowAll { get; } = new(RequirementKind.AllowMissingOrFailed, -1, []);

        private static int Specificity(JwtStatus status) => status switch
        {
            JwtStatus.Missing => 0,
            JwtStatus.UnknownIssuer => 1,
            _ => 2,
        };

        public JwtStatus Evaluate(ReadOnlySpan<JwtStatus> statuses)
        {
            switch (kind)
            {
                case RequirementKind.Provider:
                    return statuses[provider];
                case RequirementKind.AllowMissing:
                    // Envoy: satisfied when the token is missing; a token that is present and fails makes it fail.
                    foreach (var status in statuses)
                    {
                        if (status is not (JwtStatus.Missing or JwtStatus.Ok))
                        {
                            return status;
                        }
                    }

                    return JwtStatus.Ok;
                case RequirementKind.Any:
                    var failure = JwtStatus.Missing;
                    foreach (var child in children)
                    {
                        var status = child.Evaluate(statuses);
                        if (status == JwtStatus.Ok)
                        {
                            return JwtStatus.Ok;
                        }

                        // Report the most specific failure: a provider whose issuer matched says more than "missing" or "issuer not configured".
                        if (Specificity(status) > Specificity(failure))
                        {
                            failure = status;
                        }
                    }

                    return failure;
                case RequirementKind.All:
                    foreach (var child in children)
                    {
                        var status = child.Evaluate(statuses);
                        if (status != JwtStatus.Ok)
                        {
                            return status;
                        }
                    }

                    return JwtStatus.Ok;
                default:
                    return JwtStatus.Ok;
            }
        }
    }
}
