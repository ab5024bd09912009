using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using JwtClaimToHeader = Mesh.ControlPlane.Model.JwtClaimToHeader;

namespace Mesh.ControlPlane.Tests.Xds;

public sealed class JwtAuthnTranslatorTests
{
    private const string Jwks = """{"keys":[{"kty":"RSA","kid":"k1","n":"sXch","e":"AQAB"}]}""";

    private static JwtRuleModel Rule(string issuer = "https://issuer", Uri? jwksUri = null) =>
        new(issuer, ["orders"], jwksUri, jwksUri is null ? Jwks : null, [new JwtHeaderLocation("x-jwt", "Token ")], ["token"], true, "x-payload",
            [new JwtClaimToHeader("x-sub", "sub")], ["roles"]);

    private static RequestAuthenticationModel Ra(string ns, string name, ImmutableSortedDictionary<string, string>? selector, params JwtRuleModel[] rules) =>
        new(ns, name, selector, [.. rules], "ra.yaml", 1);

    [Fact]
    public void Build_OneRule_ProviderAsIstiodBuildsIt()
    {
        var config = JwtAuthnTranslator.Build([Ra("default", "ra", null, Rule())], null)!;

        var provider = Assert.Single(config.Providers).Value;
        Assert.Equal("https://issuer", provider.Issuer);
        Assert.Equal(["orders"], provider.Audiences);
        Assert.Equal(Jwks, provider.LocalJwks.InlineString);
        Assert.Equal("x-jwt", provider.FromHeaders[0].Name);
        Assert.Equal("Token ", provider.FromHeaders[0].ValuePrefix);
        Assert.Equal(["token"], provider.FromParams);
        Assert.True(provider.Forward);
        Assert.Equal("x-payload", provider.ForwardPayloadHeader);
        Assert.Equal("payload", provider.PayloadInMetadata);
        Assert.Equal(60u, provider.ClockSkewSeconds);
        Assert.Equal(["scope", "permission", "roles"], provider.NormalizePayloadInMetadata.SpaceDelimitedClaims);
        Assert.True(config.BypassCorsPreflight);
        var requirement = Assert.Single(config.Rules).Requires;
        Assert.Equal("origins-0", requirement.RequiresAny.Requirements[0].ProviderName);
        Assert.NotNull(requirement.RequiresAny.Requirements[1].AllowMissing);
    }

    [Fact]
    public void Build_TwoRules_OrOfProvidersAndAndOfAllowMissing()
    {
        var config = JwtAuthnTranslator.Build([Ra("default", "b", null, Rule("b")), Ra("default", "a", null, Rule("a"))], null)!;

        Assert.Equal("a", config.Providers["origins-0"].Issuer);
        var any = config.Rules[0].Requires.RequiresAny.Requirements;
        Assert.Equal(3, any.Count);
        Assert.Equal(["origins-0", "origins-1"], any.Take(2).Select(r => r.ProviderName));
        var all = any[2].RequiresAll.Requirements;
        Assert.All(all, r => Assert.NotNull(r.RequiresAny.Requirements[1].AllowMissing));
    }

    [Fact]
    public void Build_JwksUriWithoutKeys_EmptyKeySet_WithKeys_Inlined()
    {
        var uri = new Uri("https://issuer/keys");
        var rule = Rule(jwksUri: uri);

        Assert.Equal(JwksDocument.Empty, JwtAuthnTranslator.Build([Ra("default", "ra", null, rule)], new Source(null))!.Providers["origins-0"].LocalJwks.InlineString);
        Assert.Equal(Jwks, JwtAuthnTranslator.Build([Ra("default", "ra", null, rule)], new Source(Jwks))!.Providers["origins-0"].LocalJwks.InlineString);
    }

    [Fact]
    public void BuildAll_SelectorRootAndOtherNamespace_JwtFilterBeforeRbacOnlyWhereApplicable()
    {
        var orders = TestModels.Workload("10.0.0.5", new Dictionary<string, uint> { ["http"] = 8080 });
        var billing = TestModels.Workload("10.0.0.6", new Dictionary<string, uint> { ["http"] = 8080 }, new Dictionary<string, string> { ["app"] = "billing" });
        var selector = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [new KeyValuePair<string, string>("app", "orders")]);
        var model = new ModelSnapshot(1, new YamlConfig([], [orders, billing], [])
        {
            RequestAuthentications = [Ra("default", "orders-only", selector, Rule("o")), Ra("istio-system", "mesh", null, Rule("m")), Ra("other", "elsewhere", null, Rule("x"))],
            AuthorizationPolicies = [new AuthorizationPolicyModel("default", "allow", null, AuthorizationAction.Allow, [new AuthorizationRule([], [], [])], "a.yaml", 1)],
        }, []);

        var listeners = InboundListenerTranslator.BuildAll(model, [], "istio-system");

        var ordersFilters = Filters(listeners[InboundListenerTranslator.ListenerName("10.0.0.5", 8080)].Resource.Unpack<Listener>());
        Assert.Equal(["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac", "envoy.filters.http.router"], ordersFilters.Select(f => f.Name));
        Assert.Equal(["m", "o"], ordersFilters[0].TypedConfig.Unpack<JwtAuthentication>().Providers.Values.Select(p => p.Issuer).Order());
        var billingJwt = Filters(listeners[InboundListenerTranslator.ListenerName("10.0.0.6", 8080)].Resource.Unpack<Listener>())[0].TypedConfig.Unpack<JwtAuthentication>();
        Assert.Equal(["m"], billingJwt.Providers.Values.Select(p => p.Issuer));
    }

    [Fact]
    public void RequestPrincipalId_SplitAtLastSlash()
    {
        var exact = RbacTranslator.RequestPrincipalId("https://issuer.example.com/a/alice");
        var (iss, sub) = (exact.AndIds.Ids[0].Metadata, exact.AndIds.Ids[1].Metadata);

        Assert.Equal("envoy.filters.http.jwt_authn", iss.Filter);
        Assert.Equal(["payload", "iss"], iss.Path.Select(p => p.Key));
        Assert.Equal("https://issuer.example.com/a", iss.Value.StringMatch.Exact);
        Assert.Equal(["payload", "sub"], sub.Path.Select(p => p.Key));
        Assert.Equal("alice", sub.Value.StringMatch.Exact);

        var any = RbacTranslator.RequestPrincipalId("*");
        Assert.All(any.AndIds.Ids, id => Assert.Equal(".+", id.Metadata.Value.StringMatch.SafeRegex.Regex)); // Istio's "*": non-empty strings
        var issuerWildcard = RbacTranslator.RequestPrincipalId("https://issuer/*");
        Assert.Equal("https://issuer", issuerWildcard.AndIds.Ids[0].Metadata.Value.StringMatch.Exact);
        Assert.True(issuerWildcard.AndIds.Ids[1].Metadata.Value.PresentMatch);
        var subSuffix = RbacTranslator.RequestPrincipalId("*/alice");
        Assert.True(subSuffix.AndIds.Ids[0].Metadata.Value.PresentMatch);
        Assert.Equal("alice", subSuffix.AndIds.Ids[1].Metadata.Value.StringMatch.Exact);
    }

    [Fact]
    public void ClaimId_NestedPath_StringOrListElement()
    {
        var claim = RbacTranslator.ClaimId(["realm", "role"], "ops").Metadata;

        Assert.Equal(["payload", "realm", "role"], claim.Path.Select(p => p.Key));
        Assert.Equal("ops", claim.Value.OrMatch.ValueMatchers[0].StringMatch.Exact);
        Assert.Equal("ops", claim.Value.OrMatch.ValueMatchers[1].ListMatch.OneOf.StringMatch.Exact);
    }

    [Fact]
    public void BuildPolicy_NotRequestPrincipals_NotId()
    {
        var rule = new AuthorizationRule([new RuleSource([], [], [], []) { NotRequestPrincipals = ["*"] }], [], []);

        var principal = Assert.Single(RbacTranslator.BuildPolicy(rule).Principals);

        Assert.Equal(Principal.IdentifierOneofCase.NotId, principal.IdentifierCase);
        Assert.Equal(Principal.IdentifierOneofCase.AndIds, principal.NotId.IdentifierCase);
    }

    [Fact]
    public void Provider_KeysWithPrivateMembers_OnlyPublicMembersInlined()
    {
        // Defence in depth: whatever reaches the translator (a fetched set, an inline one), workloads get public keys only.
        const string leaky = """{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB","d":"c2VjcmV0","p":"cA","q":"cQ","dp":"ZHA","dq":"ZHE","qi":"cWk","oth":[{"r":"cg"}],"x5u":"https://x"},{"kty":"EC","kid":"e1","crv":"P-256","x":"eA","y":"eQ","d":"c2VjcmV0"}]}""";
        const string expected = """{"keys":[{"kty":"RSA","kid":"k1","use":"sig","alg":"RS256","n":"sXch","e":"AQAB"},{"kty":"EC","kid":"e1","crv":"P-256","x":"eA","y":"eQ"}]}""";
        var fromUri = Rule(jwksUri: new Uri("https://issuer/keys"));
        var inline = Rule() with { Jwks = leaky };

        Assert.Equal(expected, JwtAuthnTranslator.Provider(fromUri, new Source(leaky)).LocalJwks.InlineString);
        Assert.Equal(expected, JwtAuthnTranslator.Provider(inline, null).LocalJwks.InlineString);
        Assert.Equal(JwksDocument.Empty, JwtAuthnTranslator.Provider(Rule() with { Jwks = "not json" }, null).LocalJwks.InlineString);
    }

    private static List<HttpFilter> Filters(Listener listener) =>
        [.. listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>().HttpFilters];

    private sealed class Source(string? jwks) : IJwksSource
    {
        public string? GetJwks(Uri jwksUri) => jwks;
    }
}
