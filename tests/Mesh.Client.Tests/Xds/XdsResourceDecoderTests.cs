using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.LeastRequest.V3;
using static Mesh.Client.Tests.Support.XdsResources;
using LoadBalancingPolicy = Mesh.Xds.Envoy.Config.Cluster.V3.LoadBalancingPolicy;
using MeshPolicy = Mesh.Client.Discovery.LoadBalancingPolicy;
using WeightedCluster = Mesh.Xds.Envoy.Config.Route.V3.WeightedCluster;

namespace Mesh.Client.Tests.Xds;

public class XdsResourceDecoderTests
{
    [Fact]
    public void DecodeAll_ClusterWithMaglev_ReportsResourceAndField()
    {
        var errors = new List<string>();
        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.Maglev))], errors);

        Assert.Null(result);
        Assert.Equal("Cluster outbound|80||orders.default.svc.cluster.local: lb_policy MAGLEV is not supported (use LEAST_REQUEST, RANDOM, RING_HASH, ROUND_ROBIN)", Assert.Single(errors));
    }

    [Fact]
    public void DecodeAll_LoadBalancingPolicy_UsesFirstSupported()
    {
        var cluster = Cluster("orders");
        cluster.LoadBalancingPolicy = new LoadBalancingPolicy();
        cluster.LoadBalancingPolicy.Policies.Add(new LoadBalancingPolicy.Types.Policy { TypedExtensionConfig = new() { Name = "x", TypedConfig = new Any { TypeUrl = "type.googleapis.com/some.Unknown" } } });
        cluster.LoadBalancingPolicy.Policies.Add(new LoadBalancingPolicy.Types.Policy { TypedExtensionConfig = new() { Name = "lr", TypedConfig = Any.Pack(new LeastRequest()) } });
        cluster.OutlierDetection = new OutlierDetection { Consecutive5Xx = 3, BaseEjectionTime = Duration.FromTimeSpan(TimeSpan.FromSeconds(7)) };
        var errors = new List<string>();

        var result = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(cluster)], errors);

        var decoded = Assert.IsType<ClusterResource>(Assert.Single(result!).Value);
        Assert.Equal(MeshPolicy.LeastRequest, decoded.Policy);
        Assert.Equal(3, decoded.OutlierDetection!.Consecutive5xx);
        Assert.Equal(TimeSpan.FromSeconds(7), decoded.OutlierDetection.BaseEjectionTime);
    }

    [Fact]
    public void DecodeAll_RouteWithoutCluster_ReportsFieldPath()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_ = new RouteAction();
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.Equal("RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].route needs cluster or weighted_clusters", Assert.Single(errors));
    }

    [Theory]
    [InlineData("path", "/v(", "virtual_hosts[0].routes[0].match.safe_regex.regex: '/v(' is not a valid RE2 regex")]
    [InlineData("string_match", "(a)\\1", "virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex.regex: '(a)\\1' is not a valid RE2 regex: backreference")]
    [InlineData("safe_regex_match", "(?=a)", "virtual_hosts[0].routes[0].match.headers[0].safe_regex_match.regex: '(?=a)' is not a valid RE2 regex: lookahead")]
    public void DecodeAll_RouteWithARegexTheClientCannotApply_IsNackedNamingTheField(string where, string regex, string expected)
    {
        var routes = Routes("orders");
        var match = routes.VirtualHosts[0].Routes[0].Match;
        var matcher = new Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher { Regex = regex };
        switch (where)
        {
            case "path":
                match.SafeRegex = matcher;
                break;
            case "string_match":
                match.Headers.Add(new HeaderMatcher { Name = "x-user", StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { SafeRegex = matcher } });
                break;
            default:
                match.Headers.Add(new HeaderMatcher { Name = "x-user", SafeRegexMatch = matcher });
                break;
        }

        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        var error = Assert.Single(errors);
        Assert.StartsWith($"RouteConfiguration outbound|80||orders.default.svc.cluster.local: {expected}", error, StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeAll_PseudoHeaderNoRequestHas_IsNackedNamingIt()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.Headers.Add(new HeaderMatcher { Name = ":status", ExactMatch = "200" });
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.Equal(
            "RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].match.headers[0].name ':status': this client matches no pseudo-header but :method, :authority, :scheme and :path",
            Assert.Single(errors));
    }

    [Fact]
    public void DecodeAll_RetryPolicyWithIstiodsPreviousHostsAndHostSelectionAttempts_IsAccepted()
    {
        // What istiod (and this control plane, to standard clients) sends with a VirtualService's retries.
        var routes = Routes("orders");
        var policy = new RetryPolicy { RetryOn = "5xx", NumRetries = 3, HostSelectionRetryMaxAttempts = 5 };
        policy.RetryHostPredicate.Add(new RetryPolicy.Types.RetryHostPredicate
        {
            Name = "envoy.retry_host_predicates.previous_hosts",
            TypedConfig = new Any { TypeUrl = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
        });
        routes.VirtualHosts[0].Routes[0].Route_.RetryPolicy = policy;
        var errors = new List<string>();

        Assert.NotNull(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));
        Assert.Empty(errors);
    }

    [Theory]
    [InlineData(":method")]
    [InlineData(":authority")]
    [InlineData(":scheme")]
    [InlineData(":path")]
    public void DecodeAll_RequestPseudoHeader_IsAccepted(string name)
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.Headers.Add(new HeaderMatcher { Name = name, PresentMatch = true });
        var errors = new List<string>();

        Assert.NotNull(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));
        Assert.Empty(errors);
    }

    [Theory]
    [InlineData("match", "virtual_hosts[0].routes[0].match (envoy.config.route.v3.RouteMatch) sets field(s) 16")]
    [InlineData("header", "virtual_hosts[0].routes[0].match.headers[0] (envoy.config.route.v3.HeaderMatcher) sets field(s) 99")]
    [InlineData("query", "virtual_hosts[0].routes[0].match.query_parameters[0] (envoy.config.route.v3.QueryParameterMatcher) sets field(s) 99")]
    [InlineData("action", "virtual_hosts[0].routes[0].route (envoy.config.route.v3.RouteAction) sets field(s) 99")]
    public void DecodeAll_RouteFieldThisClientDoesNotKnow_IsNackedNamingIt(string part, string expected)
    {
        // A field outside Mesh's proto subset (filter_state is RouteMatch field 16) is kept as unknown on parsing; applied
        // without it the route would match or forward more than the control plane meant.
        var routes = Routes("orders");
        var route = routes.VirtualHosts[0].Routes[0];
        switch (part)
        {
            case "match":
                route.Match = WithUnknownField(route.Match, 16, RouteMatch.Parser);
                break;
            case "header":
                route.Match.Headers.Add(WithUnknownField(new HeaderMatcher { Name = "x-user", ExactMatch = "a" }, 99, HeaderMatcher.Parser));
                break;
            case "query":
                route.Match.QueryParameters.Add(WithUnknownField(new QueryParameterMatcher { Name = "v", PresentMatch = true }, 99, QueryParameterMatcher.Parser));
                break;
            default:
                route.Route_ = WithUnknownField(route.Route_, 99, RouteAction.Parser);
                break;
        }

        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.Equal($"RouteConfiguration outbound|80||orders.default.svc.cluster.local: {expected} that this client cannot honour", Assert.Single(errors));
    }

    private static T WithUnknownField<T>(T message, int field, Google.Protobuf.MessageParser<T> parser)
        where T : Google.Protobuf.IMessage<T>
    {
        // A length-delimited empty value under a field number the subset does not define.
        var tag = Google.Protobuf.WireFormat.MakeTag(field, Google.Protobuf.WireFormat.WireType.LengthDelimited);
        var bytes = new List<byte>(Google.Protobuf.MessageExtensions.ToByteArray(message));
        for (var value = tag; ; value >>= 7)
        {
            if (value < 0x80)
            {
                bytes.Add((byte)value);
                break;
            }

            bytes.Add((byte)((value & 0x7F) | 0x80));
        }

        bytes.Add(0);
        return parser.ParseFrom([.. bytes]);
    }

    [Fact]
    public void DecodeAll_QueryParameterWithoutName_IsNackedNamingIt()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.QueryParameters.Add(new QueryParameterMatcher { PresentMatch = true });
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.Equal(
            "RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].match.query_parameters[0].name is required",
            Assert.Single(errors));
    }

    [Fact]
    public void DecodeAll_QueryParameterWithInvalidRegex_IsNackedNamingIt()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.QueryParameters.Add(new QueryParameterMatcher
        {
            Name = "version",
            StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { SafeRegex = new Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher { Regex = "v(2" } },
        });
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.StartsWith(
            "RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].match.query_parameters[0].string_match.safe_regex.regex:",
            Assert.Single(errors),
            StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("runtime_fraction")]
    [InlineData("dynamic_metadata")]
    public void DecodeAll_RouteWithAConditionTheClientDoesNotEvaluate_IsNackedNamingTheField(string field)
    {
        // Applying the route without the condition would send it traffic the control plane meant for later routes.
        var routes = Routes("orders");
        var match = routes.VirtualHosts[0].Routes[0].Match;
        switch (field)
        {
            case "grpc": match.Grpc = new GrpcRouteMatchOptions(); break;
            case "runtime_fraction": match.RuntimeFraction = new RuntimeFractionalPercent { RuntimeKey = "canary" }; break;
            default: match.DynamicMetadata.Add(new Mesh.Xds.Envoy.Type.Matcher.V3.MetadataMatcher { Filter = "envoy.filters.http.jwt_authn" }); break;
        }

        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        var error = Assert.Single(errors);
        Assert.Equal($"RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].match.{field} is not supported by this client", error);
    }

    [Fact]
    public void DecodeAll_ListenerWithoutApiListener_ReportsEveryBadResource()
    {
        var bad = new Listener { Name = "orders.default.svc.cluster.local:80" };
        var noRouter = Listener("payments");
        var errors = new List<string>();
        var hcm = noRouter.ApiListener.ApiListener_.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3.HttpConnectionManager>();
        hcm.HttpFilters.Clear();
        noRouter.ApiListener.ApiListener_ = Any.Pack(hcm);

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.Listener, [Any.Pack(bad), Any.Pack(noRouter), Any.Pack(Listener("good"))], errors));

        Assert.Equal(2, errors.Count);
        Assert.Contains("Listener orders.default.svc.cluster.local:80: api_listener is required", errors[0], StringComparison.Ordinal);
        Assert.Contains("Listener payments.default.svc.cluster.local:80: api_listener.api_listener.http_filters must end with the router filter", errors[1], StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeAll_EndpointWithPortZero_ReportsFieldPath()
    {
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Any.Pack(Endpoints("orders", 80, ("10.0.0.1", 0, default)))], errors));

        Assert.Equal("ClusterLoadAssignment outbound|80||orders.default.svc.cluster.local: endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value must be between 1 and 65535", Assert.Single(errors));
    }

    [Fact]
    public void DecodeAll_WeightedClustersSummingToZero_IsRejected()
    {
        var routes = Routes("orders");
        var weighted = new WeightedCluster();
        weighted.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterName("orders"), Weight = 0 });
        routes.VirtualHosts[0].Routes[0].Route_ = new RouteAction { WeightedClusters = weighted };
        var errors = new List<string>();

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors));

        Assert.Contains("weighted_clusters weights add up to 0", Assert.Single(errors), StringComparison.Ordinal);
    }

    [Fact]
    public void DecodeAll_ClustersWithEqualSettings_ShareOneInstance_OthersKeepTheirOwn()
    {
        static Cluster WithTimeout(string name, int milliseconds, uint maxRequests)
        {
            var cluster = Cluster(name);
            cluster.ConnectTimeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(milliseconds));
            cluster.CircuitBreakers = new CircuitBreakers();
            cluster.CircuitBreakers.Thresholds.Add(new CircuitBreakers.Types.Thresholds { MaxRequests = maxRequests });
            return cluster;
        }

        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(
            XdsTypeUrls.Cluster,
            [Any.Pack(WithTimeout("a", 250, 100)), Any.Pack(WithTimeout("b", 250, 100)), Any.Pack(WithTimeout("c", 500, 100)), Any.Pack(WithTimeout("d", 250, 7))],
            errors);

        Assert.Empty(errors);
        var limits = decoded!.Values.Cast<ClusterResource>().ToDictionary(c => c.Name, c => c.Limits!);
        var a = limits[ClusterName("a")];
        Assert.Same(a, limits[ClusterName("b")]);

        // Sharing is by value: another connect timeout or another limit is another instance with its own values.
        Assert.NotSame(a, limits[ClusterName("c")]);
        Assert.Equal(TimeSpan.FromMilliseconds(500), limits[ClusterName("c")].Pool!.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(250), a.Pool!.ConnectTimeout);
        Assert.Equal(100, a.MaxRequests);
        Assert.Equal(7, limits[ClusterName("d")].MaxRequests);
    }

    [Fact]
    public void DecodeAll_EdsServiceNameEqualToTheClusterName_IsTheSameString()
    {
        var other = Cluster("other");
        other.EdsClusterConfig.ServiceName = "eds-of-other";
        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(Cluster("orders")), Any.Pack(other)], errors)!;

        var orders = (ClusterResource)decoded[ClusterName("orders")];
        Assert.Same(orders.Name, orders.EdsServiceName);
        Assert.Equal("eds-of-other", ((ClusterResource)decoded[ClusterName("other")]).EdsServiceName);
    }

    [Fact]
    public void DecodeAll_RouteConfiguration_RepeatedNamesAreOneString_OtherNamesKeepTheirValue()
    {
        var routes = Routes("orders");
        var host = routes.VirtualHosts[0];
        var split = new WeightedCluster();
        split.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterName("orders"), Weight = 90 });
        split.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterName("orders-canary"), Weight = 10 });
        host.Routes.Insert(0, new Route { Match = new RouteMatch { Prefix = "/v2" }, Route_ = new RouteAction { WeightedClusters = split } });
        var errors = new List<string>();

        var decoded = (RouteConfiguration)XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors)![routes.Name];

        Assert.Empty(errors);
        var decodedHost = decoded.VirtualHosts[0];
        Assert.Same(decoded.Name, decodedHost.Routes[1].Route_.Cluster);
        Assert.Same(decoded.Name, decodedHost.Routes[0].Route_.WeightedClusters.Clusters[0].Name);
        Assert.Equal(ClusterName("orders-canary"), decodedHost.Routes[0].Route_.WeightedClusters.Clusters[1].Name);
        Assert.Same(decodedHost.Name, decodedHost.Domains.Single(d => d == decodedHost.Name));
        Assert.Equal(host.Domains, decodedHost.Domains);
    }

    [Theory]
    [InlineData("orders-v1;shop;orders;v1;", "orders-v1", "shop", "orders", "v1", null)]
    [InlineData("orders-v1;shop;orders;v1;east;extra", "orders-v1", "shop", "orders", "v1", "east")]
    [InlineData("Orders V1!;Shop;orders;;east", "unknown", "unknown", "orders", "latest", "east")]
    public void DecodeAll_EndpointTelemetryMetadata_ReadAndFoldedToLabelValues(string encoded, string workload, string ns, string service, string revision, string? cluster)
    {
        var errors = new List<string>();

        var decoded = XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Any.Pack(WithWorkloadMetadata(encoded))], errors)!;

        Assert.Empty(errors);
        var read = Assert.Single(((EndpointsResource)decoded[ClusterName("a")]).Endpoints).Workload;
        Assert.NotNull(read);
        Assert.Equal((workload, ns, service, revision, cluster), (read.Workload, read.Namespace, read.CanonicalService, read.CanonicalRevision, read.Cluster));
    }

    [Theory]
    [InlineData("a;b;c;d")]
    [InlineData("")]
    public void DecodeAll_EndpointTelemetryMetadataWithFewerThanFiveParts_IsNone_NotAnError(string encoded)
    {
        var errors = new List<string>();

        var decoded = XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Any.Pack(WithWorkloadMetadata(encoded))], errors)!;

        Assert.Empty(errors);
        Assert.Null(Assert.Single(((EndpointsResource)decoded[ClusterName("a")]).Endpoints).Workload);
    }

    /// <summary>An assignment of one endpoint carrying istiod's telemetry metadata <paramref name="encoded"/>.</summary>
    private static Mesh.Xds.Envoy.Config.Endpoint.V3.ClusterLoadAssignment WithWorkloadMetadata(string encoded)
    {
        var assignment = Endpoints("a", 80, ("10.0.0.1", 8080, default));
        var metadata = new Google.Protobuf.WellKnownTypes.Struct();
        metadata.Fields[Mesh.Xds.Wire.EndpointWorkloadMetadata.WorkloadField] = Google.Protobuf.WellKnownTypes.Value.ForString(encoded);
        assignment.Endpoints[0].LbEndpoints[0].Metadata = new Metadata { FilterMetadata = { [Mesh.Xds.Wire.EndpointWorkloadMetadata.FilterName] = metadata } };
        return assignment;
    }

    [Fact]
    public void DecodeAll_Assignments_ShareLocalityNames_WithinAResponse()
    {
        var east = Endpoints("a", 80, ("10.0.0.1", 8080, default));
        var alsoEast = Endpoints("b", 80, ("10.0.0.2", 8080, default));
        var west = Endpoints("c", 80, ("10.0.0.3", 8080, default));
        west.Endpoints[0].Locality.Region = "r2";
        var errors = new List<string>();

        var decoded = XdsResourceDecoder.DecodeAll(XdsTypeUrls.ClusterLoadAssignment, [Any.Pack(east), Any.Pack(alsoEast), Any.Pack(west)], errors)!;

        Assert.Empty(errors);
        string LocalityOf(string name) => Assert.Single(((EndpointsResource)decoded[ClusterName(name)]).Endpoints).Locality;
        Assert.Equal("r1//", LocalityOf("a"));
        Assert.Same(LocalityOf("a"), LocalityOf("b"));
        Assert.Equal("r2//", LocalityOf("c"));
    }

    [Fact]
    public void DecodeAll_RouteConfigurations_ShareEqualMatchesAndRetryPolicies_NotDifferentOnes()
    {
        static RouteConfiguration WithRetries(string name, uint retries, string prefix)
        {
            var routes = Routes(name);
            var route = routes.VirtualHosts[0].Routes[0];
            route.Match.Prefix = prefix;
            route.Route_.RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = retries };
            return routes;
        }

        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(
            XdsTypeUrls.RouteConfiguration,
            [Any.Pack(WithRetries("a", 2, "/")), Any.Pack(WithRetries("b", 2, "/")), Any.Pack(WithRetries("c", 3, "/api"))],
            errors)!;

        Assert.Empty(errors);
        Route RouteOf(string name) => ((RouteConfiguration)decoded[ClusterName(name)]).VirtualHosts[0].Routes[0];
        Assert.Same(RouteOf("a").Match, RouteOf("b").Match);
        Assert.Same(RouteOf("a").Route_.RetryPolicy, RouteOf("b").Route_.RetryPolicy);
        Assert.NotSame(RouteOf("a").Match, RouteOf("c").Match);
        Assert.Equal("/api", RouteOf("c").Match.Prefix);
        Assert.Equal(3u, RouteOf("c").Route_.RetryPolicy.NumRetries);
        Assert.Equal(2u, RouteOf("a").Route_.RetryPolicy.NumRetries);

        // Each keeps its own cluster: sharing never crosses into what differs.
        Assert.Equal(ClusterName("b"), RouteOf("b").Route_.Cluster);
    }
}
