using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

public sealed class SecurityPolicyLoaderTests
{
    private static YamlLoadResult Load(string yaml) => YamlConfigLoader.Load([("security.yaml", yaml)]);

    [Fact]
    public void Load_PeerAuthenticationAndAuthorizationPolicy_Parsed()
    {
        var result = Load("""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: orders, namespace: shop}
            spec:
              selector: {matchLabels: {app: orders}}
              mtls: {mode: STRICT}
              portLevelMtls:
                8081: {mode: DISABLE}
            ---
            apiVersion: security.istio.io/v1beta1
            kind: AuthorizationPolicy
            metadata: {name: orders, namespace: shop}
            spec:
              action: DENY
              rules:
              - from:
                - source: {principals: ["cluster.local/ns/shop/sa/a"], notNamespaces: [prod]}
                to:
                - operation: {methods: [POST], paths: ["/admin*"], ports: ["8080"], notHosts: [evil]}
                when:
                - key: request.headers[X-Role]
                  values: [admin]
                - key: source.namespace
                  notValues: [shop]
            """);

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        var peer = Assert.Single(result.Config.PeerAuthentications);
        Assert.Equal(MtlsMode.Strict, peer.Mode);
        Assert.Equal(MtlsMode.Disable, peer.PortLevelMtls[8081]);
        Assert.Equal("orders", peer.Selector!["app"]);
        var policy = Assert.Single(result.Config.AuthorizationPolicies);
        Assert.Equal(AuthorizationAction.Deny, policy.Action);
        var rule = Assert.Single(policy.Rules);
        Assert.Equal(["cluster.local/ns/shop/sa/a"], rule.From[0].Principals.ToArray());
        Assert.Equal([8080u], rule.To[0].Ports.ToArray());
        Assert.Equal("x-role", rule.When[0].HeaderName);
        Assert.Equal(ConditionKeys.SourceNamespace, rule.When[1].Key);
    }

    [Fact]
    public void Load_AllowNothing_HasNoRulesAndAllowAction()
    {
        var result = Load("""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: allow-nothing}
            spec: {}
            """);

        var policy = Assert.Single(result.Config.AuthorizationPolicies);
        Assert.Equal(AuthorizationAction.Allow, policy.Action);
        Assert.Empty(policy.Rules);
    }

    [Theory]
    [InlineData("mtls: {mode: STRIKT}", 5, "PeerAuthentication default/p: spec.mtls.mode: 'STRIKT' must be one of UNSET, DISABLE, PERMISSIVE, STRICT")]
    [InlineData("portLevelMtls: {8080: {mode: STRICT}}", 5, "spec.portLevelMtls: requires spec.selector")]
    [InlineData("portLevelMtls: {http: {mode: STRICT}}", 5, "spec.portLevelMtls.http: port must be 1-65535")]
    public void Load_BadPeerAuthentication_ErrorWithFileLine(string specLine, int line, string message)
    {
        var result = Load($"""
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {"{"}name: p{"}"}
            spec:
              {specLine}
            """);

        Assert.True(result.HasErrors);
        Assert.All(result.Errors, e => Assert.Equal("security.yaml", e.File));
        Assert.Contains(result.Errors, e => e.Line == line && e.Message.Contains(message, StringComparison.Ordinal));
        Assert.Empty(result.Config.PeerAuthentications);
    }

    [Theory]
    [InlineData("action: AUDIT", 5, "spec.action: AUDIT is not supported; use ALLOW or DENY")]
    [InlineData("action: CUSTOM", 5, "spec.action: CUSTOM is not supported")]
    [InlineData("rules: [{when: [{key: destination.ip, values: [x]}]}]", 5, "spec.rules[0].when[0].key: 'destination.ip' is not supported; supported keys are request.headers[<name>], source.principal, source.namespace")]
    [InlineData("rules: [{from: [{source: {principals: [{a: b}]}}]}]", 5, "spec.rules[0].from[0].source.principals[0]: must be a string")]
    [InlineData("rules: [{from: [{source: {principals: a}}]}]", 5, "spec.rules[0].from[0].source.principals: must be a list")]
    [InlineData("rules: [{from: [{source: {ipBlocks: [10.0.0.1]}}]}]", 5, "spec.rules[0].from[0].source.ipBlocks: is not supported")]
    [InlineData("rules: [{to: [{operation: {ports: [http]}}]}]", 5, "spec.rules[0].to[0].operation.ports: 'http' must be a port 1-65535")]
    [InlineData("rules: [{to: [{operation: {paths: [/a*b]}}]}]", 5, "'/a*b': '*' is allowed only alone")]
    [InlineData("rules: [{when: [{key: source.principal}]}]", 5, "spec.rules[0].when[0]: must set values or notValues")]
    [InlineData("rules: [{when: [{key: source.namespace, values: [te*st]}]}]", 5, "spec.rules[0].when[0].values: 'te*st': '*' is allowed only alone, at the start (suffix match) or at the end (prefix match)")]
    [InlineData("rules: [{when: [{key: source.namespace, notValues: [\"*-a*\"]}]}]", 5, "spec.rules[0].when[0].values: '*-a*': '*' is allowed only alone")]
    [InlineData("rules: [{from: [{source: {notNamespaces: [t*t]}}]}]", 5, "spec.rules[0].from[0].source.notNamespaces: 't*t': '*' is allowed only alone")]
    public void Load_BadAuthorizationPolicy_ErrorWithFileLineAndPath(string specLine, int line, string message)
    {
        var result = Load($"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {"{"}name: p{"}"}
            spec:
              {specLine}
            """);

        Assert.True(result.HasErrors);
        var error = Assert.Single(result.Errors);
        Assert.Equal("security.yaml", error.File);
        Assert.Equal(line, error.Line);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.Empty(result.Config.AuthorizationPolicies);
    }

    [Fact]
    public void Load_TwoNamespaceWidePeerAuthentications_WarnsAndNamesWinner()
    {
        var result = YamlConfigLoader.Load(
        [
            ("a.yaml", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: z, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n"),
            ("b.yaml", "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a, namespace: shop}\nspec: {mtls: {mode: DISABLE}}\n"),
        ]);

        Assert.False(result.HasErrors);
        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal("b.yaml", warning.File);
        Assert.Contains("PeerAuthentication shop/a: ignored: PeerAuthentication shop/z (a.yaml:1)", warning.Message, StringComparison.Ordinal);
    }
    [Theory]
    [InlineData("security.istio.io/v1", "AuthorisationPolicy")]
    [InlineData("security.istio.io/v1beta1", "authorizationpolicy")]
    [InlineData("security.istio.io/v1", "PeerAuthenticaton")]
    [InlineData("Security.Istio.IO/v2", "AuthzPolicy")]
    public void Load_UnknownKindUnderSecurityGroup_IsAnErrorNamingTheKind(string apiVersion, string kind)
    {
        var result = YamlConfigLoader.Load([("security.yaml", $$$"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: allow-all, namespace: shop}
            spec: {action: ALLOW, rules: [{}]}
            ---
            apiVersion: {{{apiVersion}}}
            kind: {{{kind}}}
            metadata: {name: deny-admin, namespace: shop}
            spec:
              action: DENY
              rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
            """)]);

        Assert.True(result.HasErrors);
        var error = Assert.Single(result.Errors);
        Assert.False(error.IsWarning);
        Assert.Equal(("security.yaml", 7), (error.File, error.Line));
        Assert.Contains($"{kind} shop/deny-admin: kind: {kind} is not a known security.istio.io kind (known: PeerAuthentication, AuthorizationPolicy", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("security.istio.io/v1alpha1")]
    [InlineData("security.istio.io/v2")]
    [InlineData("security.istio.io")]
    [InlineData("networking.istio.io/v1")]
    public void Load_SecurityKindWithUnknownApiVersion_IsAnError(string apiVersion)
    {
        var result = Load($$$"""
            apiVersion: {{{apiVersion}}}
            kind: AuthorizationPolicy
            metadata: {name: deny-admin, namespace: shop}
            spec:
              action: DENY
              rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
            """);

        var error = Assert.Single(result.Errors);
        Assert.False(error.IsWarning);
        Assert.Equal(1, error.Line);
        Assert.Contains("AuthorizationPolicy shop/deny-admin: apiVersion: must be one of security.istio.io/v1, security.istio.io/v1beta1", error.Message, StringComparison.Ordinal);
        Assert.Empty(result.Config.AuthorizationPolicies);
    }

    [Fact]
    public void Load_UnknownKindWithoutApiVersion_IsAnError()
    {
        var result = Load("""
            kind: AuthorisationPolicy
            metadata: {name: deny-admin, namespace: shop}
            spec: {action: DENY}
            """);

        var error = Assert.Single(result.Errors);
        Assert.False(error.IsWarning);
        Assert.Contains("AuthorisationPolicy shop/deny-admin: apiVersion: is required", error.Message, StringComparison.Ordinal);
    }
}
