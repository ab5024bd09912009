using Mesh.Client.Authorization;
using Mesh.ControlPlane.Sources;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// <c>source.namespace</c> from Istio YAML through the control plane's loader and RBAC translation to the client's decision.
/// Found in review 2026-12-05: a wildcard in a <c>when</c> condition was accepted and never matched, so a DENY on
/// <c>test-*</c> let <c>test-a</c> in and an ALLOW with <c>notValues: [untrusted-*]</c> let every namespace in. Mesh cannot
/// match namespace wildcards (Istio can), so they are refused at load in <c>when</c> exactly as in <c>from</c>; exact names
/// and <c>*</c> keep matching.
/// </summary>
public sealed class NamespaceConditionTests
{
    public static TheoryData<string, string> WildcardSpellings => new()
    {
        { "when: [{key: source.namespace, values: [\"test-*\"]}]", "spec.rules[0].when[0].values: 'test-*'" },
        { "when: [{key: source.namespace, values: [\"test*\"]}]", "spec.rules[0].when[0].values: 'test*'" },
        { "when: [{key: source.namespace, values: [\"*-a\"]}]", "spec.rules[0].when[0].values: '*-a'" },
        { "when: [{key: source.namespace, values: [prod, \"t*\"]}]", "spec.rules[0].when[0].values: 't*'" },
        { "when: [{key: source.namespace, notValues: [\"untrusted-*\"]}]", "spec.rules[0].when[0].notValues: 'untrusted-*'" },
        { "when: [{key: source.namespace, notValues: [\"*-untrusted\"]}]", "spec.rules[0].when[0].notValues: '*-untrusted'" },
        { "from: [{source: {namespaces: [\"test-*\"]}}]", "spec.rules[0].from[0].source.namespaces: 'test-*'" },
        { "from: [{source: {notNamespaces: [\"*-a\"]}}]", "spec.rules[0].from[0].source.notNamespaces: '*-a'" },
    };

    [Theory]
    [MemberData(nameof(WildcardSpellings))]
    public void Load_NamespaceWildcard_RefusedAtFileLineWithFieldPath(string rule, string expected)
    {
        foreach (var action in new[] { "DENY", "ALLOW" })
        {
            var loaded = YamlConfigLoader.Load([("policy.yaml", Policy(action, rule))]);

            var error = Assert.Single(loaded.Errors);
            Assert.Equal("policy.yaml", error.File);
            Assert.Equal(7, error.Line);
            Assert.Contains(expected + ": namespace wildcards other than \"*\" are not supported", error.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("DENY", "values: [test-a]", "test-a", "Denied")]
    [InlineData("DENY", "values: [test-a]", "testing", "Allowed")]
    [InlineData("DENY", "values: [test-a]", "test-a-b", "Allowed")]
    [InlineData("DENY", "values: [test-a]", "test", "Allowed")]
    [InlineData("DENY", "values: [test-a]", "prod", "Allowed")]
    [InlineData("DENY", "values: [\"*\"]", "test-a", "Denied")]
    [InlineData("DENY", "values: [\"*\"]", "prod", "Denied")]
    [InlineData("DENY", "notValues: [prod]", "test-a", "Denied")]
    [InlineData("DENY", "notValues: [prod]", "production", "Denied")]
    [InlineData("DENY", "notValues: [prod]", "prod", "Allowed")]
    [InlineData("ALLOW", "notValues: [untrusted-a]", "untrusted-a", "Denied")]
    [InlineData("ALLOW", "notValues: [untrusted-a]", "untrusted", "Allowed")]
    [InlineData("ALLOW", "notValues: [untrusted-a]", "prod", "Allowed")]
    [InlineData("ALLOW", "values: [test-a, prod]", "test-a", "Allowed")]
    [InlineData("ALLOW", "values: [test-a, prod]", "prod", "Allowed")]
    [InlineData("ALLOW", "values: [test-a, prod]", "testing", "Denied")]
    [InlineData("ALLOW", "values: [test-a, prod]", "prod-evil", "Denied")]
    public void Authorize_WhenSourceNamespace_MatchesTheWholeNamespaceOnly(string action, string values, string peerNamespace, string expected)
    {
        var loaded = YamlConfigLoader.Load([("policy.yaml", Policy(action, $"when: [{{key: source.namespace, {values}}}]"))]);
        Assert.Empty(loaded.Errors);
        var listener = IstioPolicies.Listener(loaded.Config.AuthorizationPolicies.ToArray());
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));

        var peer = $"spiffe://cluster.local/ns/{peerNamespace}/sa/x";
        Assert.Equal(Enum.Parse<AuthorizationOutcome>(expected), policy.Authorize("GET", "/orders", "orders", null, peer, peerNamespace).Outcome);
    }

    private static string Policy(string action, string rule) => $"""
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {"{"}name: p, namespace: default{"}"}
        spec:
          action: {action}
          rules:
          - {rule}
        """;
}
