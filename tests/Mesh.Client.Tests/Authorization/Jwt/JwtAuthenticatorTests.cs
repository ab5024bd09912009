using Mesh.Client.Authorization;
using Mesh.Client.Authorization.Jwt;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>
/// The client's JWT validator against real RS256/ES256 tokens: each bad input of issue 7 (alg none, a key not in the
/// JWKS, wrong issuer/audience, expired, not yet valid, kid missing, HS256 with the RSA public key) and Envoy's answers.
/// </summary>
public sealed class JwtAuthenticatorTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 1, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public async Task Authenticate_ValidToken_OkWithPrincipalIssSub()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule()), Bearer(Token(now: Now)));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Equal($"{Issuer}/alice", outcome.Principal!.Principal);
        Assert.Equal(["orders"], outcome.Principal.Audiences);
        Assert.Equal("authorization", outcome.TokenHeader);
    }

    [Fact]
    public async Task Authenticate_NoToken_AllowedWithoutPrincipal()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule()), _ => { });

        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Null(outcome.Principal);
    }

    public static TheoryData<string, string, string> BadTokens()
    {
        var data = new TheoryData<string, string, string>
        {
            { "alg none", NoneToken(now: Now), nameof(JwtStatus.VerificationFailed) },
            { "alg none without kid", NoneToken(kid: null!, now: Now), nameof(JwtStatus.VerificationFailed) },
            { "HS256 signed with the RSA public key (SPKI)", HmacWithPublicKeyToken(now: Now), nameof(JwtStatus.VerificationFailed) },
            { "HS256 signed with the JWKS text", HmacWithPublicKeyToken(useJwkJson: true, now: Now), nameof(JwtStatus.VerificationFailed) },
            { "signed by a key not in the JWKS (kid k1)", Token(key: Stranger, now: Now), nameof(JwtStatus.VerificationFailed) },
            { "kid not in the JWKS", Token(kid: "k9", now: Now), nameof(JwtStatus.KeyNotFound) },
            { "kid missing, JWKS has two keys", Token(kid: null, now: Now), nameof(JwtStatus.KeyNotFound) },
            { "wrong issuer", Token(issuer: "https://evil.example.com", now: Now), nameof(JwtStatus.UnknownIssuer) },
            { "expired 2 min ago (beyond the 60 s skew)", Token(expires: Now.AddMinutes(-2), now: Now), nameof(JwtStatus.Expired) },
            { "not valid for 2 more min", Token(notBefore: Now.AddMinutes(2), now: Now), nameof(JwtStatus.NotYetValid) },
            { "payload changed after signing", Tampered(Token(now: Now)), nameof(JwtStatus.VerificationFailed) },
            { "not a JWT", "not-a-token", nameof(JwtStatus.BadFormat) },
            { "PS256 header, JWK says RS256", Token(now: Now, algorithm: SecurityAlgorithms.RsaSsaPssSha256).Split('.')[0] + "." + Token(now: Now).Split('.')[1] + "." + Token(now: Now).Split('.')[2], nameof(JwtStatus.KeyNotFound) },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(BadTokens))]
    public async Task Authenticate_BadToken_Rejected(string name, string token, string expectedStatus)
    {
        var expected = Enum.Parse<JwtStatus>(expectedStatus);
        var authenticator = Compile(JwtRule());
        var outcome = await AuthenticateAsync(authenticator, Bearer(token));

        Assert.True(expected == outcome.Status, $"{name}: expected {expected}, got {outcome.Status}");
        Assert.Null(outcome.Principal);
        Assert.Equal(0, authenticator.Providers[0].Cache.Count);
    }

    [Fact]
    public async Task Authenticate_WrongAudience_AudienceNotAllowed()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule(audiences: ["billing"])), Bearer(Token(now: Now)));

        Assert.Equal(JwtStatus.AudienceNotAllowed, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_OneOfSeveralAudiences_Ok()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule(audiences: ["billing", "orders"])), Bearer(Token(audience: new[] { "web", "orders" }, now: Now)));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_SkewEdges_WithinSixtySecondsAccepted()
    {
        var authenticator = Compile(JwtRule());

        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, Bearer(Token(expires: Now.AddSeconds(-50), now: Now)))).Status);
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, Bearer(Token(notBefore: Now.AddSeconds(50), now: Now)))).Status);
        Assert.Equal(JwtStatus.Expired, (await AuthenticateAsync(authenticator, Bearer(Token(expires: Now.AddSeconds(-70), now: Now)))).Status);
    }

    [Fact]
    public async Task Authenticate_KidMissingWithOneKeyJwks_Ok()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule(jwks: OneKeyJwks)), Bearer(Token(kid: null, now: Now)));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_SecondKeyByKid_Ok()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule()), Bearer(Token(key: Key2, kid: "k2", now: Now)));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_KidOfOtherKey_VerificationFails()
    {
        // Signed with k2 but claims to be k1: the k1 key cannot verify it.
        var outcome = await AuthenticateAsync(Compile(JwtRule()), Bearer(Token(key: Key2, kid: "k1", now: Now)));

        Assert.Equal(JwtStatus.VerificationFailed, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_Es256Key_Ok()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule(jwks: EcJwks)), Bearer(EcToken(now: Now)));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Equal("ec-user", outcome.Principal!.Subject);
    }

    [Fact]
    public async Task Authenticate_EmptyJwks_EveryTokenFailsAndNoTokenPasses()
    {
        // What the control plane sends when a jwksUri never answered (Istio's PublicOnlyJwks semantics).
        var authenticator = Compile(JwtRule(jwks: """{"keys":[]}"""));

        Assert.Equal(JwtStatus.KeyNotFound, (await AuthenticateAsync(authenticator, Bearer(Token(now: Now)))).Status);
        Assert.Equal(JwtStatus.KeyNotFound, (await AuthenticateAsync(authenticator, Bearer(Token(kid: null, now: Now)))).Status);
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, _ => { })).Status);
    }

    [Fact]
    public async Task Authenticate_FromHeaderWithPrefix_ReadsOnlyThatHeader()
    {
        var authenticator = Compile(JwtRule(fromHeaders: [("x-jwt", "Token ")]));
        var token = Token(now: Now);

        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, r => r.Headers["x-jwt"] = "Token " + token)).Status);
        Assert.Equal(JwtStatus.VerificationFailed, (await AuthenticateAsync(authenticator, r => r.Headers["x-jwt"] = "Bearer " + token)).Status);

        // The default location is not read when fromHeaders is set: the request counts as having no token.
        var outcome = await AuthenticateAsync(authenticator, Bearer(token));
        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Null(outcome.Principal);
    }

    [Fact]
    public async Task Authenticate_FromParams_ReadsQueryParameter()
    {
        var authenticator = Compile(JwtRule(fromParams: ["token"]));
        var token = Token(now: Now);

        var outcome = await AuthenticateAsync(authenticator, r => r.QueryString = new QueryString("?a=1&token=" + token));

        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Null(outcome.TokenHeader);
        Assert.Equal(JwtStatus.KeyNotFound, (await AuthenticateAsync(authenticator, r => r.QueryString = new QueryString("?token=" + Token(kid: "zz", now: Now)))).Status);
    }

    [Fact]
    public async Task Authenticate_DefaultLocations_BearerCaseInsensitiveThenAccessTokenParam()
    {
        var authenticator = Compile(JwtRule());
        var token = Token(now: Now);

        Assert.NotNull((await AuthenticateAsync(authenticator, r => r.Headers.Authorization = "bearer " + token)).Principal);
        Assert.NotNull((await AuthenticateAsync(authenticator, r => r.QueryString = new QueryString("?access_token=" + token))).Principal);

        // Another scheme is not a JWT location: no token, no principal, allowed (RBAC decides).
        var basic = await AuthenticateAsync(authenticator, r => r.Headers.Authorization = "Basic dXNlcjpwYXNz");
        Assert.Equal(JwtStatus.Ok, basic.Status);
        Assert.Null(basic.Principal);
    }

    [Fact]
    public async Task Authenticate_ValidHeaderAndForgedQueryToken_Rejected()
    {
        // Found in review 2026-12-05: only the first location was read, so a forged ?access_token= rode along with a valid
        // header token to an app that reads the query (SignalR does). Envoy verifies every token and fails on any.
        var authenticator = Compile(JwtRule());
        var token = Token(now: Now);
        void Both(HttpRequest r, string header, string query)
        {
            r.Headers.Authorization = "Bearer " + header;
            r.QueryString = new QueryString("?access_token=" + query);
        }

        Assert.Equal(JwtStatus.VerificationFailed, (await AuthenticateAsync(authenticator, r => Both(r, token, Tampered(token)))).Status);

        // Also when the header token is cached (the synchronous path) and for other failures of the query token.
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, Bearer(token))).Status);
        Assert.Equal(JwtStatus.VerificationFailed, (await AuthenticateAsync(authenticator, r => Both(r, token, Token(key: Stranger, now: Now)))).Status);
        Assert.Equal(JwtStatus.Expired, (await AuthenticateAsync(authenticator, r => Both(r, token, Token(expires: Now.AddMinutes(-5), now: Now)))).Status);
        Assert.Equal(JwtStatus.BadFormat, (await AuthenticateAsync(authenticator, r => Both(r, token, "not-a-token"))).Status);
        Assert.Equal(JwtStatus.VerificationFailed, (await AuthenticateAsync(authenticator, r => Both(r, Tampered(token), token))).Status);
    }

    [Fact]
    public async Task Authenticate_TwoValidTokens_OkWithTheHeaderTokensPrincipal()
    {
        // Envoy verifies the last location first; the payload that stays is the first location's (the header's).
        var authenticator = Compile(JwtRule());
        var outcome = await AuthenticateAsync(authenticator, r =>
        {
            r.Headers.Authorization = "Bearer " + Token(subject: "bob", now: Now);
            r.QueryString = new QueryString("?access_token=" + Token(now: Now));
        });

        Assert.Equal(JwtStatus.Ok, outcome.Status);
        Assert.Equal($"{Issuer}/bob", outcome.Principal!.Principal);
        Assert.Equal("authorization", outcome.TokenHeader);
    }

    [Fact]
    public async Task Authenticate_ConfiguredLocations_EveryTokenVerified()
    {
        var authenticator = Compile(JwtRule(fromHeaders: [("x-jwt", "")], fromParams: ["token"]));
        var token = Token(now: Now);

        var outcome = await AuthenticateAsync(authenticator, r =>
        {
            r.Headers["x-jwt"] = token;
            r.QueryString = new QueryString("?token=" + Token(kid: "zz", now: Now));
        });

        Assert.Equal(JwtStatus.KeyNotFound, outcome.Status);
    }

    [Fact]
    public async Task Authenticate_TokenSeenAgain_ServedFromCacheSynchronously()
    {
        var authenticator = Compile(JwtRule());
        var token = Token(now: Now);
        var first = await AuthenticateAsync(authenticator, Bearer(token));

        var context = Request(Bearer(token));
        var pending = authenticator.AuthenticateAsync(context.Request, Now.AddMinutes(1));
        var completedSynchronously = pending.IsCompletedSuccessfully;
        var second = await pending;

        Assert.True(completedSynchronously);
        Assert.Same(first.Principal, second.Principal);
        Assert.Equal(1, authenticator.Providers[0].Cache.Count);
    }

    [Fact]
    public async Task Authenticate_CachedTokenAfterExpiry_VerifiedAgainAndExpired()
    {
        var authenticator = Compile(JwtRule());
        var token = Token(expires: Now.AddMinutes(5), now: Now);
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, Bearer(token))).Status);

        var later = await authenticator.AuthenticateAsync(Request(Bearer(token)).Request, Now.AddMinutes(7));

        Assert.Equal(JwtStatus.Expired, later.Status);
        Assert.Equal(0, authenticator.Providers[0].Cache.Count);
    }

    [Fact]
    public async Task Authenticate_KeyRemovedInNextSnapshot_CachedTokenNoLongerAccepted()
    {
        // Keys and cache belong to one pushed listener: a key the issuer dropped stops working at the next push.
        var token = Token(now: Now);
        var before = Compile(JwtRule());
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(before, Bearer(token))).Status);

        var after = Compile(JwtRule(jwks: Jwks(("k2", Key2))));

        Assert.Equal(JwtStatus.KeyNotFound, (await AuthenticateAsync(after, Bearer(token))).Status);
        Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(after, Bearer(Token(key: Key2, kid: "k2", now: Now)))).Status);
    }

    [Fact]
    public async Task Authenticate_CacheIsBounded()
    {
        var authenticator = Compile(JwtRule());
        for (var i = 0; i < JwtTokenCache.DefaultCapacity + 20; i++)
        {
            Assert.Equal(JwtStatus.Ok, (await AuthenticateAsync(authenticator, Bearer(Token(subject: $"user{i}", now: Now)))).Status);
        }

        Assert.Equal(JwtTokenCache.DefaultCapacity, authenticator.Providers[0].Cache.Count);
    }

    [Fact]
    public async Task Authenticate_TwoIssuersSameHeader_EachTokenVerifiedByItsIssuer()
    {
        var authenticator = Compile(JwtRule(), JwtRule(issuer: OtherIssuer, jwks: Jwks(("o1", Key2))));

        var first = await AuthenticateAsync(authenticator, Bearer(Token(now: Now)));
        var second = await AuthenticateAsync(authenticator, Bearer(Token(key: Key2, kid: "o1", issuer: OtherIssuer, now: Now)));
        var cachedAgain = await AuthenticateAsync(authenticator, Bearer(Token(now: Now)));
        var forged = await AuthenticateAsync(authenticator, Bearer(Token(key: Key1, kid: "o1", issuer: OtherIssuer, now: Now)));

        Assert.Equal($"{Issuer}/alice", first.Principal!.Principal);
        Assert.Equal($"{OtherIssuer}/alice", second.Principal!.Principal);
        Assert.Equal(JwtStatus.Ok, cachedAgain.Status);
        Assert.Equal(JwtStatus.VerificationFailed, forged.Status);
    }

    [Fact]
    public async Task Authenticate_CorsPreflight_Bypassed()
    {
        var outcome = await AuthenticateAsync(Compile(JwtRule()), r =>
        {
            r.Method = "OPTIONS";
            r.Headers.Origin = "https://app.example.com";
            r.Headers.AccessControlRequestMethod = "GET";
            r.Headers.Authorization = "Bearer garbage";
        });

        Assert.Equal(JwtStatus.Ok, outcome.Status);
    }

    [Fact]
    public void Compile_UnsupportedPieces_ReportedWithFieldPaths()
    {
        var config = Config(RequestAuthentication("ra", JwtRule()));
        config.Providers["origins-0"].FromCookies.Add("session");
        config.Providers["origins-0"].LocalJwks.InlineString = """{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}""";
        config.Rules[0].Requires.RequiresAny.Requirements[0].ProviderName = "nope";
        var errors = new List<string>();

        Assert.Null(JwtAuthenticator.Compile(config, "jwt", errors));
        Assert.Contains(errors, e => e.StartsWith("jwt.providers[origins-0].from_cookies", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("only RSA and EC keys", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("provider_name: 'nope' is not a provider", StringComparison.Ordinal));
    }

    [Fact]
    public void Compile_RemoteJwks_Rejected()
    {
        var config = Config(RequestAuthentication("ra", JwtRule()));
        config.Providers["origins-0"].LocalJwks = null;
        var errors = new List<string>();

        Assert.Null(JwtAuthenticator.Compile(config, "jwt", errors));
        Assert.Contains(errors, e => e.Contains("local_jwks.inline_string: is required", StringComparison.Ordinal));
    }

    [Fact]
    public void Decode_JwtFilterAfterRbac_Nacked()
    {
        var listener = IstioPolicies.Listener([IstioPolicies.Allow("any", IstioPolicies.Rule())]);
        foreach (var chain in listener.FilterChains)
        {
            var manager = chain.Filters[0].TypedConfig.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpConnectionManager>();
            manager.HttpFilters.Insert(1, new Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpFilter
            {
                Name = "envoy.filters.http.jwt_authn",
                TypedConfig = Google.Protobuf.WellKnownTypes.Any.Pack(Config(RequestAuthentication("ra", JwtRule()))),
            });
            chain.Filters[0].TypedConfig = Google.Protobuf.WellKnownTypes.Any.Pack(manager);
        }

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.Contains("must come before the RBAC filters", StringComparison.Ordinal));
    }

    [Fact]
    public void Decode_ListenerWithJwtFilter_PolicyHasAuthenticator()
    {
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([], Config(RequestAuthentication("ra", JwtRule()))), out var policy, out var errors), string.Join("; ", errors));
        Assert.NotNull(policy.Jwt);
        Assert.Equal(2, policy.Jwt.Providers[0].KeyCount);
    }

    private static JwtAuthenticator Compile(params Mesh.ControlPlane.Model.JwtRuleModel[] rules)
    {
        var errors = new List<string>();
        var authenticator = JwtAuthenticator.Compile(Config(RequestAuthentication("ra", rules)), "jwt", errors);
        Assert.True(authenticator is not null, string.Join("; ", errors));
        return authenticator;
    }

    private static Action<HttpRequest> Bearer(string token) => r => r.Headers.Authorization = "Bearer " + token;

    private static DefaultHttpContext Request(Action<HttpRequest> configure)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/x";
        configure(context.Request);
        return context;
    }

    private static async Task<JwtOutcome> AuthenticateAsync(JwtAuthenticator authenticator, Action<HttpRequest> configure) =>
        await authenticator.AuthenticateAsync(Request(configure).Request, Now);
}
