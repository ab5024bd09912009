using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using static Mesh.Client.Tests.Support.XdsResources;
using WeightedCluster = Mesh.Xds.Envoy.Config.Route.V3.WeightedCluster;

namespace Mesh.Client.Tests.Xds;

public class MeshSnapshotBuilderTests
{
    [Fact]
    public void Build_IstioShapedResources_BindsEveryAliasToTheService()
    {
        var snapshot = Build(
            [Listener("orders")],
            [Routes("orders")],
            [Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.LeastRequest)],
            [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy), ("10.0.0.2", 8080, HealthStatus.Unknown))]);

        var service = Assert.Single(snapshot.Services);
        Assert.Equal("orders.default.svc.cluster.local", service.Host);
        Assert.Equal(80, service.Port);
        foreach (var alias in new[] { "orders", "orders.default", "orders.default.svc.cluster.local" })
        {
            Assert.True(snapshot.TryGetService(alias, 80, isDefaultPort: true, out var found), alias);
            Assert.Same(service, found);
        }

        var cluster = snapshot.Clusters[ClusterName("orders")];
        Assert.Equal(LoadBalancingPolicy.LeastRequest, cluster.Policy);
        Assert.Equal(["10.0.0.1:8080", "10.0.0.2:8080"], cluster.Endpoints.Select(e => e.Authority));
        Assert.Same(cluster, service.Routes[0].Clusters[0].Cluster);
    }

    [Theory]
    [InlineData((int)HealthStatus.Unknown, true)]
    [InlineData((int)HealthStatus.Healthy, true)]
    [InlineData((int)HealthStatus.Unhealthy, false)]
    [InlineData((int)HealthStatus.Draining, false)]
    [InlineData((int)HealthStatus.Timeout, false)]
    [InlineData((int)HealthStatus.Degraded, false)]
    public void Build_HealthStatus_MapsToIsHealthy(int healthStatus, bool healthy)
    {
        // The wire enum is internal to the package, so the theory takes its number.
        var status = (HealthStatus)healthStatus;
        var snapshot = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, status))]);

        Assert.Equal(healthy, Assert.Single(snapshot.Clusters[ClusterName("orders")].Endpoints).IsHealthy);
    }

    [Fact]
    public void Build_LocalityWithoutWeight_IsSkipped()
    {
        var assignment = Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy));
        var unweighted = new LocalityLbEndpoints { Locality = new Locality { Region = "r2" } };
        unweighted.LbEndpoints.Add(new LbEndpoint { Endpoint = new Endpoint { Address = new Address { SocketAddress = new SocketAddress { Address = "10.0.0.9", PortValue = 8080 } } } });
        assignment.Endpoints.Add(unweighted);

        var snapshot = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [assignment]);

        Assert.Equal("10.0.0.1", Assert.Single(snapshot.Clusters[ClusterName("orders")].Endpoints).Address);
    }

    [Fact]
    public void Build_SecondUpdate_ReusesUnchangedEndpointInstances()
    {
        var first = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy), ("10.0.0.2", 8080, HealthStatus.Healthy))]);
        var kept = first.Clusters[ClusterName("orders")].Endpoints[0];
        kept.OnRequestStarted();

        var second = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy), ("10.0.0.2", 8080, HealthStatus.Unhealthy))], first);

        var endpoints = second.Clusters[ClusterName("orders")].Endpoints;
        Assert.Same(kept, endpoints[0]);
        Assert.Equal(1, endpoints[0].ActiveRequests);
        Assert.NotSame(first.Clusters[ClusterName("orders")].Endpoints[1], endpoints[1]);
        Assert.False(endpoints[1].IsHealthy);
    }

    [Fact]
    public void Build_ListenerWithMissingCluster_LeavesOnlyThatServiceOut()
    {
        var incomplete = new List<string>();
        var snapshot = Build(
            [Listener("orders"), Listener("payments")],
            [Routes("orders"), Routes("payments")],
            [Cluster("orders")],
            [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))],
            incomplete: incomplete);

        Assert.Equal("orders.default.svc.cluster.local", Assert.Single(snapshot.Services).Host);
        Assert.False(snapshot.IsMeshHost("payments"));
        Assert.Contains(incomplete, r => r.Contains("payments", StringComparison.Ordinal));
    }

    [Fact]
    public void Build_WeightedClusters_KeepsWeights()
    {
        var routes = Routes("orders");
        var weighted = new WeightedCluster();
        weighted.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterName("orders"), Weight = 80 });
        weighted.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterName("orders-v2"), Weight = 20 });
        routes.VirtualHosts[0].Routes[0].Route_ = new RouteAction { WeightedClusters = weighted };

        var snapshot = Build([Listener("orders")], [routes], [Cluster("orders"), Cluster("orders-v2")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy)), Endpoints("orders-v2", 80, ("10.0.0.2", 8080, HealthStatus.Healthy))]);

        Assert.Equal([80u, 20u], snapshot.Services[0].Routes[0].Clusters.Select(c => c.Weight));
    }

    /// <summary>A route header with string_match used to be read as a presence test: any value of the header matched.</summary>
    [Fact]
    public void Build_RouteHeaderStringMatch_MatchesTheValueNotMerePresence()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.Headers.Add(new HeaderMatcher { Name = "x-canary", StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { Exact = "yes", IgnoreCase = true } });

        var snapshot = Build([Listener("orders")], [routes], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))]);

        var route = Assert.Single(snapshot.Services[0].Routes);
        Assert.Equal(new HeaderMatch("x-canary", new StringMatch(StringMatchKind.Exact, "yes", IgnoreCase: true), Invert: false), Assert.Single(route.Headers));
        using var request = new HttpRequestMessage();
        request.Headers.Add("x-canary", "no");
        Assert.False(route.MatchesHeaders(request.Headers));
        request.Headers.Remove("x-canary");
        request.Headers.Add("x-canary", "YES");
        Assert.True(route.MatchesHeaders(request.Headers));
    }

    [Fact]
    public void Build_SafeRegexPathAndHeaders_AreAppliedAsFullMatches()
    {
        var routes = Routes("orders");
        var match = routes.VirtualHosts[0].Routes[0].Match;
        match.SafeRegex = new Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher { Regex = "/v[0-9]+/.*" };
        match.Headers.Add(new HeaderMatcher { Name = "x-user", StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { SafeRegex = new Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher { Regex = "beta-[0-9]+" } } });
        // As the control plane sends withoutHeaders: inverted, and a missing header counts as "".
        match.Headers.Add(new HeaderMatcher { Name = "x-legacy", SafeRegexMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher { Regex = "[01]" }, InvertMatch = true, TreatMissingHeaderAsEmpty = true });

        var snapshot = Build([Listener("orders")], [routes], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))]);

        var route = Assert.Single(snapshot.Services[0].Routes);
        Assert.True(snapshot.Services[0].NeedsPath);
        Assert.True(route.MatchesPath("/v1/orders"));
        Assert.False(route.MatchesPath("/api/v1/orders"));
        using var request = new HttpRequestMessage();
        request.Headers.Add("x-user", "beta-7");
        Assert.True(route.MatchesHeaders(request));
        request.Headers.Add("x-legacy", "1");
        Assert.False(route.MatchesHeaders(request));
        request.Headers.Remove("x-legacy");
        request.Headers.Remove("x-user");
        request.Headers.Add("x-user", "gamma-beta-7");
        Assert.False(route.MatchesHeaders(request));
    }

    [Fact]
    public void Build_ContentTypeHeaderMatch_ReadsTheContentHeaders()
    {
        // A VirtualService splitting gRPC from REST matches content-type, which HttpClient keeps on the content.
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.Headers.Add(new HeaderMatcher
        {
            Name = "content-type",
            StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { Prefix = "application/grpc" },
        });
        var route = Assert.Single(Build([Listener("orders")], [routes], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))]).Services[0].Routes);
        using var grpc = new HttpRequestMessage(HttpMethod.Post, "http://orders/pkg.Svc/Call") { Content = new ByteArrayContent([]) };
        grpc.Content.Headers.TryAddWithoutValidation("content-type", "application/grpc");
        using var rest = new HttpRequestMessage(HttpMethod.Post, "http://orders/api") { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };

        Assert.True(route.MatchesHeaders(grpc));
        Assert.False(route.MatchesHeaders(rest));
    }

    [Theory]
    [InlineData(false, false, false)] // Envoy: a missing header matches no value matcher, inverted or not
    [InlineData(false, true, true)]   // treat_missing_header_as_empty: "" is not "beta", so the inverted matcher matches
    [InlineData(true, false, false)]
    [InlineData(true, true, false)]
    public void Build_InvertedHeaderMatch_MissingHeaderAsEnvoy(bool present, bool treatMissingAsEmpty, bool expected)
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Match.Headers.Add(new HeaderMatcher
        {
            Name = "x-track",
            StringMatch = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher { Exact = "beta" },
            InvertMatch = true,
            TreatMissingHeaderAsEmpty = treatMissingAsEmpty,
        });
        var route = Assert.Single(Build([Listener("orders")], [routes], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))]).Services[0].Routes);
        using var request = new HttpRequestMessage();
        if (present)
        {
            request.Headers.Add("x-track", "beta");
        }

        Assert.Equal(expected, route.MatchesHeaders(request));
    }

    [Fact]
    public void Build_ClusterGoneWhileTheRoutesStillNameIt_KeepsThePreviousClusterUntilTheRoutesMoveOn()
    {
        // CDS arrives before RDS (make before break): a subset and its route removed in one change meet here as new
        // clusters under old routes. The service must keep routing, not drop out until RDS arrives.
        var first = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))]);
        var old = first.Clusters[ClusterName("orders")];
        var incomplete = new List<string>();

        var between = Build([Listener("orders")], [Routes("orders")], [Cluster("other")], [Endpoints("other", 80, ("10.0.0.2", 8080, HealthStatus.Healthy))], first, incomplete);

        Assert.Empty(incomplete);
        Assert.True(between.TryGetService("orders", 80, isDefaultPort: true, out var service));
        Assert.Same(old, service.Routes[0].Clusters[0].Cluster);

        // Once the routes no longer name it, it is gone.
        var after = Build([Listener("orders")], [Routes("orders", cluster: ClusterName("other"))], [Cluster("other")], [Endpoints("other", 80, ("10.0.0.2", 8080, HealthStatus.Healthy))], between);

        Assert.False(after.Clusters.ContainsKey(ClusterName("orders")));
        Assert.True(after.TryGetService("orders", 80, isDefaultPort: true, out var moved));
        Assert.Equal(ClusterName("other"), moved.Routes[0].Clusters[0].Cluster.Name);
    }

    [Fact]
    public void Build_RouteToAClusterNeverSeen_StaysIncomplete()
    {
        var incomplete = new List<string>();

        var snapshot = Build([Listener("orders")], [Routes("orders")], [Cluster("other")], [Endpoints("other", 80, ("10.0.0.2", 8080, HealthStatus.Healthy))], incomplete: incomplete);

        Assert.False(snapshot.TryGetService("orders", 80, isDefaultPort: true, out _));
        Assert.Contains(incomplete, i => i.Contains(ClusterName("orders"), StringComparison.Ordinal));
    }

    [Fact]
    public void Build_MirrorClusterDroppedFromCds_IsRetained_AndTheServiceStaysInTheMesh()
    {
        var first = Build([Listener("orders")], [MirroredRoutes("orders", "shadow")], [Cluster("orders"), Cluster("shadow")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy)), Endpoints("shadow", 80, ("10.0.0.9", 8080, HealthStatus.Healthy))]);
        var incomplete = new List<string>();

        var second = Build([Listener("orders")], [MirroredRoutes("orders", "shadow")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))], first, incomplete);

        Assert.True(second.TryGetService("orders", 80, isDefaultPort: true, out var service));
        var mirror = Assert.Single(service!.Routes[0].Features!.Mirrors);
        Assert.Same(first.Clusters[ClusterName("shadow")], mirror.Cluster);
        Assert.Same(mirror.Cluster, second.Clusters[ClusterName("shadow")]);
        Assert.Empty(incomplete);
    }

    [Fact]
    public void Build_MirrorToAClusterNeverSeen_ServesTheRouteWithoutTheMirror_AndSaysSo()
    {
        var incomplete = new List<string>();

        var snapshot = Build([Listener("orders")], [MirroredRoutes("orders", "shadow")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))], incomplete: incomplete);

        // Before: the listener waited for the mirror cluster, so the service left the snapshot and its requests the mesh.
        Assert.True(snapshot.TryGetService("orders", 80, isDefaultPort: true, out var service));
        Assert.Null(service!.Routes[0].Features);
        Assert.Equal(ClusterName("orders"), service.Routes[0].Clusters[0].Cluster.Name);
        Assert.Contains(incomplete, i => i.Contains("mirror", StringComparison.Ordinal) && i.Contains(ClusterName("shadow"), StringComparison.Ordinal));
    }

    [Fact]
    public void Build_LocalityWeightChangesWhenAPodJoins_EjectedEndpointStaysEjected()
    {
        // The control plane sends a locality's weight as the sum of its endpoints' weights: a pod joining zone r1 changes
        // the weight of every r1 endpoint. The ejected one must not come back with the push.
        var first = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy), ("10.0.0.2", 8080, HealthStatus.Healthy))]);
        var ejected = first.Clusters[ClusterName("orders")].Endpoints[0];
        Assert.True(ejected.TryEject(now: 1, maxMultiplier: 10));
        ejected.RecordError(gatewayError: true);

        var grown = Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy), ("10.0.0.2", 8080, HealthStatus.Healthy), ("10.0.0.3", 8080, HealthStatus.Healthy));
        grown.Endpoints[0].LoadBalancingWeight = 3;
        var second = Build([Listener("orders")], [Routes("orders")], [Cluster("orders")], [grown], previous: first);

        var cluster = second.Clusters[ClusterName("orders")];
        var same = cluster.Endpoints.Single(e => e.Authority == "10.0.0.1:8080");
        Assert.Equal(3, same.LocalityWeight);
        Assert.True(same.IsEjected(now: 2));
        Assert.Equal((1, 1, 1L), (same.EjectionMultiplier, same.Consecutive5xx, same.EjectedAt));
        Assert.Equal(1, cluster.Outlier.EjectedCount);
        Assert.All(cluster.Endpoints.Where(e => e.Authority != "10.0.0.1:8080"), e => Assert.False(e.IsEjected(now: 2)));
    }

    /// <summary>The routes of <paramref name="name"/> with a mirror of every request to <paramref name="mirror"/>'s cluster.</summary>
    internal static RouteConfiguration MirroredRoutes(string name, string mirror)
    {
        var routes = Routes(name);
        routes.VirtualHosts[0].Routes[0].Route_.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy { Cluster = ClusterName(mirror) });
        return routes;
    }

    [Fact]
    public void Build_ClusterServiceHost_IsTheListenerHostString()
    {
        var snapshot = Build([Listener("orders")], [Routes("orders")], [Cluster("orders"), Cluster("payments")], [Endpoints("orders", 80), Endpoints("payments", 80)]);

        var service = Assert.Single(snapshot.Services);
        Assert.Same(service.Host, snapshot.Clusters[ClusterName("orders")].ServiceHost);

        // A cluster no listener names still gets its host from its name.
        Assert.Equal("payments.default.svc.cluster.local", snapshot.Clusters[ClusterName("payments")].ServiceHost);
    }

    [Theory]
    [InlineData("outbound|80||orders.default.svc.cluster.local", "orders.default.svc.cluster.local")]
    [InlineData("outbound|80|v2|orders.default.svc.cluster.local", "orders.default.svc.cluster.local")]
    [InlineData("outbound|80||", "outbound|80||")]
    [InlineData("a|b|c", "a|b|c")]
    [InlineData("a|b|c|d|e", "a|b|c|d|e")]
    [InlineData("plain", "plain")]
    public void ServiceHostOf_IstioClusterName_IsItsFqdn_ElseTheName(string cluster, string expected) =>
        Assert.Equal(expected, MeshSnapshotBuilder.ServiceHostOf(cluster));

    internal static MeshSnapshot Build(IMessage[] listeners, IMessage[] routes, IMessage[] clusters, IMessage[] endpoints, MeshSnapshot? previous = null, List<string>? incomplete = null)
    {
        return MeshSnapshotBuilder.Build(
            "test",
            Decode<ListenerResource>(XdsTypeUrls.Listener, listeners),
            Decode<RouteConfiguration>(XdsTypeUrls.RouteConfiguration, routes),
            Decode<ClusterResource>(XdsTypeUrls.Cluster, clusters),
            Decode<EndpointsResource>(XdsTypeUrls.ClusterLoadAssignment, endpoints),
            previous ?? MeshSnapshot.Empty,
            incomplete ?? []);
    }

    private static Dictionary<string, T> Decode<T>(string typeUrl, IMessage[] resources)
    {
        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(typeUrl, resources.Select(Any.Pack), errors);
        Assert.Empty(errors);
        return decoded!.ToDictionary(p => p.Key, p => (T)p.Value);
    }
}
