using System.Collections.Immutable;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;

namespace Mesh.Client.Tests.Authorization.RateLimit;

/// <summary>The inbound middleware's local rate limit: Envoy's 429 local reply and headers, gRPC statuses, and who the caller is.</summary>
public sealed class RateLimitMiddlewareTests
{
    private const string Alice = "spiffe://cluster.local/ns/default/sa/alice";
    private const string Bob = "spiffe://cluster.local/ns/default/sa/bob";

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task InvokeAsync_OverTheLimit_429WithEnvoyHeadersAndBody()
    {
        var middleware = Middleware(LocalRateLimiterTests.Config(total: null, identity: 2), out var reached);

        var first = await SendAsync(middleware, Alice);
        await SendAsync(middleware, Alice);
        var refused = await SendAsync(middleware, Alice);

        Assert.Equal(2, reached());
        Assert.Equal((200, "2", "1", "1"), (first.Response.StatusCode, Header(first, "x-ratelimit-limit"), Header(first, "x-ratelimit-remaining"), Header(first, "x-ratelimit-reset")));
        Assert.Equal((429, "2", "0", "true"), (refused.Response.StatusCode, Header(refused, "x-ratelimit-limit"), Header(refused, "x-ratelimit-remaining"), Header(refused, "x-envoy-ratelimited")));
        Assert.Equal("local_rate_limited", Body(refused));
    }

    [Fact]
    public async Task InvokeAsync_GrpcCallOverTheLimit_TrailersOnlyResourceExhausted()
    {
        var middleware = Middleware(LocalRateLimiterTests.Config(total: 1, identity: null), out _);
        await SendAsync(middleware, Alice, grpc: true);

        var refused = await SendAsync(middleware, Alice, grpc: true);

        Assert.Equal((200, "application/grpc", "8", "local_rate_limited"), (refused.Response.StatusCode, refused.Response.ContentType, Header(refused, "grpc-status"), Header(refused, "grpc-message")));
    }

    [Fact]
    public async Task InvokeAsync_GrpcWithoutResourceExhausted_UnavailableAsEnvoy()
    {
        var config = LocalRateLimiterTests.Config(total: 1, identity: null);
        config.RateLimitedAsResourceExhausted = false;
        var middleware = Middleware(config, out _);
        await SendAsync(middleware, Alice, grpc: true);

        var refused = await SendAsync(middleware, Alice, grpc: true);

        Assert.Equal("14", Header(refused, "grpc-status"));
    }

    [Fact]
    public async Task InvokeAsync_SpoofedIdentityHeaders_CountedAsTheTlsPeer()
    {
        // Attacker's path: alice, out of tokens, claims to be bob in every header a proxy might trust; she stays alice.
        var middleware = Middleware(LocalRateLimiterTests.Config(total: null, identity: 1), out _);
        await SendAsync(middleware, Alice);

        var spoofed = await SendAsync(middleware, Alice, headers: new()
        {
            ["x-forwarded-client-cert"] = $"By=spiffe://cluster.local/ns/default/sa/orders;URI={Bob}",
            ["x-spiffe-id"] = Bob,
            ["x-mesh-peer"] = Bob,
        });
        var bob = await SendAsync(middleware, Bob);

        Assert.Equal((429, 200), (spoofed.Response.StatusCode, bob.Response.StatusCode));
    }

    [Fact]
    public async Task InvokeAsync_DeniedByRbac_TakesNoToken()
    {
        var deny = new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny,
            [new AuthorizationRule([], [new RuleOperation([], [], ["/admin"], [], [], [], [], [])], [])], "a.yaml", 1);
        var middleware = Middleware(LocalRateLimiterTests.Config(total: 1, identity: null), out _, [deny]);

        var denied = await SendAsync(middleware, Alice, target: "/admin");
        var allowed = await SendAsync(middleware, Alice);

        Assert.Equal((403, 200), (denied.Response.StatusCode, allowed.Response.StatusCode));
    }

    [Fact]
    public async Task InvokeAsync_OverTheLimit_RecordedAsDestinationWithRL()
    {
        await using var services = new ServiceCollection().AddMeshTelemetry().BuildServiceProvider();
        using var metrics = new Telemetry.IstioMetricsListener(services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        var recorder = services.GetRequiredService<Mesh.Client.Telemetry.IstioRequestMetrics>();
        var middleware = Middleware(LocalRateLimiterTests.Config(total: null, identity: 1), out _, metrics: recorder);

        await SendAsync(middleware, Alice);
        await SendAsync(middleware, Alice);

        Assert.Equal(
            [("200", "-"), ("429", "RL")],
            metrics.Requests.Select(m => (m.Labels["response_code"], m.Labels["response_flags"])));
        Assert.All(metrics.Requests, m => Assert.Equal((Alice, "default", "destination"), (m.Labels["source_principal"], m.Labels["source_workload_namespace"], m.Labels["reporter"])));
    }

    private MeshAuthorizationMiddleware Middleware(LocalRateLimit config, out Func<int> reached, ImmutableArray<AuthorizationPolicyModel> policies = default, Mesh.Client.Telemetry.IstioRequestMetrics? metrics = null)
    {
        policies = policies.IsDefault ? [] : policies;
        var paths = InboundPathSettings.Default;
        var listener = InboundListenerTranslator.BuildListener(
            InboundListenerTranslator.ListenerName("127.0.0.1", 8080), "127.0.0.1", 8080, MtlsMode.Permissive,
            RbacTranslator.Build(policies, AuthorizationAction.Deny, paths), RbacTranslator.Build(policies, AuthorizationAction.Allow, paths), paths, jwt: null, config);
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors, _time), string.Join("\n", errors));
        var store = new InboundPolicyStore();
        store.Replace([policy]);
        var count = 0;
        reached = () => count;
        return new MeshAuthorizationMiddleware(_ => { count++; return Task.CompletedTask; }, store, NullLogger<MeshAuthorizationMiddleware>.Instance, _time, metrics);
    }

    private static async Task<DefaultHttpContext> SendAsync(MeshAuthorizationMiddleware middleware, string? peer, bool grpc = false, string target = "/orders", Dictionary<string, string>? headers = null)
    {
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = 8080;
        context.Request.Method = grpc ? "POST" : "GET";
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = target;
        context.Response.Body = new MemoryStream();
        if (grpc)
        {
            context.Request.ContentType = "application/grpc";
        }

        foreach (var (name, value) in headers ?? [])
        {
            context.Request.Headers[name] = value;
        }

        if (peer is not null)
        {
            context.Features.Set<IMeshPeerIdentityFeature>(new PeerIdentity(peer));
        }

        await middleware.InvokeAsync(context);
        return context;
    }

    private static string? Header(DefaultHttpContext context, string name) =>
        context.Response.Headers.TryGetValue(name, out var value) ? value.ToString() : null;

    private static string Body(DefaultHttpContext context)
    {
        context.Response.Body.Position = 0;
        return new StreamReader(context.Response.Body).ReadToEnd();
    }

    private sealed class PeerIdentity(string spiffeId) : IMeshPeerIdentityFeature
    {
        public string? SpiffeId => spiffeId;

        public string? PeerNamespace => spiffeId.Split('/')[4];

        public string? PeerServiceAccount => spiffeId.Split('/')[6];

        public System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate => null;
    }
}
