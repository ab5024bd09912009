using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Rbac.V3;

namespace Mesh.ControlPlane.Tests.Xds;

public sealed class RbacTranslatorTests
{
    private static AuthorizationRule Rule(RuleSource[]? from = null, RuleOperation[]? to = null, RuleCondition[]? when = null) => new([.. from ?? []], [.. to ?? []], [.. when ?? []]);

    [Fact]
    public void BuildPolicy_EmptyRule_AnyPermissionAnyPrincipal()
    {
        var policy = RbacTranslator.BuildPolicy(Rule());

        Assert.True(Assert.Single(policy.Permissions).Any);
        Assert.True(Assert.Single(policy.Principals).Any);
    }

    [Fact]
    public void BuildPolicy_PrincipalsAndNotNamespaces_AndWithinSourceOrAcrossValues()
    {
        var policy = RbacTranslator.BuildPolicy(Rule(from: [new RuleSource(["cluster.local/ns/a/sa/x", "cluster.local/ns/b/*"], [], [], ["prod"])]));

        var and = Assert.Single(policy.Principals).AndIds.Ids;
        Assert.Equal(2, and.Count);
        var or = and[0].OrIds.Ids;
        Assert.Equal("spiffe://cluster.local/ns/a/sa/x", or[0].Authenticated.PrincipalName.Exact);
        Assert.Equal("spiffe://cluster.local/ns/b/", or[1].Authenticated.PrincipalName.Prefix);
        var ns = and[1].NotId.AndIds.Ids;
        Assert.Equal("spiffe://", ns[0].Authenticated.PrincipalName.Prefix);
        Assert.Equal("/ns/prod/sa/", ns[1].Authenticated.PrincipalName.Contains);
    }

    [Fact]
    public void RequestPrincipalId_Star_NonEmptyIssuerAndSubjectAsIstioRegex()
    {
        // Istio compiles requestPrincipals "*" to regex ".+": a token with an empty or non-string sub has no principal.
        var ids = RbacTranslator.RequestPrincipalId("*").AndIds.Ids;

        Assert.Equal(["iss", "sub"], ids.Select(id => id.Metadata.Path[1].Key));
        Assert.All(ids, id =>
        {
            Assert.Equal("payload", id.Metadata.Path[0].Key);
            Assert.False(id.Metadata.Invert);
            Assert.Equal(".+", id.Metadata.Value.StringMatch.SafeRegex.Regex);
        });
    }

    [Fact]
    public void BuildPolicy_Operation_MethodsPathsPortsHosts()
    {
        var policy = RbacTranslator.BuildPolicy(Rule(to: [new RuleOperation(["GET"], [], ["*.css"], ["/admin*"], [8080], [], ["orders"], [])]));

        var rules = Assert.Single(policy.Permissions).AndRules.Rules;
        Assert.Equal(":method", rules[0].Header.Name);
        Assert.Equal("GET", rules[0].Header.StringMatch.Exact);
        var css = rules[1].OrRules.Rules;
        Assert.Equal(".css", css[0].UrlPath.Path.Suffix);
        Assert.Equal(".css/", css[1].UrlPath.Path.Suffix);
        Assert.True(css[0].UrlPath.Path.IgnoreCase && css[1].UrlPath.Path.IgnoreCase);
        Assert.Equal("/admin", rules[2].NotRule.UrlPath.Path.Prefix);
        Assert.Equal(8080u, rules[3].DestinationPort);
        var host = rules[4].OrRules.Rules;
        Assert.Equal(":authority", host[0].Header.Name);
        Assert.Equal("orders", host[0].Header.StringMatch.Exact);
        Assert.True(host[0].Header.StringMatch.IgnoreCase);
        Assert.Equal("orders:", host[1].Header.StringMatch.Prefix);
    }

    [Fact]
    public void BuildPolicy_WhenConditions_BecomePrincipals()
    {
        var policy = RbacTranslator.BuildPolicy(Rule(when: [new RuleCondition(ConditionKeys.RequestHeaders, "x-role", ["admin"], []), new RuleCondition(ConditionKeys.SourcePrincipal, null, [], ["*"])]));

        var and = Assert.Single(policy.Principals).AndIds.Ids;
        Assert.Equal("x-role", and[0].Header.Name);
        Assert.Equal("admin", and[0].Header.StringMatch.Exact);
        Assert.NotNull(and[1].NotId.Authenticated);
        Assert.Null(and[1].NotId.Authenticated.PrincipalName);
        Assert.True(Assert.Single(policy.Permissions).Any);
    }

    [Theory]
    [InlineData("/admin", "exact:/admin", "exact:/admin/")]
    [InlineData("/docs/", "exact:/docs/", "exact:/docs")]
    [InlineData("/orders/*", "prefix:/orders/", "exact:/orders")]
    [InlineData("/admin*", "prefix:/admin", null)]
    [InlineData("*.css", "suffix:.css", "suffix:.css/")]
    [InlineData("/", "exact:/", null)]
    [InlineData("*", "prefix:", null)]
    public void BuildPolicy_PathsByDefault_IgnoreCaseAndTheTrailingSlashSpellingTheRouterTreatsAlike(string path, string first, string? twin)
    {
        var policy = RbacTranslator.BuildPolicy(Rule(to: [new RuleOperation([], [], [path], [], [], [], [], [])]));

        var permission = Assert.Single(policy.Permissions);
        var matchers = twin is null ? [permission.UrlPath.Path] : permission.OrRules.Rules.Select(r => r.UrlPath.Path).ToArray();
        Assert.Equal(twin is null ? [first] : [first, twin], matchers.Select(Describe).ToArray());
        Assert.All(matchers, m => Assert.True(m.IgnoreCase));
    }

    [Fact]
    public void BuildPolicy_IstioPathSettings_OneCaseSensitiveMatcherAsIstioBuildsIt()
    {
        var policy = RbacTranslator.BuildPolicy(Rule(to: [new RuleOperation([], [], ["/orders/*"], [], [], [], [], [])]), InboundPathSettings.Istio);

        var matcher = Assert.Single(policy.Permissions).UrlPath.Path;
        Assert.Equal("prefix:/orders/", Describe(matcher));
        Assert.False(matcher.IgnoreCase);
    }

    private static string Describe(Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher matcher) => matcher.MatchPatternCase switch
    {
        Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher.MatchPatternOneofCase.Exact => "exact:" + matcher.Exact,
        Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher.MatchPatternOneofCase.Prefix => "prefix:" + matcher.Prefix,
        Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher.MatchPatternOneofCase.Suffix => "suffix:" + matcher.Suffix,
        _ => matcher.ToString(),
    };

    [Fact]
    public void Build_AllowNothingAndNoDeny_AllowWithoutPoliciesAndNoDenyConfig()
    {
        var allowNothing = new AuthorizationPolicyModel("default", "allow-nothing", null, AuthorizationAction.Allow, [], "a.yaml", 1);

        Assert.Null(RbacTranslator.Build([allowNothing], AuthorizationAction.Deny));
        var allow = RbacTranslator.Build([allowNothing], AuthorizationAction.Allow)!;
        Assert.Equal(RBAC.Types.Action.Allow, allow.Action);
        Assert.Empty(allow.Policies);
    }
}
