using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

public sealed class RequestAuthenticationLoaderTests
{
    private const string Jwks = """'{"keys":[{"kty":"RSA","kid":"k1","n":"sXch","e":"AQAB"}]}'""";

    private static YamlLoadResult Load(string yaml) => YamlConfigLoader.Load([("ra.yaml", yaml)]);

    private static string Ra(string rule, string extraSpec = "") => $"""
        apiVersion: security.istio.io/v1
        kind: RequestAuthentication
        metadata: {"{"}name: jwt, namespace: shop{"}"}
        spec:
          selector: {"{"}matchLabels: {"{"}app: orders{"}"}{"}"}
        {extraSpec}  jwtRules:
          - {rule}
        """;

    [Fact]
    public void Load_FullRequestAuthentication_EveryFieldParsed()
    {
        var result = Load($$$"""
            apiVersion: security.istio.io/v1beta1
            kind: RequestAuthentication
            metadata: {name: jwt, namespace: shop}
            spec:
              selector: {matchLabels: {app: orders}}
              jwtRules:
              - issuer: https://issuer.example.com
                audiences: [orders, web]
                jwksUri: https://issuer.example.com/keys
                fromHeaders: [{name: X-Jwt, prefix: "Token "}]
                fromParams: [token]
                forwardOriginalToken: true
                outputPayloadToHeader: X-Payload
                outputClaimToHeaders: [{header: X-Sub, claim: sub}]
                spaceDelimitedClaims: [roles]
              - issuer: inline-issuer
                jwks: {{{Jwks}}}
            """);

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        var policy = Assert.Single(result.Config.RequestAuthentications);
        Assert.Equal("orders", policy.Selector!["app"]);
        Assert.Equal(2, policy.JwtRules.Length);
        var rule = policy.JwtRules[0];
        Assert.Equal("https://issuer.example.com", rule.Issuer);
        Assert.Equal(["orders", "web"], rule.Audiences.ToArray());
        Assert.Equal(new Uri("https://issuer.example.com/keys"), rule.JwksUri);
        Assert.Equal(new JwtHeaderLocation("x-jwt", "Token "), rule.FromHeaders.Single());
        Assert.Equal(["token"], rule.FromParams.ToArray());
        Assert.True(rule.ForwardOriginalToken);
        Assert.Equal("x-payload", rule.OutputPayloadToHeader);
        Assert.Equal(new JwtClaimToHeader("x-sub", "sub"), rule.OutputClaimToHeaders.Single());
        Assert.Equal(["roles"], rule.SpaceDelimitedClaims.ToArray());
        Assert.NotNull(policy.JwtRules[1].Jwks);
    }

    public static TheoryData<string, string, string> BadRules() => new()
    {
        { "missing issuer", "jwksUri: https://a/k", "spec.jwtRules[0].issuer: is required" },
        { "both jwksUri and jwks", $"issuer: a\n    jwksUri: https://a/k\n    jwks: {Jwks}", "spec.jwtRules[0].jwks: cannot be combined with jwksUri" },
        { "neither jwksUri nor jwks", "issuer: a", "spec.jwtRules[0]: needs jwksUri or jwks" },
        { "relative jwksUri", "issuer: a\n    jwksUri: /keys", "spec.jwtRules[0].jwksUri: '/keys' must be an absolute https://" },
        { "file jwksUri", "issuer: a\n    jwksUri: file:///etc/keys", "spec.jwtRules[0].jwksUri" },
        { "jwks not JSON", "issuer: a\n    jwks: 'nope'", "spec.jwtRules[0].jwks: is not JSON" },
        { "jwks without keys", "issuer: a\n    jwks: '{\"keys\":[]}'", "spec.jwtRules[0].jwks: has no keys" },
        { "jwks symmetric key", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"oct\",\"kid\":\"s\"}]}'", "symmetric (oct) keys are not supported" },
        { "jwks RSA private exponent", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\",\"n\":\"sXch\",\"e\":\"AQAB\",\"d\":\"c2VjcmV0\"}]}'", "spec.jwtRules[0].jwks: keys[0].d: a private key member" },
        { "jwks RSA CRT prime", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"k1\",\"n\":\"sXch\",\"e\":\"AQAB\"},{\"kty\":\"RSA\",\"kid\":\"k2\",\"n\":\"sXch\",\"e\":\"AQAB\",\"qi\":\"c2VjcmV0\"}]}'", "spec.jwtRules[0].jwks: keys[1].qi: a private key member" },
        { "jwks EC private scalar", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"eA\",\"y\":\"eQ\",\"d\":\"c2VjcmV0\"}]}'", "spec.jwtRules[0].jwks: keys[0].d: a private key member" },
        { "jwks symmetric secret", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}'", "spec.jwtRules[0].jwks: keys[0].k: a private key member" },
        { "jwks RSA without n", "issuer: a\n    jwks: '{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}'", "an RSA key needs \"n\" and \"e\"" },
        { "fromCookies", "issuer: a\n    jwksUri: https://a/k\n    fromCookies: [session]", "spec.jwtRules[0].fromCookies: is not supported" },
        { "unknown field", "issuer: a\n    jwksUri: https://a/k\n    jwksUrl: https://a/k", "spec.jwtRules[0].jwksUrl: is not a jwtRules field" },
        { "fromHeaders without name", "issuer: a\n    jwksUri: https://a/k\n    fromHeaders: [{prefix: x}]", "spec.jwtRules[0].fromHeaders[0].name: must be an HTTP header name" },
        { "fromHeaders bad name", "issuer: a\n    jwksUri: https://a/k\n    fromHeaders: [{name: 'x jwt'}]", "spec.jwtRules[0].fromHeaders[0].name" },
        { "forwardOriginalToken not bool", "issuer: a\n    jwksUri: https://a/k\n    forwardOriginalToken: maybe", "spec.jwtRules[0].forwardOriginalToken: must be true or false" },
        { "outputPayloadToHeader bad", "issuer: a\n    jwksUri: https://a/k\n    outputPayloadToHeader: 'a:b'", "spec.jwtRules[0].outputPayloadToHeader" },
        { "outputClaimToHeaders without claim", "issuer: a\n    jwksUri: https://a/k\n    outputClaimToHeaders: [{header: x-a}]", "spec.jwtRules[0].outputClaimToHeaders[0].claim: is required" },
        { "empty audience", "issuer: a\n    jwksUri: https://a/k\n    audiences: ['']", "spec.jwtRules[0].audiences: must not contain empty strings" },
    };

    [Theory]
    [MemberData(nameof(BadRules))]
    public void Load_BadJwtRule_ErrorNamesFileLineAndField(string name, string rule, string expected)
    {
        var result = Load(Ra(rule));

        Assert.True(result.HasErrors, name);
        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.StartsWith("RequestAuthentication shop/jwt: ", error.Message, StringComparison.Ordinal);
        Assert.Equal("ra.yaml", error.File);
        Assert.True(error.Line > 1, $"{name}: line {error.Line}");
        Assert.Empty(result.Config.RequestAuthentications);
    }

    [Fact]
    public void Load_TargetRefAndDuplicateIssuer_Errors()
    {
        var result = Load("""
            apiVersion: security.istio.io/v1
            kind: RequestAuthentication
            metadata: {name: jwt}
            spec:
              targetRef: {kind: Gateway, name: gw}
              jwtRules:
              - {issuer: a, jwksUri: "https://a/k"}
              - {issuer: a, jwksUri: "https://a/k2"}
            """);

        Assert.Contains(result.Errors, e => e.Message.Contains("spec.targetRef: is not supported", StringComparison.Ordinal) && e.Line == 5);
        Assert.Contains(result.Errors, e => e.Message.Contains("spec.jwtRules[1].issuer: issuer 'a' is already configured by spec.jwtRules[0]", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_Timeout_WarningNamesTheField()
    {
        var result = Load(Ra("issuer: a\n    jwksUri: https://a/k\n    timeout: 10s"));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        Assert.Contains(result.Errors, e => e.IsWarning && e.Message.Contains("spec.jwtRules[0].timeout: is ignored", StringComparison.Ordinal));
        Assert.Single(result.Config.RequestAuthentications);
    }

    [Fact]
    public void Load_BadRequestAuthentication_KeepsNoneOfIt()
    {
        // A rule that fails must not be dropped silently while the rest applies: the whole config is rejected.
        var result = Load(Ra("issuer: a\n    jwksUri: https://a/k\n  - issuer: b"));

        Assert.True(result.HasErrors);
    }

    [Fact]
    public void Load_RequestPrincipalsAndJwtConditionKeys_Parsed()
    {
        var result = Load("""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: jwt, namespace: shop}
            spec:
              rules:
              - from:
                - source: {requestPrincipals: ["https://issuer.example.com/alice"], notRequestPrincipals: ["*/bob"]}
                when:
                - {key: request.auth.principal, values: ["iss/sub"]}
                - {key: request.auth.audiences, values: [orders]}
                - {key: request.auth.presenter, notValues: [cli]}
                - {key: "request.auth.claims[groups]", values: [admin]}
                - {key: "request.auth.claims[realm][role]", values: [ops]}
            """);

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        var rule = Assert.Single(Assert.Single(result.Config.AuthorizationPolicies).Rules);
        Assert.Equal(["https://issuer.example.com/alice"], rule.From[0].RequestPrincipals.ToArray());
        Assert.Equal(["*/bob"], rule.From[0].NotRequestPrincipals.ToArray());
        Assert.Equal([ConditionKeys.RequestPrincipal, ConditionKeys.RequestAudiences, ConditionKeys.RequestPresenter, ConditionKeys.RequestClaims, ConditionKeys.RequestClaims], rule.When.Select(w => w.Key).ToArray());
        Assert.Equal(["groups"], rule.When[3].ClaimPath.ToArray());
        Assert.Equal(["realm", "role"], rule.When[4].ClaimPath.ToArray());
    }

    [Theory]
    [InlineData("request.auth.claims")]
    [InlineData("request.auth.claims[]")]
    [InlineData("request.auth.claims[a]b")]
    [InlineData("request.auth.claims[a[b]]")]
    [InlineData("request.auth.claimz[a]")]
    public void Load_MalformedClaimKey_Error(string key)
    {
        var result = Load($$"""
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: jwt}
            spec:
              rules:
              - when:
                - {key: "{{key}}", values: [x]}
            """);

        Assert.True(result.HasErrors);
        Assert.Contains(result.Errors, e => e.Message.Contains("spec.rules[0].when[0].key", StringComparison.Ordinal) && e.Line == 7);
    }
}
