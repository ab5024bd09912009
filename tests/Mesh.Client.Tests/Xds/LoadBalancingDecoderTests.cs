using Google.Protobuf.WellKnownTypes;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Routing;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using static Mesh.Client.Tests.Support.XdsResources;
using LoadBalancingPolicy = Mesh.Xds.Envoy.Config.Cluster.V3.LoadBalancingPolicy;
using MeshPolicy = Mesh.Client.Discovery.LoadBalancingPolicy;
using RandomConfig = Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.Random.V3.Random;

namespace Mesh.Client.Tests.Xds;

/// <summary>The CDS and RDS fields of load balancing: lb_policy RANDOM/RING_HASH, ring_hash_lb_config, load_balancing_policy Random, route hash_policy.</summary>
public sealed class LoadBalancingDecoderTests
{
    private const string Where = "Cluster outbound|80||orders.default.svc.cluster.local: ";

    [Fact]
    public void Cluster_RingHashWithConfig_DecodesRingSizes()
    {
        var cluster = Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.RingHash);
        cluster.RingHashLbConfig = new RingHashLbConfig { MinimumRingSize = 2048, MaximumRingSize = 4096 };

        var decoded = DecodeCluster(cluster, out var errors);

        Assert.Empty(errors);
        Assert.Equal(MeshPolicy.RingHash, decoded!.Policy);
        Assert.Equal(new RingHashSettings(2048, 4096), decoded.RingHash);
    }

    [Fact]
    public void Cluster_RingHashWithoutConfig_TakesEnvoyDefaults()
    {
        var decoded = DecodeCluster(Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.RingHash), out var errors);

        Assert.Empty(errors);
        Assert.Equal(RingHashSettings.Default, decoded!.RingHash);
    }

    [Theory]
    [InlineData(1, 1024UL, null, "ring_hash_lb_config.hash_function MurmurHash2 is not supported (only XX_HASH)")]
    [InlineData(0, 8_388_609UL, null, "ring_hash_lb_config.minimum_ring_size 8388609 must be between 1 and 8388608")]
    [InlineData(0, 0UL, null, "ring_hash_lb_config.minimum_ring_size 0 must be between 1 and 8388608")]
    [InlineData(0, 4096UL, 2048UL, "ring_hash_lb_config.minimum_ring_size 4096 is above maximum_ring_size 2048")]
    public void Cluster_BadRingHashConfig_IsNackedNamingTheField(int function, ulong minimum, ulong? maximum, string expected)
    {
        var cluster = Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.RingHash);
        cluster.RingHashLbConfig = new RingHashLbConfig { HashFunction = (RingHashLbConfig.Types.HashFunction)function, MinimumRingSize = minimum, MaximumRingSize = maximum };

        Assert.Null(DecodeCluster(cluster, out var errors));
        Assert.Equal(Where + expected, Assert.Single(errors));
    }

    [Fact]
    public void Cluster_LbPolicyRandom_AndLoadBalancingPolicyRandom_DecodeToRandom()
    {
        Assert.Equal(MeshPolicy.Random, DecodeCluster(Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.Random), out _)!.Policy);

        var typed = Cluster("orders");
        typed.LoadBalancingPolicy = new LoadBalancingPolicy();
        typed.LoadBalancingPolicy.Policies.Add(new LoadBalancingPolicy.Types.Policy { TypedExtensionConfig = new() { Name = "random", TypedConfig = Any.Pack(new RandomConfig()) } });
        Assert.Equal(MeshPolicy.Random, DecodeCluster(typed, out var errors)!.Policy);
        Assert.Empty(errors);
    }

    [Fact]
    public void Route_HashPolicy_DecodesEveryKeyKind()
    {
        var action = new RouteAction { Cluster = "c" };
        action.HashPolicy.Add(new HashPolicy { Header = new HashPolicy.Types.Header { HeaderName = "x-user" } });
        action.HashPolicy.Add(new HashPolicy { Cookie = new HashPolicy.Types.Cookie { Name = "session", Ttl = Duration.FromTimeSpan(TimeSpan.FromHours(1)), Path = "/" } });
        action.HashPolicy.Add(new HashPolicy { QueryParameter = new HashPolicy.Types.QueryParameter { Name = "user" } });
        action.HashPolicy.Add(new HashPolicy { ConnectionProperties = new HashPolicy.Types.ConnectionProperties { SourceIp = true }, Terminal = true });
        var errors = new List<string>();

        var policy = XdsResourceDecoder.DecodeHashPolicy(action, "route", errors);

        Assert.Empty(errors);
        Assert.Equal(
            [new HashKey(HashKeyKind.Header, "x-user", false), new HashKey(HashKeyKind.Cookie, "session", false), new HashKey(HashKeyKind.QueryParameter, "user", false), new HashKey(HashKeyKind.SourceIp, string.Empty, true)],
            policy!.Keys.ToArray());
        Assert.Null(XdsResourceDecoder.DecodeHashPolicy(new RouteAction { Cluster = "c" }, "route", errors));
    }

    [Theory]
    [InlineData("header", "virtual_hosts[0].routes[0].route.hash_policy[0].header.header_name is required")]
    [InlineData("cookie", "virtual_hosts[0].routes[0].route.hash_policy[0].cookie.name is required")]
    [InlineData("query", "virtual_hosts[0].routes[0].route.hash_policy[0].query_parameter.name is required")]
    [InlineData("filter_state", "virtual_hosts[0].routes[0].route.hash_policy[0].filter_state is not supported")]
    [InlineData("none", "virtual_hosts[0].routes[0].route.hash_policy[0] sets no hash key")]
    public void Route_BadHashPolicy_IsNackedNamingTheField(string kind, string expected)
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.HashPolicy.Add(kind switch
        {
            "header" => new HashPolicy { Header = new HashPolicy.Types.Header() },
            "cookie" => new HashPolicy { Cookie = new HashPolicy.Types.Cookie() },
            "query" => new HashPolicy { QueryParameter = new HashPolicy.Types.QueryParameter() },
            "filter_state" => new HashPolicy { FilterState = new HashPolicy.Types.FilterState { Key = "io.grpc.channel_id" } },
            _ => new HashPolicy { Terminal = true },
        });
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));
        Assert.StartsWith($"RouteConfiguration outbound|80||orders.default.svc.cluster.local: {expected}", Assert.Single(errors), StringComparison.Ordinal);
    }

    [Fact]
    public void Route_WithValidHashPolicy_IsAccepted()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.HashPolicy.Add(new HashPolicy { Header = new HashPolicy.Types.Header { HeaderName = "x-user" } });
        var errors = new List<string>();
        Assert.NotNull(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));
        Assert.Empty(errors);
    }

    private static ClusterResource? DecodeCluster(Cluster cluster, out List<string> errors)
    {
        errors = [];
        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(cluster)], errors);
        return result is null ? null : (ClusterResource?)Assert.Single(result).Value;
    }
}
