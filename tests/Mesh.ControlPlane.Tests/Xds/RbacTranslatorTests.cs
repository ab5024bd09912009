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
    public void BuildPolicy_Operation_MethodsPathsPortsHosts()
    {
        var policy = RbacTranslator.BuildPolicy(Rule(to: [new RuleOperation(["GET"], [], ["*.css"], ["/admin*"], [8080], [], ["orders"], [])]));

        var rules = Assert.Single(policy.Permissions).AndRules.Rules;
        Assert.Equal(":method", rules[0].Header.Name);
        Assert.Equal("GET", rules[0].Header.StringMatch.Exact);
        Assert.Equal(".css", rules[1].UrlPath.Path.Suffix);
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
