using Mesh.ControlPlane.Model;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization;

public sealed class IstioYamlTests
{
    [Fact]
    public void RoundTrip_EveryRuleField_ReadsBackTheSamePolicies()
    {
        var policies = new[]
        {
            Deny("d", Rule(from: [Source(principals: ["a/b"], notPrincipals: ["*"], namespaces: ["x"], notNamespaces: ["y"])], to: [Operation(methods: ["GET"], notMethods: ["PUT"], paths: ["/a\\b", "*.css"], notPaths: ["/\"q\""], ports: [1], notPorts: [2], hosts: ["h"], notHosts: ["*.n"])], when: [Header("x-a", values: ["1"], notValues: ["2"])])),
            Allow("allow-nothing"),
            Allow("all", Rule()),
        };

        var loaded = IstioYaml.RoundTrip(policies);

        Assert.Equal(["d", "allow-nothing", "all"], loaded.Select(p => p.Name));
        Assert.Equal(new[] { "/a\\b", "*.css" }, loaded[0].Rules[0].To[0].Paths.ToArray());
    }

    [Fact]
    public void RoundTrip_RequestPrincipalsAndRequestAuthKeys_ReadBackTheSamePolicies()
    {
        var source = Source(principals: ["a/b"]) with { RequestPrincipals = ["iss/sub", "*"], NotRequestPrincipals = ["iss/bad"] };
        var when = new[]
        {
            When(ConditionKeys.RequestPrincipal, values: ["iss/sub"]),
            When(ConditionKeys.RequestAudiences, notValues: ["billing"]),
            When(ConditionKeys.RequestPresenter, values: ["web-*"]),
            When(ConditionKeys.RequestClaims, values: ["ops"]) with { ClaimPath = ["realm", "role"] },
            When(ConditionKeys.RequestClaims, notValues: ["guest"]) with { ClaimPath = ["role"] },
        };

        var loaded = IstioYaml.RoundTrip([Allow("jwt", Rule(from: [source], when: when))]);

        Assert.Equal(["iss/sub", "*"], loaded[0].Rules[0].From[0].RequestPrincipals.ToArray());
        Assert.Equal(["realm", "role"], loaded[0].Rules[0].When[3].ClaimPath.ToArray());
    }

    [Fact]
    public void RoundTrip_RequestAuthenticationEveryJwtRuleField_ReadsBackTheSamePolicies()
    {
        var rules = new[]
        {
            JwtRule(audiences: ["orders", "web"], fromHeaders: [("x-jwt", "Bearer ")], fromParams: ["token"], forward: true, payloadHeader: "x-payload", claimHeaders: [("x-sub", "sub")]),
            JwtRule(issuer: OtherIssuer, jwks: Jwks(("o1", Key2))) with { JwksUri = null, SpaceDelimitedClaims = ["scope"] },
            JwtRule(issuer: "https://remote.example.com") with { Jwks = null, JwksUri = new Uri("https://remote.example.com/keys") },
        };

        var loaded = IstioYaml.RoundTrip([RequestAuthentication("ra", rules)]);

        Assert.Equal([Issuer, OtherIssuer, "https://remote.example.com"], loaded[0].JwtRules.Select(r => r.Issuer));
    }

    /// <summary>The guard that keeps the table honest: a policy the loader reads differently (header names are lower-cased) is refused.</summary>
    [Fact]
    public void RoundTrip_LoaderReadsSomethingElse_Throws()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => IstioYaml.RoundTrip([Allow("h", Rule(when: [Header("X-Role", values: ["a"])]))]));

        Assert.Contains("does not read back as the policies written", ex.Message, StringComparison.Ordinal);
    }
}
