using Mesh.Client.Authorization;
using Mesh.ControlPlane.Sources;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// <c>source.namespace</c> from Istio YAML through the control plane's loader and RBAC translation to the client's decision.
/// Found in review 2026-12-05: a wildcard in a <c>when</c> condition was accepted and never matched, so a DENY on
/// <c>test-*</c> let <c>test-a</c> in and an ALLOW with <c>notValues: [untrusted-*]</c> let every namespace in. Istio's
/// prefix and suffix wildcards now match as istiod's regex does, the wildcard kept inside the namespace segment of the
/// peer's SPIFFE ID, in <c>when</c> and in <c>from</c>; exact names and <c>*</c> as before.
/// </summary>
public sealed class NamespaceConditionTests
{
    [Theory]
    [InlineData("DENY", "values: [\"test-*\"]", "test-a", "Denied")]
    [InlineData("DENY", "values: [\"test-*\"]", "test-a-b", "Denied")]
    [InlineData("DENY", "values: [\"test-*\"]", "test-", "Denied")]
    [InlineData("DENY", "values: [\"test-*\"]", "test", "Allowed")]
    [InlineData("DENY", "values: [\"test-*\"]", "testing", "Allowed")]
    [InlineData("DENY", "values: [\"test-*\"]", "prod", "Allowed")]
    [InlineData("DENY", "values: [\"*-prod\"]", "eu-prod", "Denied")]
    [InlineData("DENY", "values: [\"*-prod\"]", "prod", "Allowed")]
    [InlineData("DENY", "values: [\"*-prod\"]", "eu-production", "Allowed")]
    [InlineData("ALLOW", "notValues: [\"untrusted-*\"]", "untrusted-a", "Denied")]
    [InlineData("ALLOW", "notValues: [\"untrusted-*\"]", "untrusted", "Allowed")]
    [InlineData("ALLOW", "notValues: [\"untrusted-*\"]", "prod", "Allowed")]
    [InlineData("ALLOW", "values: [prod, \"t*\"]", "test", "Allowed")]
    [InlineData("ALLOW", "values: [prod, \"t*\"]", "prod", "Allowed")]
    [InlineData("ALLOW", "values: [prod, \"t*\"]", "staging", "Denied")]
    public void Authorize_NamespaceWildcard_PrefixOrSuffixOfTheNamespaceOnly(string action, string values, string peerNamespace, string expected)
    {
        foreach (var rule in new[] { $"when: [{{key: source.namespace, {values}}}]", $"from: [{{source: {{{(values.StartsWith("not", StringComparison.Ordinal) ? "notNamespaces" : "namespaces")}: {values[(values.IndexOf('[', StringComparison.Ordinal))..]}}}}}]" })
        {
            Assert.Equal(Enum.Parse<AuthorizationOutcome>(expected), Decide(action, rule, $"spiffe://cluster.local/ns/{peerNamespace}/sa/x"));
        }
    }

    /// <summary>
    /// The attacker's spellings: the wildcard's text elsewhere in the SPIFFE ID (the trust domain, the service account, a
    /// namespace literally named "ns" or "sa", whose ID repeats those words) never stands in for the namespace.
    /// </summary>
    [Theory]
    [InlineData("s*", "spiffe://cluster.local/ns/ns/sa/x")]
    [InlineData("sa*", "spiffe://cluster.local/ns/ns/sa/sa")]
    [InlineData("n*", "spiffe://ns/ns/prod/sa/x")]
    [InlineData("*s", "spiffe://cluster.local/ns/sa/sa/x")]
    [InlineData("*ns", "spiffe://cluster.local/ns/sa/sa/ns")]
    [InlineData("test-*", "spiffe://test-domain/ns/prod/sa/test-x")]
    [InlineData("*-prod", "spiffe://cluster.local/ns/dev/sa/app-prod")]
    [InlineData("te.t*", "spiffe://cluster.local/ns/teXt/sa/x")]
    public void Authorize_NamespaceWildcard_NotSatisfiedOutsideTheNamespaceSegment(string pattern, string peer)
    {
        Assert.Equal(AuthorizationOutcome.Allowed, Decide("DENY", $"when: [{{key: source.namespace, values: [\"{pattern}\"]}}]", peer));
        Assert.Equal(AuthorizationOutcome.Denied, Decide("ALLOW", $"from: [{{source: {{namespaces: [\"{pattern}\"]}}}}]", peer));
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
    public void Authorize_WhenSourceNamespace_MatchesTheWholeNamespaceOnly(string action, string values, string peerNamespace, string expected) =>
        Assert.Equal(Enum.Parse<AuthorizationOutcome>(expected), Decide(action, $"when: [{{key: source.namespace, {values}}}]", $"spiffe://cluster.local/ns/{peerNamespace}/sa/x"));

    private static AuthorizationOutcome Decide(string action, string rule, string peer)
    {
        var loaded = YamlConfigLoader.Load([("policy.yaml", Policy(action, rule))]);
        Assert.Empty(loaded.Errors);
        var listener = IstioPolicies.Listener(loaded.Config.AuthorizationPolicies.ToArray());
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));
        return policy.Authorize("GET", "/orders", "orders", null, peer, peer.Split('/')[4]).Outcome;
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
