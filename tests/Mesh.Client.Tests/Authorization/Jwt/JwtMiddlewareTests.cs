using System.Text;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.IdentityModel.Tokens;
using static Mesh.Client.Tests.Authorization.Jwt.JwtTestTokens;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>What the app and the caller see: Envoy's 401/403 replies and the jwt_authn outputs (principal, stripped token, payload and claim headers).</summary>
public sealed class JwtMiddlewareTests
{
    [Fact]
    public async Task InvokeAsync_InvalidToken_401WithEnvoyBodyAndWwwAuthenticate()
    {
        var (context, app) = await RunAsync(JwtRule(), r => r.Headers.Authorization = "Bearer " + Token(expires: DateTimeOffset.UtcNow.AddMinutes(-5)));

        Assert.Null(app);
        Assert.Equal(401, context.Response.StatusCode);
        Assert.Equal("Jwt is expired", Body(context));
        Assert.Equal("Bearer realm=\"http://orders/api/x\", error=\"invalid_token\"", context.Response.Headers.WWWAuthenticate.ToString());
    }

    [Fact]
    public async Task InvokeAsync_AudienceNotAllowed_403FromJwtFilter()
    {
        var (context, app) = await RunAsync(JwtRule(audiences: ["billing"]), r => r.Headers.Authorization = "Bearer " + Token());

        Assert.Null(app);
        Assert.Equal(403, context.Response.StatusCode);
        Assert.Equal("Audiences in Jwt are not allowed", Body(context));
    }

    [Fact]
    public async Task InvokeAsync_ValidToken_PrincipalFeatureAndTokenStripped()
    {
        var (_, app) = await RunAsync(JwtRule(), r => r.Headers.Authorization = "Bearer " + Token(claims: new() { ["azp"] = "web" }));

        Assert.NotNull(app);
        var principal = app.Features.Get<IMeshRequestPrincipalFeature>();
        Assert.NotNull(principal);
        Assert.Equal($"{Issuer}/alice", principal.Principal);
        Assert.Equal("web", principal.Presenter);
        Assert.False(app.Request.Headers.ContainsKey("authorization"));
    }

    [Fact]
    public async Task InvokeAsync_TokensInTwoHeaderLocations_BothVerifiedAndBothStripped()
    {
        // Envoy verifies the token of every location and, without forward, removes each one it verified: the app never
        // sees a token in the second header that it might read as the caller's.
        var (_, app) = await RunAsync(
            JwtRule(fromHeaders: [("x-token-a", "Bearer "), ("x-token-b", "")]),
            r =>
            {
                r.Headers["x-token-a"] = "Bearer " + Token();
                r.Headers["x-token-b"] = Token(subject: "bob");
                r.Headers["x-other"] = "kept";
            });

        Assert.NotNull(app);
        Assert.False(app.Request.Headers.ContainsKey("x-token-a"));
        Assert.False(app.Request.Headers.ContainsKey("x-token-b"));
        Assert.Equal("kept", app.Request.Headers["x-other"].ToString());
    }

    [Fact]
    public async Task InvokeAsync_ForwardOriginalToken_TokenKept()
    {
        var token = Token();
        var (_, app) = await RunAsync(JwtRule(forward: true), r => r.Headers.Authorization = "Bearer " + token);

        Assert.Equal("Bearer " + token, app!.Request.Headers.Authorization.ToString());
    }

    [Fact]
    public async Task InvokeAsync_OutputPayloadAndClaimHeaders_SetAndClientValuesReplaced()
    {
        var token = Token(claims: new() { ["tenant"] = new Dictionary<string, object> { ["id"] = 42 }, ["admin"] = true });
        var (_, app) = await RunAsync(
            JwtRule(payloadHeader: "x-jwt-payload", claimHeaders: [("x-sub", "sub"), ("x-tenant", "tenant.id"), ("x-admin", "admin"), ("x-missing", "nope")]),
            r =>
            {
                r.Headers.Authorization = "Bearer " + token;
                r.Headers["x-sub"] = "forged-by-client";
            });

        var headers = app!.Request.Headers;
        Assert.Equal(token.Split('.')[1], headers["x-jwt-payload"].ToString());
        Assert.Contains("\"sub\":\"alice\"", Encoding.UTF8.GetString(Base64UrlEncoder.DecodeBytes(headers["x-jwt-payload"].ToString())), StringComparison.Ordinal);
        Assert.Equal("alice", headers["x-sub"].ToString());
        Assert.Equal("42", headers["x-tenant"].ToString());
        Assert.Equal("true", headers["x-admin"].ToString());
        Assert.False(headers.ContainsKey("x-missing"));
    }

    [Fact]
    public async Task InvokeAsync_NoToken_ForgedOutputHeadersRemoved()
    {
        var (_, app) = await RunAsync(
            JwtRule(payloadHeader: "x-jwt-payload", claimHeaders: [("x-sub", "sub")]),
            r =>
            {
                r.Headers["x-jwt-payload"] = "eyJzdWIiOiJhZG1pbiJ9";
                r.Headers["X-Sub"] = "admin";
                r.Headers["x-other"] = "kept";
            });

        Assert.NotNull(app);
        Assert.False(app.Request.Headers.ContainsKey("x-jwt-payload"));
        Assert.False(app.Request.Headers.ContainsKey("x-sub"));
        Assert.Equal("kept", app.Request.Headers["x-other"].ToString());
    }

    [Fact]
    public async Task InvokeAsync_NoToken_ForgedClaimHeaderDoesNotSatisfyRbac()
    {
        // jwt_authn runs before RBAC in Envoy: RBAC sees the sanitised headers, never the client's spelling of a claim header.
        var (context, app) = await RunAsync(
            [AdminsByRoleHeader], Config(RequestAuthentication("ra", JwtRule(claimHeaders: [("x-role", "role")]))), r => r.Headers["x-role"] = "admin");

        Assert.Null(app);
        Assert.Equal(403, context.Response.StatusCode);
        Assert.Equal(MeshAuthorizationMiddleware.DeniedBody, Body(context));
    }

    [Fact]
    public async Task InvokeAsync_ValidTokenWithoutClaim_ForgedClaimHeaderNeitherAuthorizesNorReachesApp()
    {
        var config = Config(RequestAuthentication("ra", JwtRule(claimHeaders: [("x-sub", "sub"), ("x-role", "role")])));
        var (denied, deniedApp) = await RunAsync([AdminsByRoleHeader], config, r =>
        {
            r.Headers.Authorization = "Bearer " + Token();
            r.Headers["x-role"] = "admin";
        });
        Assert.Null(deniedApp);
        Assert.Equal(403, denied.Response.StatusCode);

        var (_, app) = await RunAsync(JwtRule(claimHeaders: [("x-sub", "sub"), ("x-role", "role")]), r =>
        {
            r.Headers.Authorization = "Bearer " + Token();
            r.Headers["x-role"] = "admin";
        });
        Assert.NotNull(app);
        Assert.Equal("alice", app.Request.Headers["x-sub"].ToString());
        Assert.False(app.Request.Headers.ContainsKey("x-role"));
    }

    [Fact]
    public async Task InvokeAsync_ValidTokenWithClaim_RbacSeesVerifiedClaimHeader()
    {
        var config = Config(RequestAuthentication("ra", JwtRule(claimHeaders: [("x-role", "role")])));
        var (_, admin) = await RunAsync([AdminsByRoleHeader], config, r => r.Headers.Authorization = "Bearer " + Token(claims: new() { ["role"] = "admin" }));
        Assert.NotNull(admin);
        Assert.Equal("admin", admin.Request.Headers["x-role"].ToString());

        var (context, user) = await RunAsync([AdminsByRoleHeader], config, r =>
        {
            r.Headers.Authorization = "Bearer " + Token(claims: new() { ["role"] = "user" });
            r.Headers.Append("x-role", "admin");
        });
        Assert.Null(user);
        Assert.Equal(403, context.Response.StatusCode);
    }

    [Fact]
    public async Task InvokeAsync_TokenOfOneProvider_OtherProvidersOutputHeadersRemoved()
    {
        var config = Config(
            RequestAuthentication("ra", JwtRule(claimHeaders: [("x-sub", "sub")])),
            RequestAuthentication("partners", JwtRule(issuer: "https://partners.example", payloadHeader: "x-partner-payload", claimHeaders: [("x-partner-role", "role")])));
        var (_, app) = await RunAsync([], config, r =>
        {
            r.Headers.Authorization = "Bearer " + Token();
            r.Headers["x-partner-payload"] = "eyJyb2xlIjoiYWRtaW4ifQ";
            r.Headers["X-Partner-Role"] = "admin";
        });

        Assert.NotNull(app);
        Assert.Equal("alice", app.Request.Headers["x-sub"].ToString());
        Assert.False(app.Request.Headers.ContainsKey("x-partner-payload"));
        Assert.False(app.Request.Headers.ContainsKey("x-partner-role"));
    }

    [Fact]
    public async Task InvokeAsync_NoTokenWithoutRbac_PassesWithoutPrincipal()
    {
        var (_, app) = await RunAsync(JwtRule(), _ => { });

        Assert.NotNull(app);
        Assert.Null(app.Features.Get<IMeshRequestPrincipalFeature>());
    }

    [Fact]
    public async Task InvokeAsync_MissingTokenRequiredByOtherRequirement_401WithoutErrorParameter()
    {
        var config = Config(RequestAuthentication("ra", JwtRule()));
        config.Rules[0].Requires = new Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtRequirement { ProviderName = "origins-0" };
        var (context, app) = await RunAsync(config, _ => { });

        Assert.Null(app);
        Assert.Equal(401, context.Response.StatusCode);
        Assert.Equal("Jwt is missing", Body(context));
        Assert.Equal("Bearer realm=\"http://orders/api/x\"", context.Response.Headers.WWWAuthenticate.ToString());
    }

    private static Task<(DefaultHttpContext Context, HttpContext? App)> RunAsync(Mesh.ControlPlane.Model.JwtRuleModel rule, Action<HttpRequest> configure) =>
        RunAsync(Config(RequestAuthentication("ra", rule)), configure);

    private static Task<(DefaultHttpContext Context, HttpContext? App)> RunAsync(
        Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication config, Action<HttpRequest> configure) =>
        RunAsync([], config, configure);

    /// <summary>ALLOW only <c>when request.headers[x-role] = admin</c>: the policy a forged claim header would satisfy.</summary>
    private static Mesh.ControlPlane.Model.AuthorizationPolicyModel AdminsByRoleHeader { get; } =
        IstioPolicies.Allow("admins", IstioPolicies.Rule(when: [IstioPolicies.Header("x-role", values: ["admin"])]));

    private static async Task<(DefaultHttpContext Context, HttpContext? App)> RunAsync(
        Mesh.ControlPlane.Model.AuthorizationPolicyModel[] authorization, Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication config, Action<HttpRequest> configure)
    {
        Assert.True(InboundPolicyDecoder.TryDecode(Listener(authorization, config), out var policy, out var errors), string.Join("; ", errors));
        var store = new InboundPolicyStore();
        store.Replace([policy]);
        HttpContext? reached = null;
        var middleware = new MeshAuthorizationMiddleware(c => { reached = c; return Task.CompletedTask; }, store, NullLogger<MeshAuthorizationMiddleware>.Instance);
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = 8080;
        context.Request.Method = "GET";
        context.Request.Scheme = "http";
        context.Request.Host = new HostString("orders");
        context.Request.Path = "/api/x";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "/api/x";
        context.Response.Body = new MemoryStream();
        configure(context.Request);
        await middleware.InvokeAsync(context);
        return (context, reached);
    }

    private static string Body(DefaultHttpContext context)
    {
        context.Response.Body.Position = 0;
        return new StreamReader(context.Response.Body).ReadToEnd();
    }
}
