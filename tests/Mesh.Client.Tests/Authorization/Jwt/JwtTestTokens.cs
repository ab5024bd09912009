using System.Collections.Immutable;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using JwtAuthentication = Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>
/// Real keys and real signed tokens for the JWT tests: an RSA issuer with two keys (kid "k1", "k2"), a one-key issuer,
/// and a key that is in no JWKS. Policies are translated with the control plane's own <see cref="JwtAuthnTranslator"/>.
/// </summary>
internal static class JwtTestTokens
{
    public const string Issuer = "https://issuer.example.com";
    public const string OtherIssuer = "https://other.example.com";
    public const string Audience = "orders";

    private static readonly JsonWebTokenHandler Handler = new();

    public static RSA Key1 { get; } = RSA.Create(2048);

    public static RSA Key2 { get; } = RSA.Create(2048);

    public static RSA Stranger { get; } = RSA.Create(2048);

    public static ECDsa EcKey { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    /// <summary>k1 and k2 (several keys: a token must name its kid).</summary>
    public static string TwoKeyJwks { get; } = Jwks(("k1", Key1), ("k2", Key2));

    public static string OneKeyJwks { get; } = Jwks(("k1", Key1));

    public static string EcJwks { get; } = EcJwksOf("ec1", EcKey);

    public static string Jwks(params (string Kid, RSA Key)[] keys)
    {
        var list = keys.Select(k =>
        {
            var p = k.Key.ExportParameters(false);
            return new Dictionary<string, string> { ["kty"] = "RSA", ["kid"] = k.Kid, ["alg"] = "RS256", ["use"] = "sig", ["n"] = Base64UrlEncoder.Encode(p.Modulus), ["e"] = Base64UrlEncoder.Encode(p.Exponent) };
        });
        return JsonSerializer.Serialize(new { keys = list });
    }

    public static string EcJwksOf(string kid, ECDsa key)
    {
        var p = key.ExportParameters(false);
        var jwk = new Dictionary<string, string> { ["kty"] = "EC", ["kid"] = kid, ["crv"] = "P-256", ["x"] = Base64UrlEncoder.Encode(p.Q.X), ["y"] = Base64UrlEncoder.Encode(p.Q.Y) };
        return JsonSerializer.Serialize(new { keys = new[] { jwk } });
    }

    /// <summary>A signed token; <paramref name="claims"/> override the defaults (iss, sub, aud, exp in an hour).</summary>
    public static string Token(
        RSA? key = null, string? kid = "k1", string issuer = Issuer, string subject = "alice", object? audience = null,
        DateTimeOffset? expires = null, DateTimeOffset? notBefore = null, Dictionary<string, object>? claims = null, DateTimeOffset? now = null, string algorithm = SecurityAlgorithms.RsaSha256)
    {
        var signingKey = new RsaSecurityKey(key ?? Key1) { KeyId = kid };
        return Sign(new SigningCredentials(signingKey, algorithm), issuer, subject, audience, expires, notBefore, claims, now);
    }

    public static string EcToken(string kid = "ec1", DateTimeOffset? now = null) =>
        Sign(new SigningCredentials(new ECDsaSecurityKey(EcKey) { KeyId = kid }, SecurityAlgorithms.EcdsaSha256), Issuer, "ec-user", null, null, null, null, now);

    private static string Sign(SigningCredentials credentials, string issuer, string subject, object? audience, DateTimeOffset? expires, DateTimeOffset? notBefore, Dictionary<string, object>? claims, DateTimeOffset? now)
    {
        var at = now ?? DateTimeOffset.UtcNow;
        var payload = new Dictionary<string, object> { ["iss"] = issuer, ["sub"] = subject, ["aud"] = audience ?? Audience };
        payload["exp"] = (expires ?? at.AddHours(1)).ToUnixTimeSeconds();
        if (notBefore is { } nbf)
        {
            payload["nbf"] = nbf.ToUnixTimeSeconds();
        }

        foreach (var (name, value) in claims ?? [])
        {
            payload[name] = value;
        }

        return Handler.CreateToken(JsonSerializer.Serialize(payload), credentials);
    }

    /// <summary>An unsigned token (<c>alg: none</c>) with an empty signature.</summary>
    public static string NoneToken(string kid = "k1", DateTimeOffset? now = null)
    {
        var header = Base64UrlEncoder.Encode(JsonSerializer.Serialize(new { alg = "none", typ = "JWT", kid }));
        var payload = Base64UrlEncoder.Encode(JsonSerializer.Serialize(new { iss = Issuer, sub = "mallory", aud = Audience, exp = (now ?? DateTimeOffset.UtcNow).AddHours(1).ToUnixTimeSeconds() }));
        return $"{header}.{payload}.";
    }

    /// <summary>Key confusion: HS256 with the RSA public key (its SubjectPublicKeyInfo bytes, or its JWK JSON) as the HMAC secret.</summary>
    public static string HmacWithPublicKeyToken(bool useJwkJson = false, DateTimeOffset? now = null)
    {
        var secret = useJwkJson ? Encoding.UTF8.GetBytes(OneKeyJwks) : Key1.ExportSubjectPublicKeyInfo();
        var key = new SymmetricSecurityKey(secret) { KeyId = "k1" };
        return Sign(new SigningCredentials(key, SecurityAlgorithms.HmacSha256), Issuer, "mallory", null, null, null, null, now);
    }

    /// <summary>A valid token whose payload was swapped for another (sub changed), signature kept.</summary>
    public static string Tampered(string token)
    {
        var parts = token.Split('.');
        var payload = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(Base64UrlEncoder.Decode(parts[1]))!;
        payload["sub"] = JsonSerializer.SerializeToElement("admin");
        return $"{parts[0]}.{Base64UrlEncoder.Encode(JsonSerializer.Serialize(payload))}.{parts[2]}";
    }

    public static JwtRuleModel JwtRule(
        string issuer = Issuer, string? jwks = null, string[]? audiences = null, (string Name, string Prefix)[]? fromHeaders = null, string[]? fromParams = null,
        bool forward = false, string? payloadHeader = null, (string Header, string Claim)[]? claimHeaders = null) =>
        new(issuer, [.. audiences ?? []], null, jwks ?? TwoKeyJwks, [.. (fromHeaders ?? []).Select(h => new JwtHeaderLocation(h.Name, h.Prefix))], [.. fromParams ?? []],
            forward, payloadHeader, [.. (claimHeaders ?? []).Select(c => new JwtClaimToHeader(c.Header, c.Claim))], []);

    public static RequestAuthenticationModel RequestAuthentication(string name, params JwtRuleModel[] rules) =>
        new("default", name, null, [.. rules], "test.yaml", 1);

    /// <summary>The control plane's jwt_authn config for <paramref name="policies"/>.</summary>
    public static JwtAuthentication Config(params RequestAuthenticationModel[] policies) =>
        JwtAuthnTranslator.Build(policies, jwks: null) ?? throw new InvalidOperationException("no rules");

    /// <summary>The listener of <paramref name="authorization"/> with the jwt_authn filter first in every chain (as InboundListenerTranslator puts it).</summary>
    public static Listener Listener(IEnumerable<AuthorizationPolicyModel> authorization, JwtAuthentication? jwt, uint port = 8080, bool tls = true, bool plaintext = true, InboundPathSettings? paths = null)
    {
        var listener = IstioPolicies.Listener(authorization.ToImmutableArray(), port, tls, plaintext, paths);
        if (jwt is null)
        {
            return listener;
        }

        foreach (var chain in listener.FilterChains)
        {
            var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
            manager.HttpFilters.Insert(0, new HttpFilter { Name = JwtAuthnTranslator.FilterName, TypedConfig = Any.Pack(jwt) });
            chain.Filters[0].TypedConfig = Any.Pack(manager);
        }

        return listener;
    }
}
