using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.ControlPlane.Model;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>
/// Decision-table rows for RequestAuthentication + AuthorizationPolicy (requestPrincipals, notRequestPrincipals,
/// request.auth.principal / audiences / presenter / claims[...]), run end to end: control-plane translation (jwt_authn +
/// RBAC) → inbound listener → client decoder → middleware. A row set of its own (<see cref="Rows"/>) so the shared
/// decision table can take it in next to its other row sets.
/// </summary>
public sealed class RequestAuthenticationDecisionRows(ITestOutputHelper output)
{
    /// <summary>Allowed (the app runs).</summary>
    public const char A = 'A';

    /// <summary>403 RBAC: access denied.</summary>
    public const char D = 'D';

    /// <summary>401 from the JWT filter (invalid token).</summary>
    public const char U = 'U';

    /// <summary>403 from the JWT filter (audience not allowed).</summary>
    public const char X = 'X';

    private const string Alice = "https://issuer.example.com/alice";
    private const string Frontend = "spiffe://cluster.local/ns/default/sa/frontend";

    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private static readonly RequestAuthenticationModel[] Ra = [RequestAuthentication("ra", JwtRule())];
    private static readonly RequestAuthenticationModel[] RaWithAudience = [RequestAuthentication("ra", JwtRule(audiences: ["orders"]))];
    private static readonly RequestAuthenticationModel[] RaTwoIssuers = [RequestAuthentication("ra", JwtRule(), JwtRule(issuer: OtherIssuer, jwks: Jwks(("o1", Key2))))];

    private static readonly AuthorizationPolicyModel[] None = [];
    private static readonly AuthorizationPolicyModel[] RequireAlice = [Allow("alice", Rule(from: [Source(requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] RequireAnyJwt = [Allow("any-jwt", Rule(from: [Source(requestPrincipals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] RequireIssuer = [Allow("issuer", Rule(from: [Source(requestPrincipals: [Issuer + "/*"])]))];
    private static readonly AuthorizationPolicyModel[] RequireSubAlice = [Allow("sub", Rule(from: [Source(requestPrincipals: ["*/alice"])]))];
    private static readonly AuthorizationPolicyModel[] RequireSubPrefix = [Allow("sub-prefix", Rule(from: [Source(requestPrincipals: [Issuer + "/al*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyWithoutJwt = [Deny("no-jwt", Rule(from: [Source(notRequestPrincipals: ["*"])]))];
    private static readonly AuthorizationPolicyModel[] DenyAlice = [Deny("no-alice", Rule(from: [Source(requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] AllowNotAlice = [Allow("not-alice", Rule(from: [Source(notRequestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] WhenPrincipal = [Allow("when-principal", Rule(when: [When(ConditionKeys.RequestPrincipal, values: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] WhenAudience = [Allow("when-aud", Rule(when: [When(ConditionKeys.RequestAudiences, values: ["orders"])]))];
    private static readonly AuthorizationPolicyModel[] WhenPresenter = [Allow("when-azp", Rule(when: [When(ConditionKeys.RequestPresenter, values: ["web-*"])]))];
    private static readonly AuthorizationPolicyModel[] WhenGroupAdmin = [Allow("groups", Rule(when: [Claim(["groups"], values: ["admin"])]))];
    private static readonly AuthorizationPolicyModel[] WhenNestedRole = [Allow("nested", Rule(when: [Claim(["realm", "role"], values: ["ops"])]))];
    private static readonly AuthorizationPolicyModel[] WhenScopeWrite = [Allow("scope", Rule(when: [Claim(["scope"], values: ["write"])]))];
    private static readonly AuthorizationPolicyModel[] DenyBanned = [Deny("banned", Rule(when: [Claim(["groups"], values: ["banned"])]))];
    private static readonly AuthorizationPolicyModel[] NotGuest = [Allow("not-guest", Rule(when: [Claim(["role"], notValues: ["guest"])]))];
    private static readonly AuthorizationPolicyModel[] PeerAndJwt =
        [Allow("both", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"], requestPrincipals: [Alice])]))];
    private static readonly AuthorizationPolicyModel[] PeerOrJwt =
        [Allow("either", Rule(from: [Source(principals: ["cluster.local/ns/default/sa/frontend"]), Source(requestPrincipals: [Alice])]))];

    private static readonly string AliceToken = Token(now: Now, claims: new() { ["azp"] = "web-app", ["groups"] = new[] { "dev", "admin" }, ["realm"] = new Dictionary<string, object> { ["role"] = "ops" }, ["scope"] = "read write", ["role"] = "user" });
    private static readonly string BobToken = Token(subject: "bob", now: Now, claims: new() { ["azp"] = "cli", ["groups"] = "dev", ["realm"] = new Dictionary<string, object> { ["role"] = "dev" }, ["scope"] = "read", ["role"] = "guest" });
    private static readonly string BannedToken = Token(subject: "carol", now: Now, claims: new() { ["groups"] = new[] { "admin", "banned" } });
    private static readonly string AlOtherToken = Token(subject: "alan", now: Now);
    private static readonly string OtherIssuerAlice = Token(key: Key2, kid: "o1", issuer: OtherIssuer, now: Now);
    private static readonly string NumberSubToken = Token(now: Now, claims: new() { ["sub"] = 42 });
    private static readonly string ExpiredToken = Token(expires: Now.AddMinutes(-10), now: Now);
    private static readonly string WrongKeyToken = Token(key: Stranger, now: Now);
    private static readonly string AudienceBilling = Token(audience: "billing", now: Now);

    /// <summary>The rows: (RequestAuthentications, AuthorizationPolicies, peer, token, expected).</summary>
    internal static IReadOnlyList<RequestAuthRow> Rows { get; } =
    [
        new(Ra, None, null, null, A),
        new(Ra, None, null, AliceToken, A),
        new(Ra, None, null, ExpiredToken, U),
        new(Ra, None, null, WrongKeyToken, U),
        new(Ra, None, null, NoneToken(now: Now), U),
        new(Ra, None, null, HmacWithPublicKeyToken(now: Now), U),
        new(Ra, None, null, OtherIssuerAlice, U),
        new(RaWithAudience, None, null, AudienceBilling, X),
        new(RaWithAudience, None, null, AliceToken, A),
        new(RaWithAudience, None, null, null, A),
        new(Ra, RequireAlice, null, AliceToken, A),
        new(Ra, RequireAlice, null, BobToken, D),
        new(Ra, RequireAlice, null, null, D),
        new(Ra, RequireAlice, null, ExpiredToken, U),
        new(Ra, RequireAlice, Frontend, null, D),
        new([], RequireAlice, null, AliceToken, D), // no RequestAuthentication: the token is never validated, so no principal
        new(Ra, RequireAnyJwt, null, AliceToken, A),
        new(Ra, RequireAnyJwt, null, BobToken, A),
        new(Ra, RequireAnyJwt, null, null, D),
        new(Ra, RequireAnyJwt, Frontend, null, D),
        new(Ra, RequireIssuer, null, BobToken, A),
        new(RaTwoIssuers, RequireIssuer, null, OtherIssuerAlice, D),
        new(RaTwoIssuers, RequireAlice, null, OtherIssuerAlice, D),
        new(RaTwoIssuers, RequireSubAlice, null, OtherIssuerAlice, A),
        new(RaTwoIssuers, RequireSubAlice, null, BobToken, D),
        new(Ra, RequireSubPrefix, null, AliceToken, A),
        new(Ra, RequireSubPrefix, null, AlOtherToken, A),
        new(Ra, RequireSubPrefix, null, BobToken, D),
        new(Ra, RequireAnyJwt, null, NumberSubToken, A), // sub present (a number): "*" means present
        new(Ra, RequireAlice, null, NumberSubToken, D),
        new(Ra, DenyWithoutJwt, null, null, D),
        new(Ra, DenyWithoutJwt, Frontend, null, D),
        new(Ra, DenyWithoutJwt, null, BobToken, A),
        new(Ra, DenyWithoutJwt, null, ExpiredToken, U),
        new(Ra, DenyAlice, null, AliceToken, D),
        new(Ra, DenyAlice, null, BobToken, A),
        new(Ra, DenyAlice, null, null, A),
        new(Ra, AllowNotAlice, null, AliceToken, D),
        new(Ra, AllowNotAlice, null, BobToken, A),
        new(Ra, AllowNotAlice, null, null, A),
        new(Ra, WhenPrincipal, null, AliceToken, A),
        new(Ra, WhenPrincipal, null, BobToken, D),
        new(Ra, WhenPrincipal, null, null, D),
        new(Ra, WhenAudience, null, AliceToken, A),
        new(Ra, WhenAudience, null, AudienceBilling, D),
        new(Ra, WhenAudience, null, Token(audience: new[] { "web", "orders" }, now: Now), A),
        new(Ra, WhenPresenter, null, AliceToken, A),
        new(Ra, WhenPresenter, null, BobToken, D),
        new(Ra, WhenGroupAdmin, null, AliceToken, A),
        new(Ra, WhenGroupAdmin, null, BobToken, D),
        new(Ra, WhenGroupAdmin, null, null, D),
        new(Ra, WhenNestedRole, null, AliceToken, A),
        new(Ra, WhenNestedRole, null, BobToken, D),
        new(Ra, WhenScopeWrite, null, AliceToken, A),
        new(Ra, WhenScopeWrite, null, BobToken, D),
        new(Ra, DenyBanned, null, BannedToken, D),
        new(Ra, DenyBanned, null, AliceToken, A),
        new(Ra, NotGuest, null, AliceToken, A),
        new(Ra, NotGuest, null, BobToken, D),
        new(Ra, NotGuest, null, null, A), // as Envoy: not_id over a missing claim matches (like notValues on an absent header)
        new(Ra, PeerAndJwt, Frontend, AliceToken, A),
        new(Ra, PeerAndJwt, Frontend, BobToken, D),
        new(Ra, PeerAndJwt, null, AliceToken, D),
        new(Ra, PeerOrJwt, Frontend, null, A),
        new(Ra, PeerOrJwt, null, AliceToken, A),
        new(Ra, PeerOrJwt, null, BobToken, D),
    ];

    [Fact]
    public async Task Authorize_RequestAuthenticationRows_EveryRowMatchesIstioSemantics()
    {
        var wrong = new List<string>();
        foreach (var row in Rows)
        {
            var actual = await RunAsync(row);
            if (actual != row.Expected)
            {
                wrong.Add($"{row}: expected {row.Expected}, got {actual}");
            }
        }

        foreach (var line in wrong)
        {
            output.WriteLine(line);
        }

        output.WriteLine($"{Rows.Count} request-authentication rows checked, {wrong.Count} wrong");
        Assert.True(Rows.Count >= 60);
        Assert.Empty(wrong);
    }

    /// <summary>Runs one row through the real middleware and returns A, D, U or X.</summary>
    internal static async Task<char> RunAsync(RequestAuthRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        var jwt = row.RequestAuthentications.Length == 0 ? null : Config(row.RequestAuthentications);
        Assert.True(InboundPolicyDecoder.TryDecode(Listener(row.Policies, jwt), out var policy, out var errors), string.Join("; ", errors));
        var store = new InboundPolicyStore();
        store.Replace([policy]);
        var reached = false;
        var middleware = new MeshAuthorizationMiddleware(_ => { reached = true; return Task.CompletedTask; }, store, NullLogger<MeshAuthorizationMiddleware>.Instance);
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = 8080;
        context.Request.Method = "GET";
        context.Request.Path = "/x";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "/x";
        context.Response.Body = new MemoryStream();
        if (row.Token is not null)
        {
            context.Request.Headers.Authorization = "Bearer " + row.Token;
        }

        if (row.Peer is not null)
        {
            context.Features.Set<IMeshPeerIdentityFeature>(new Peer(row.Peer));
        }

        await middleware.InvokeAsync(context);
        return reached ? A : context.Response.StatusCode switch
        {
            401 => U,
            403 when context.Response.Headers.WWWAuthenticate.Count > 0 => X,
            403 => D,
            _ => '?',
        };
    }

    private static RuleSource Source(string[]? principals = null, string[]? requestPrincipals = null, string[]? notRequestPrincipals = null) =>
        IstioPolicies.Source(principals: principals) with { RequestPrincipals = [.. requestPrincipals ?? []], NotRequestPrincipals = [.. notRequestPrincipals ?? []] };

    private static RuleCondition Claim(string[] path, string[]? values = null, string[]? notValues = null) =>
        When(ConditionKeys.RequestClaims, values, notValues) with { ClaimPath = [.. path] };

    private sealed class Peer(string spiffeId) : IMeshPeerIdentityFeature
    {
        public string? SpiffeId => spiffeId;

        public string? PeerNamespace => spiffeId.Split('/')[4];

        public string? PeerServiceAccount => spiffeId.Split('/')[6];

        public System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate => null;
    }
}

/// <summary>One row: the port's RequestAuthentications and AuthorizationPolicies, the mTLS peer (null = plaintext), the bearer token (null = none) and A/D/U/X.</summary>
internal sealed record RequestAuthRow(
    RequestAuthenticationModel[] RequestAuthentications, AuthorizationPolicyModel[] Policies, string? Peer, string? Token, char Expected)
{
    public override string ToString() =>
        $"ra=[{string.Join(",", RequestAuthentications.Select(r => r.Name + ":" + string.Join("+", r.JwtRules.Select(j => j.Issuer))))}] authz=[{string.Join(",", Policies.Select(p => p.Name))}] peer={Peer ?? "plaintext"} token={(Token is null ? "none" : Token[..Math.Min(16, Token.Length)] + "…")}";
}
