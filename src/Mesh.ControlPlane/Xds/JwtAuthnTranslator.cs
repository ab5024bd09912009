using System.Globalization;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>The JWKS of a <c>jwksUri</c> as last fetched by the control plane, or null when it never had good keys.</summary>
internal interface IJwksSource
{
    string? GetJwks(Uri jwksUri);
}

/// <summary>
/// RequestAuthentication → envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication, as istiod builds it: one
/// provider <c>origins-&lt;i&gt;</c> per jwtRule (keys inlined as <c>local_jwks.inline_string</c>), payload in metadata
/// <c>payload</c>, CORS preflight bypassed, and a requirement that lets a request without a token through while any token
/// present must verify with some provider: <c>requires_any{P, allow_missing}</c> for one provider, and for several
/// <c>OR{P1, …, Pn, AND{OR{P1, allow_missing}, …}}</c>.
/// </summary>
internal static class JwtAuthnTranslator
{
    public const string FilterName = RbacTranslator.JwtFilterName;
    public const string PayloadInMetadata = RbacTranslator.JwtPayloadKey;
    public const uint ClockSkewSeconds = 60;

    /// <summary>Claims split on spaces in metadata whatever the rule says (Istio's defaults).</summary>
    public static readonly string[] DefaultSpaceDelimitedClaims = ["scope", "permission"];

    public static string ProviderName(int index) => "origins-" + index.ToString(CultureInfo.InvariantCulture);

    /// <summary>The filter config for the merged rules of <paramref name="policies"/>, or null when they have none.</summary>
    public static JwtAuthentication? Build(IEnumerable<RequestAuthenticationModel> policies, IJwksSource? jwks)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var rules = policies.OrderBy(p => p.Namespace, StringComparer.Ordinal).ThenBy(p => p.Name, StringComparer.Ordinal).SelectMany(p => p.JwtRules).ToList();
        if (rules.Count == 0)
        {
            return null;
        }

        var config = new JwtAuthentication { BypassCorsPreflight = true };
        for (var i = 0; i < rules.Count; i++)
        {
            config.Providers[ProviderName(i)] = Provider(rules[i], jwks);
        }

        JwtRequirement requirement;
        if (rules.Count == 1)
        {
            requirement = Any(Provider(0), AllowMissing());
        }
        else
        {
            var all = new JwtRequirementAndList();
            var any = new JwtRequirementOrList();
            for (var i = 0; i < rules.Count; i++)
            {
                any.Requirements.Add(Provider(i));
                all.Requirements.Add(Any(Provider(i), AllowMissing()));
            }

            any.Requirements.Add(new JwtRequirement { RequiresAll = all });
            requirement = new JwtRequirement { RequiresAny = any };
        }

        config.Rules.Add(new RequirementRule { Match = new RouteMatch { Prefix = "/" }, Requires = requirement });
        return config;
    }

    public static JwtProvider Provider(JwtRuleModel rule, IJwksSource? jwks)
    {
        ArgumentNullException.ThrowIfNull(rule);
        // Re-serialised from the public members only: the loader and the resolver refuse private ones, this makes sure.
        var inline = JwksDocument.PublicOnly(rule.Jwks ?? (rule.JwksUri is { } uri ? jwks?.GetJwks(uri) : null) ?? JwksDocument.Empty);
        var provider = new JwtProvider
        {
            Issuer = rule.Issuer,
            Audiences = { rule.Audiences },
            LocalJwks = new DataSource { InlineString = inline },
            Forward = rule.ForwardOriginalToken,
            FromHeaders = { rule.FromHeaders.Select(h => new JwtHeader { Name = h.Name, ValuePrefix = h.Prefix }) },
            FromParams = { rule.FromParams },
            ForwardPayloadHeader = rule.OutputPayloadToHeader ?? string.Empty,
            PayloadInMetadata = PayloadInMetadata,
            ClockSkewSeconds = ClockSkewSeconds,
            ClaimToHeaders = { rule.OutputClaimToHeaders.Select(c => new Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtClaimToHeader { HeaderName = c.Header, ClaimName = c.Claim }) },
            NormalizePayloadInMetadata = new JwtProvider.Types.NormalizePayload
            {
                SpaceDelimitedClaims = { DefaultSpaceDelimitedClaims.Concat(rule.SpaceDelimitedClaims).Distinct(StringComparer.Ordinal) },
            },
        };
        return provider;
    }

    private static JwtRequirement Provider(int index) => new() { ProviderName = ProviderName(index) };

    private static JwtRequirement AllowMissing() => new() { AllowMissing = new Google.Protobuf.WellKnownTypes.Empty() };

    private static JwtRequirement Any(params JwtRequirement[] requirements) =>
        new() { RequiresAny = new JwtRequirementOrList { Requirements = { requirements } } };
}
