using Mesh.ControlPlane.Model;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// RequestAuthentication (JWT) rows: real RS256 tokens (<see cref="Jwt.JwtTestTokens"/>) sent as <c>Authorization:
/// Bearer</c> to <c>GET /x</c> on port 8080, validated by the real JwtAuthenticator before RBAC. Expected: A, D (403
/// RBAC), U (401: invalid token), X (403 from the JWT step: audience not allowed).
/// </summary>
public sealed partial class DecisionTableTests
{
    private const string Alice = "https://issuer.example.com/alice";

    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly RequestAuthenticationModel[] Ra = [RequestAuthentication("ra", JwtRule())];
    private static readonly RequestAuthenticationModel[] RaWithAudience = [RequestAuthentication("ra", JwtRule(audiences: ["orders"]))];
    private static readonly RequestAuthenticationModel[] RaTwoIssuers = [RequestAuthentication("ra", JwtRule(), JwtRule(issuer: OtherIssuer, jwks: Jwks(("o1", Key2))))];

    private static readonly AuthorizationPolicyModel[] NoPolicy = [];
    private static readonly AuthorizationPolicyModel[] RequireAlice = [Allow("alice", Rule(from: [RequestSource(requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] RequireAnyJwt = [Allow("any-jwt", Rule(from: [RequestSource(requestPrincipals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] RequireIssuer = [Allow("issuer", Rule(from: [RequestSource(requestPrincipals: [Issuer + "/*"])]))];
    private static readonly AuthorizationPolicyModel[] RequireSubAlice = [Allow("sub", Rule(from: [RequestSource(requestPrincipals: ["*/alice"])]))];
    private static readonly AuthorizationPolicyModel[] RequireSubPrefix = [Allow("sub-prefix", Rule(from: [RequestSource(requestPrincipals: [Issuer + "/al*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyWithoutJwt = [Deny("no-jwt", Rule(from: [RequestSource(notRequestPrincipals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAlice = [Deny("no-alice", Rule(from: [RequestSource(requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] AllowNotAlice = [Allow("not-alice", Rule(from: [RequestSource(notRequestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] WhenRequestPrincipal = [Allow("when-principal", Rule(when: [When(ConditionKeys.RequestPrincipal, values: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] WhenAudience = [Allow("when-aud", Rule(when: [When(ConditionKeys.RequestAudiences, values: ["orders"])]))];
    private static readonly AuthorizationPolicyModel[] WhenPresenter = [Allow("when-azp", Rule(when: [When(ConditionKeys.RequestPresenter, values: ["web-*"])]))];
    private static readonly AuthorizationPolicyModel[] WhenGroupAdmin = [Allow("groups", Rule(when: [Claim(["groups"], values: ["admin"])]))];
    private static readonly AuthorizationPolicyModel[] WhenNestedRole = [Allow("nested", Rule(when: [Claim(["realm", "role"], values: ["ops"])]))];
    private static readonly AuthorizationPolicyModel[] WhenScopeWrite = [Allow("scope", Rule(when: [Claim(["scope"], values: ["write"])]))];
    private static readonly AuthorizationPolicyModel[] DenyBanned = [Deny("banned", Rule(when: [Claim(["groups"], values: ["banned"])]))];
    private static readonly AuthorizationPolicyModel[] NotGuest = [Allow("not-guest", Rule(when: [Claim(["role"], notValues: ["guest"])]))];
    private static readonly AuthorizationPolicyModel[] PeerAndJwt =
        [Allow("both", Rule(from: [RequestSource(principals: ["cluster.local/ns/default/sa/frontend"], requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] PeerOrJwt =
        [Allow("either", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"]), RequestSource(requestPrincipals: [Alice])]))];

    private static readonly string AliceToken = Token(now: Now, claims: new() { ["azp"] = "web-app", ["groups"] = new[] { "dev", "admin" }, ["realm"] = new Dictionary<string, object> { ["role"] = "ops" }, ["scope"] = "read write", ["role"] = "user" });
    private static readonly string BobToken = Token(subject: "bob", now: Now, claims: new() { ["azp"] = "cli", ["groups"] = "dev", ["realm"] = new Dictionary<string, object> { ["role"] = "dev" }, ["scope"] = "read", ["role"] = "guest" });
    private static readonly string BannedToken = Token(subject: "carol", now: Now, claims: new() { ["groups"] = new[] { "admin", "banned" } });
    private static readonly string AlOtherToken = Token(subject: "alan", now: Now);
    private static readonly string OtherIssuerAlice = Token(key: Key2, kid: "o1", issuer: OtherIssuer, now: Now);
    private static readonly string NumberSubToken = Token(now: Now, claims: new() { ["sub"] = 42 });
    private static readonly string EmptySubToken = Token(subject: "", now: Now);
    private static readonly string ExpiredToken = Token(expires: Now.AddMinutes(-10), now: Now);
    private static readonly string WrongKeyToken = Token(key: Stranger, now: Now);
    private static readonly string AudienceBilling = Token(audience: "billing", now: Now);

    /// <summary>Tokens under RequestAuthentication with no AuthorizationPolicy: invalid token 401, disallowed audience 403 (X), no token passes.</summary>
    private static IEnumerable<Row> RequestAuthenticationRows() =>
    [
        JwtRow(Ra, NoPolicy, null, null, A),
        JwtRow(Ra, NoPolicy, null, AliceToken, A),
        JwtRow(Ra, NoPolicy, null, ExpiredToken, U),
        JwtRow(Ra, NoPolicy, null, WrongKeyToken, U),
        JwtRow(Ra, NoPolicy, null, NoneToken(now: Now), U),
        JwtRow(Ra, NoPolicy, null, HmacWithPublicKeyToken(now: Now), U),
        JwtRow(Ra, NoPolicy, null, OtherIssuerAlice, U),
        JwtRow(RaWithAudience, NoPolicy, null, AudienceBilling, X),
        JwtRow(RaWithAudience, NoPolicy, null, AliceToken, A),
        JwtRow(RaWithAudience, NoPolicy, null, null, A),
    ];

    /// <summary>requestPrincipals / notRequestPrincipals and request.auth.principal: no token, or a token not validated, has no principal (403 where one is required).</summary>
    private static IEnumerable<Row> RequestPrincipalRows() =>
    [
        JwtRow(Ra, RequireAlice, null, AliceToken, A),
        JwtRow(Ra, RequireAlice, null, BobToken, D),
        JwtRow(Ra, RequireAlice, null, null, D),
        JwtRow(Ra, RequireAlice, null, ExpiredToken, U),
        JwtRow(Ra, RequireAlice, Frontend, null, D),
        JwtRow([], RequireAlice, null, AliceToken, D), // no RequestAuthentication: the token is never validated, so no principal
        JwtRow(Ra, RequireAnyJwt, null, AliceToken, A),
        JwtRow(Ra, RequireAnyJwt, null, BobToken, A),
        JwtRow(Ra, RequireAnyJwt, null, null, D),
        JwtRow(Ra, RequireAnyJwt, Frontend, null, D),
        JwtRow(Ra, RequireIssuer, null, BobToken, A),
        JwtRow(RaTwoIssuers, RequireIssuer, null, OtherIssuerAlice, D),
        JwtRow(RaTwoIssuers, RequireAlice, null, OtherIssuerAlice, D),
        JwtRow(RaTwoIssuers, RequireSubAlice, null, OtherIssuerAlice, A),
        JwtRow(RaTwoIssuers, RequireSubAlice, null, BobToken, D),
        JwtRow(Ra, RequireSubPrefix, null, AliceToken, A),
        JwtRow(Ra, RequireSubPrefix, null, AlOtherToken, A),
        JwtRow(Ra, RequireSubPrefix, null, BobToken, D),
        JwtRow(Ra, RequireAnyJwt, null, NumberSubToken, D), // Istio's "*" is regex .+ on a string: a number is no principal
        JwtRow(Ra, RequireAnyJwt, null, EmptySubToken, D), // ...nor an empty sub
        JwtRow(Ra, DenyWithoutJwt, null, EmptySubToken, D),
        JwtRow(Ra, DenyWithoutJwt, null, NumberSubToken, D),
        JwtRow(Ra, RequireAlice, null, NumberSubToken, D),
        JwtRow(Ra, DenyWithoutJwt, null, null, D),
        JwtRow(Ra, DenyWithoutJwt, Frontend, null, D),
        JwtRow(Ra, DenyWithoutJwt, null, BobToken, A),
        JwtRow(Ra, DenyWithoutJwt, null, ExpiredToken, U),
        JwtRow(Ra, DenyAlice, null, AliceToken, D),
        JwtRow(Ra, DenyAlice, null, BobToken, A),
        JwtRow(Ra, DenyAlice, null, null, A),
        JwtRow(Ra, AllowNotAlice, null, AliceToken, D),
        JwtRow(Ra, AllowNotAlice, null, BobToken, A),
        JwtRow(Ra, AllowNotAlice, null, null, A),
        JwtRow(Ra, WhenRequestPrincipal, null, AliceToken, A),
        JwtRow(Ra, WhenRequestPrincipal, null, BobToken, D),
        JwtRow(Ra, WhenRequestPrincipal, null, null, D),
        JwtRow(Ra, PeerAndJwt, Frontend, AliceToken, A),
        JwtRow(Ra, PeerAndJwt, Frontend, BobToken, D),
        JwtRow(Ra, PeerAndJwt, null, AliceToken, D),
        JwtRow(Ra, PeerOrJwt, Frontend, null, A),
        JwtRow(Ra, PeerOrJwt, null, AliceToken, A),
        JwtRow(Ra, PeerOrJwt, null, BobToken, D),
    ];

    /// <summary>request.auth.audiences / presenter / claims[...] (nested, lists, space-delimited scope, notValues).</summary>
    private static IEnumerable<Row> ClaimRows() =>
    [
        JwtRow(Ra, WhenAudience, null, AliceToken, A),
        JwtRow(Ra, WhenAudience, null, AudienceBilling, D),
        JwtRow(Ra, WhenAudience, null, Token(audience: new[] { "web", "orders" }, now: Now), A),
        JwtRow(Ra, WhenPresenter, null, AliceToken, A),
        JwtRow(Ra, WhenPresenter, null, BobToken, D),
        JwtRow(Ra, WhenGroupAdmin, null, AliceToken, A),
        JwtRow(Ra, WhenGroupAdmin, null, BobToken, D),
        JwtRow(Ra, WhenGroupAdmin, null, null, D),
        JwtRow(Ra, WhenNestedRole, null, AliceToken, A),
        JwtRow(Ra, WhenNestedRole, null, BobToken, D),
        JwtRow(Ra, WhenScopeWrite, null, AliceToken, A),
        JwtRow(Ra, WhenScopeWrite, null, BobToken, D),
        JwtRow(Ra, DenyBanned, null, BannedToken, D),
        JwtRow(Ra, DenyBanned, null, AliceToken, A),
        JwtRow(Ra, NotGuest, null, AliceToken, A),
        JwtRow(Ra, NotGuest, null, BobToken, D),
        JwtRow(Ra, NotGuest, null, null, A), // as Envoy: not_id over a missing claim matches (like notValues on an absent header)
    ];

    /// <summary>
    /// A token in <c>Authorization</c> and one in <c>?access_token=</c>: as Envoy, every token found is verified and any
    /// failure is 401; the principal is the header token's (found in review 2026-12-05: the query token was never read).
    /// The query key is read as the app reads it (ASP.NET Core decodes it and ignores case): a forged token under
    /// <c>access%5Ftoken</c> or <c>Access_Token</c> is verified too, and two of them (the app could read either) are 401.
    /// </summary>
    private static IEnumerable<Row> TwoTokenLocationRows() =>
    [
        QueryRow(Ra, NoPolicy, AliceToken, WrongKeyToken, U, key: "access%5Ftoken"),
        QueryRow(Ra, NoPolicy, AliceToken, WrongKeyToken, U, key: "access_toke%6E"),
        QueryRow(Ra, NoPolicy, AliceToken, WrongKeyToken, U, key: "Access_Token"),
        QueryRow(Ra, NoPolicy, AliceToken, AliceToken, U, key: "access_token=" + AliceToken + "&ACCESS_TOKEN"),
        QueryRow(Ra, NoPolicy, AliceToken, AliceToken + "&access_token=" + AliceToken, U),
        QueryRow(Ra, NoPolicy, AliceToken, AliceToken, A, key: "Access_Token"),
        QueryRow(Ra, NoPolicy, AliceToken, WrongKeyToken, A, key: "access_tokens"),
        QueryRow(Ra, NoPolicy, AliceToken, WrongKeyToken, U),
        QueryRow(Ra, NoPolicy, AliceToken, ExpiredToken, U),
        QueryRow(Ra, NoPolicy, AliceToken, NoneToken(now: Now), U),
        QueryRow(Ra, NoPolicy, AliceToken, OtherIssuerAlice, U),
        QueryRow(Ra, NoPolicy, WrongKeyToken, AliceToken, U),
        QueryRow(Ra, NoPolicy, null, WrongKeyToken, U),
        QueryRow(Ra, NoPolicy, AliceToken, AliceToken, A),
        QueryRow(Ra, RequireAlice, AliceToken, BobToken, A),
        QueryRow(Ra, RequireAlice, BobToken, AliceToken, D),
        QueryRow(Ra, RequireAlice, null, AliceToken, A),
    ];

    private static Row QueryRow(RequestAuthenticationModel[] requestAuthentications, AuthorizationPolicyModel[] policies, string? headerToken, string queryToken, char expected, string key = "access_token") =>
        new(policies, Plain, "GET", $"/x?{key}={queryToken}", expected, Jwt: requestAuthentications, Token: headerToken);

    /// <summary>One JWT row: the port's RequestAuthentications (empty: none), its AuthorizationPolicies, the mTLS peer (null: plaintext) and the token (null: none).</summary>
    private static Row JwtRow(RequestAuthenticationModel[] requestAuthentications, AuthorizationPolicyModel[] policies, string? peer, string? token, char expected) =>
        new(policies, peer ?? Plain, "GET", "/x", expected, Jwt: requestAuthentications, Token: token);

    private static RuleSource RequestSource(string[]? principals = null, string[]? requestPrincipals = null, string[]? notRequestPrincipals = null) =>
        Source(principals: principals) with { RequestPrincipals = [.. requestPrincipals ?? []], NotRequestPrincipals = [.. notRequestPrincipals ?? []] };

    private static RuleCondition Claim(string[] path, string[]? values = null, string[]? notValues = null) =>
        When(ConditionKeys.RequestClaims, values, notValues) with { ClaimPath = [.. path] };
}
