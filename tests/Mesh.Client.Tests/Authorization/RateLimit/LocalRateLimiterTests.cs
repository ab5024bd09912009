using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Authorization;
using Mesh.Client.Authorization.RateLimit;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Microsoft.Extensions.Time.Testing;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;

namespace Mesh.Client.Tests.Authorization.RateLimit;

/// <summary>The control plane's local_ratelimit as the client reads it: caller buckets, the total, overrides, bounds, and every NACK.</summary>
public sealed class LocalRateLimiterTests
{
    private const string Alice = "spiffe://cluster.local/ns/default/sa/alice";
    private const string Bob = "spiffe://cluster.local/ns/default/sa/bob";
    private const string Vip = "spiffe://cluster.local/ns/default/sa/vip";

    private readonly FakeTimeProvider _time = new(DateTimeOffset.UnixEpoch);

    internal static LocalRateLimit Config(uint? total, uint? identity, params (string Account, uint Rate)[] overrides) =>
        LocalRateLimitTranslator.Build(
            new LocalRateLimitPolicyModel("default", "limits", "orders", total, identity,
                [.. overrides.Select(o => new RateLimitOverrideModel(o.Rate, [new ServiceAccountRef("default", o.Account)]))], "limits.yaml", 1),
            "cluster.local");

    private LocalRateLimiter Compile(LocalRateLimit config)
    {
        var errors = new List<string>();
        var limiter = LocalRateLimiter.Compile(config, "filter", errors, _time);
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        return limiter!;
    }

    private static int Allowed(LocalRateLimiter limiter, string? peer, int attempts) =>
        Enumerable.Range(0, attempts).Count(_ => limiter.TryAcquire(peer, out RateLimitStatus _, out RateLimitScope _));

    [Fact]
    public void TryAcquire_PerIdentity_EachCallerLimitedIndependently()
    {
        var limiter = Compile(Config(total: null, identity: 3));

        Assert.Equal((3, 3), (Allowed(limiter, Alice, 10), Allowed(limiter, Bob, 10)));
    }

    [Fact]
    public void TryAcquire_Total_CapsAllCallersTogether()
    {
        var limiter = Compile(Config(total: 5, identity: 3));

        Assert.Equal((3, 2), (Allowed(limiter, Alice, 10), Allowed(limiter, Bob, 10)));
        Assert.False(limiter.TryAcquire(Vip, out var status, out var refusedBy));
        Assert.Equal((RateLimitScope.Total, 5u, 0u), (refusedBy, status.Limit, status.Remaining));
    }

    [Fact]
    public void TryAcquire_CallerOverItsOwnLimit_TakesNothingFromTheTotal()
    {
        // Attacker's path: alice floods far past her own limit; bob must still get his share of the total.
        var limiter = Compile(Config(total: 6, identity: 3));

        Assert.Equal(3, Allowed(limiter, Alice, 1000));
        Assert.Equal(3, Allowed(limiter, Bob, 10));
    }

    [Fact]
    public void TryAcquire_Override_ReplacesThePerIdentityLimitButNotTheTotal()
    {
        var limiter = Compile(Config(total: 12, identity: 2, ("vip", 8)));

        Assert.Equal(8, Allowed(limiter, Vip, 20));
        Assert.Equal(2, Allowed(limiter, Alice, 20));
        Assert.Equal(2, Allowed(limiter, Bob, 20));
        Assert.False(limiter.TryAcquire("spiffe://cluster.local/ns/default/sa/carol", out _, out var refusedBy));
        Assert.Equal(RateLimitScope.Total, refusedBy);
    }

    [Fact]
    public void TryAcquire_CallersWithoutCertificate_ShareOneBucket()
    {
        var limiter = Compile(Config(total: null, identity: 4));

        Assert.Equal(4, Allowed(limiter, null, 3) + Allowed(limiter, null, 3));
    }

    [Fact]
    public void TryAcquire_AfterOneSecond_RefilledAtTheConfiguredRate()
    {
        var limiter = Compile(Config(total: 10, identity: 4));
        Allowed(limiter, Alice, 10);

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(4, Allowed(limiter, Alice, 10));
    }

    [Fact]
    public void TryAcquire_ManyMintedIdentities_BucketsBoundedByMaxDynamicDescriptors()
    {
        var config = Config(total: null, identity: 1);
        config.MaxDynamicDescriptors = 16;
        var limiter = Compile(config);

        for (var i = 0; i < 10_000; i++)
        {
            limiter.TryAcquire($"spiffe://cluster.local/ns/evil/sa/minted-{i}", out _, out _);
        }

        Assert.Equal(16, limiter.PeerBucketCount);
    }

    [Fact]
    public void TryAcquire_RecentlyUsedCaller_KeepsItsBucketWhileOthersAreEvicted()
    {
        var config = Config(total: null, identity: 1);
        config.MaxDynamicDescriptors = 4;
        var limiter = Compile(config);
        Assert.True(limiter.TryAcquire(Alice, out _, out _));

        for (var i = 0; i < 20; i++)
        {
            Assert.False(limiter.TryAcquire(Alice, out _, out _)); // alice stays the most recent: never evicted, never refilled
            limiter.TryAcquire($"spiffe://cluster.local/ns/evil/sa/minted-{i}", out _, out _);
        }
    }

    [Fact]
    public void TryAcquire_Status_IsTheMostRestrictiveBucket()
    {
        var limiter = Compile(Config(total: 100, identity: 3));

        limiter.TryAcquire(Alice, out var first, out _);

        Assert.Equal(new RateLimitStatus(3, 2, 1), first);
    }

    [Fact]
    public void Compile_ControlPlaneConfig_HeadersAndResourceExhausted()
    {
        var limiter = Compile(Config(total: 10, identity: null));

        Assert.Equal((429, true, true), (limiter.StatusCode, limiter.HeadersEnabled, limiter.ResourceExhausted));
    }

    [Fact]
    public void Compile_FilterNotEnabled_NoLimiter()
    {
        var config = Config(total: 1, identity: null);
        config.FilterEnabled = null;
        config.FilterEnforced = null;
        var errors = new List<string>();

        Assert.Null(LocalRateLimiter.Compile(config, "filter", errors, _time));
        Assert.Empty(errors);
    }

    public static TheoryData<string, string> BadConfigs => new()
    {
        { "half-enabled", "filter.filter_enabled.default_value: 50/100 is not supported" },
        { "shadow", "filter.filter_enforced: must be 100 % when filter_enabled is" },
        { "zero-tokens", "filter.token_bucket.max_tokens: must be greater than 0" },
        { "fast-fill", "filter.token_bucket.fill_interval: is required and must be at least 50ms" },
        { "per-connection", "filter.local_rate_limit_per_downstream_connection: is not supported" },
        { "other-expression", "filter.rate_limits[0].actions[0].extension.typed_config.text: only the expression" },
        { "no-action", "filter.rate_limits: descriptors need the rate_limits action" },
        { "two-wildcards", "filter.descriptors[1].entries[0].value: a second wildcard descriptor" },
        { "other-key", "filter.descriptors[0].entries: must be exactly one entry with key source.principal" },
        { "descriptor-shadow", "filter.descriptors[0].shadow_mode: is not supported" },
        { "no-stat-prefix", "filter.stat_prefix: is required" },
        { "unknown-field", "filter (envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit) sets field(s) 6 that this client cannot honour" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void Compile_ConfigMeshCannotApply_ErrorNamesTheField(string name, string expected)
    {
        var config = Config(total: 10, identity: 5);
        switch (name)
        {
            case "half-enabled":
                config.FilterEnabled.DefaultValue.Numerator = 50;
                break;
            case "shadow":
                config.FilterEnforced = null;
                break;
            case "zero-tokens":
                config.TokenBucket.MaxTokens = 0;
                break;
            case "fast-fill":
                config.TokenBucket.FillInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(10));
                break;
            case "per-connection":
                config.LocalRateLimitPerDownstreamConnection = true;
                break;
            case "other-expression":
                var action = config.RateLimits[0].Actions[0].Extension;
                var expression = Mesh.Xds.Envoy.Extensions.RateLimitDescriptors.Expr.V3.ExprDescriptor.Parser.ParseFrom(action.TypedConfig.Value);
                expression.Text = "request.headers['x-caller']";
                action.TypedConfig.Value = Google.Protobuf.MessageExtensions.ToByteString(expression);
                break;
            case "no-action":
                config.RateLimits.Clear();
                break;
            case "two-wildcards":
                config.Descriptors.Add(config.Descriptors[0].Clone());
                break;
            case "other-key":
                config.Descriptors[0].Entries[0].Key = "x-caller";
                break;
            case "descriptor-shadow":
                config.Descriptors[0].ShadowMode = true;
                break;
            case "no-stat-prefix":
                config.StatPrefix = string.Empty;
                break;
            case "unknown-field":
                // Field 6 (response_headers_to_add) is not in Mesh's subset: it would be dropped silently if not refused.
                var bytes = Google.Protobuf.MessageExtensions.ToByteArray(config).Concat(new byte[] { (6 << 3) | 2, 0 }).ToArray();
                config = LocalRateLimit.Parser.ParseFrom(bytes);
                break;
        }

        var errors = new List<string>();
        Assert.Null(LocalRateLimiter.Compile(config, "filter", errors, _time));
        Assert.Contains(errors, e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Wire_TypeUrls_MatchTheMessages()
    {
        Assert.Equal(Mesh.Xds.Wire.LocalRateLimitWire.FilterType, "type.googleapis.com/" + LocalRateLimit.Descriptor.FullName);
        Assert.Equal(
            Mesh.Xds.Wire.LocalRateLimitWire.ExpressionDescriptorType,
            "type.googleapis.com/" + Mesh.Xds.Envoy.Extensions.RateLimitDescriptors.Expr.V3.ExprDescriptor.Descriptor.File.Package + ".Descriptor");
    }

    [Fact]
    public void TryDecode_RateLimitBeforeRbac_Nacked()
    {
        var listener = ListenerWith(Config(total: 10, identity: null), withRbac: true);
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        var rateLimit = manager.HttpFilters[^2];
        manager.HttpFilters.RemoveAt(manager.HttpFilters.Count - 2);
        manager.HttpFilters.Insert(0, rateLimit);
        foreach (var chain in listener.FilterChains)
        {
            chain.Filters[0].TypedConfig = Any.Pack(manager);
        }

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors, _time));
        Assert.Contains(errors, e => e.Contains("the RBAC filters must come before the local_ratelimit filter", StringComparison.Ordinal));
    }

    [Fact]
    public void Replace_SameRateLimitConfig_KeepsTheBuckets_ChangedConfig_StartsAfresh()
    {
        var store = new InboundPolicyStore();
        store.Replace([Decode(ListenerWith(Config(total: null, identity: 2), withRbac: false))]);
        Assert.Equal(2, Allowed(store.Current[8080].RateLimit!, Alice, 5));

        // Another push with the same limits (something else changed): alice must not get a fresh bucket.
        store.Replace([Decode(ListenerWith(Config(total: null, identity: 2), withRbac: true))]);
        Assert.Equal(0, Allowed(store.Current[8080].RateLimit!, Alice, 5));

        // New limits: new buckets, at the new rate.
        store.Replace([Decode(ListenerWith(Config(total: null, identity: 3), withRbac: true))]);
        Assert.Equal(3, Allowed(store.Current[8080].RateLimit!, Alice, 5));
    }

    private InboundPolicy Decode(Listener listener)
    {
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors, _time), string.Join("\n", errors));
        return policy;
    }

    private static Listener ListenerWith(LocalRateLimit rateLimit, bool withRbac)
    {
        ImmutableArray<AuthorizationPolicyModel> policies = withRbac
            ? [new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny, [new AuthorizationRule([], [new RuleOperation([], [], ["/admin"], [], [], [], [], [])], [])], "a.yaml", 1)]
            : [];
        var paths = InboundPathSettings.Default;
        return InboundListenerTranslator.BuildListener(
            InboundListenerTranslator.ListenerName("127.0.0.1", 8080), "127.0.0.1", 8080, MtlsMode.Permissive,
            RbacTranslator.Build(policies, AuthorizationAction.Deny, paths), RbacTranslator.Build(policies, AuthorizationAction.Allow, paths), paths, jwt: null, rateLimit);
    }
}
