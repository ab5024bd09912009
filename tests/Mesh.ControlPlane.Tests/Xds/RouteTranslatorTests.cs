using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>VirtualService and DestinationRule subsets, from YAML to CDS/EDS/RDS.</summary>
public class RouteTranslatorTests
{
    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: orders}}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: payments}
        spec:
          hosts: [payments]
          ports: [{number: 8080, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: payments}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-1}
        spec: {address: 10.0.0.1, ports: {http: 5001}, labels: {app: orders, version: v1}, serviceAccount: orders}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-2}
        spec: {address: 10.0.0.2, ports: {http: 5002}, labels: {app: orders, version: v2, track: canary}, serviceAccount: orders}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
            trafficPolicy:
              loadBalancer: {simple: LEAST_REQUEST}
        """;

    private const string Canary = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - name: ab
            match:
            - name: beta
              uri: {prefix: /api}
              ignoreUriCase: true
              method: {exact: GET}
              headers:
                x-user: {regex: "beta-[0-9]+"}
                x-trace: {}
              withoutHeaders:
                x-legacy: {exact: "1"}
            - uri: {regex: "/v[0-9]+/orders"}
            route:
            - destination: {host: orders, subset: v2}
            timeout: 2s
            retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503,connect-failure"}
          - name: pay
            match:
            - uri: {prefix: /pay}
            route:
            - destination: {host: payments}
          - name: split
            route:
            - destination: {host: orders, subset: v1}
              weight: 90
            - destination: {host: orders, subset: v2}
              weight: 10
            - destination: {host: orders}
              weight: 0
        """;

    private static XdsSnapshot Translate(string virtualService)
    {
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);
        Assert.Empty(result.Errors);
        return XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
    }

    private static VirtualHost VirtualHost(XdsSnapshot snapshot, string name) =>
        Assert.Single(snapshot.Routes[name].Resource.Unpack<RouteConfiguration>().VirtualHosts);

    [Fact]
    public void Translate_StandardClientRoutes_CarryIstiosDefaultRetryPolicyWhereTheRouteSetsNone()
    {
        var snapshot = Translate(Canary.Replace("  - name: pay\n", "  - name: pay\n    retries: {attempts: 0}\n", StringComparison.Ordinal));
        var standard = Assert.Single(snapshot.StandardClientRoutes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes;
        var mesh = VirtualHost(snapshot, Cluster80).Routes;

        // [0], [1]: the VS's retries; [2]: attempts 0 (an empty retry_on, kept); [3]: the split, which sets none.
        Assert.Equal(3u, standard[0].Route_.RetryPolicy.NumRetries);
        Assert.Equal(string.Empty, standard[2].Route_.RetryPolicy.RetryOn);
        var added = standard[3].Route_.RetryPolicy;
        Assert.Equal(2u, added.NumRetries);
        Assert.Equal("connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", added.RetryOn);
        Assert.Empty(added.RetriableStatusCodes); // Istio ≥ 1.24: a 503 is not resent by default
        Assert.Equal(5, added.HostSelectionRetryMaxAttempts);
        Assert.Equal("envoy.retry_host_predicates.previous_hosts", Assert.Single(added.RetryHostPredicate).Name);

        // Mesh clients get no default: Mesh:Resilience decides where the VirtualService says nothing.
        Assert.Null(mesh[3].Route_.RetryPolicy);
        Assert.Equal(standard.Count, mesh.Count);
    }

    [Fact]
    public void Translate_EmptyMethodAuthorityAndSchemeMatches_ArePresentMatches_AsIstiodTranslatesThem()
    {
        var snapshot = Translate(Canary.Replace("method: {exact: GET}", "method: {}\n      authority: {}\n      scheme: {}", StringComparison.Ordinal));

        var headers = VirtualHost(snapshot, Cluster80).Routes[0].Match.Headers;

        // The sorted headers, then :method, :authority and :scheme as istiod orders them, then withoutHeaders.
        Assert.Equal(["x-trace", "x-user", ":method", ":authority", ":scheme", "x-legacy"], headers.Select(h => h.Name).ToArray());
        Assert.All(headers.Where(h => h.Name[0] == ':'), h => Assert.True(h.PresentMatch));
    }

    [Fact]
    public void Translate_ServiceWithoutVirtualService_StandardClientsGetTheDefaultRetryPolicy()
    {
        var result = YamlConfigLoader.Load([("services.yaml", Services)]);
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);

        var route = Assert.Single(Assert.Single(snapshot.StandardClientRoutes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes);

        Assert.Equal(2u, route.Route_.RetryPolicy.NumRetries);
        Assert.Null(Assert.Single(VirtualHost(snapshot, Cluster80).Routes).Route_.RetryPolicy);
    }

    [Fact]
    public void Translate_Subsets_EmitIstioNamedClustersWithOnlyTheirEndpoints()
    {
        var snapshot = Translate(Canary);

        var v1 = snapshot.Clusters[V1].Resource.Unpack<Cluster>();
        Assert.Equal(V1, v1.EdsClusterConfig.ServiceName);
        Assert.Null(v1.LoadBalancingPolicy);
        var v2 = snapshot.Clusters[V2].Resource.Unpack<Cluster>();
        Assert.Equal(XdsTranslator.LeastRequestPolicyName, v2.LoadBalancingPolicy.Policies[0].TypedExtensionConfig.Name);
        Assert.Null(snapshot.Clusters[Cluster80].Resource.Unpack<Cluster>().LoadBalancingPolicy);

        string[] Addresses(string cluster) =>
            [.. snapshot.Endpoints[cluster].Resource.Unpack<ClusterLoadAssignment>().Endpoints.SelectMany(l => l.LbEndpoints).Select(e => e.Endpoint.Address.SocketAddress.Address)];
        Assert.Equal(["10.0.0.1"], Addresses(V1));
        Assert.Equal(["10.0.0.2"], Addresses(V2));
        Assert.Equal(["10.0.0.1", "10.0.0.2"], Addresses(Cluster80).Order(StringComparer.Ordinal).ToArray());
        Assert.Equal(V2, snapshot.Endpoints[V2].Resource.Unpack<ClusterLoadAssignment>().ClusterName);
    }

    [Fact]
    public void Translate_SubsetMatchingNoEndpoint_HasAnEmptyAssignment()
    {
        var services = Services.Replace("labels: {version: v2}", "labels: {version: v3}", StringComparison.Ordinal);
        var result = YamlConfigLoader.Load([("services.yaml", services)]);
        Assert.Empty(result.Errors);

        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);

        Assert.Empty(snapshot.Endpoints[V2].Resource.Unpack<ClusterLoadAssignment>().Endpoints);
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("ISTIO_MUTUAL", true)]
    [InlineData("DISABLE", false)]
    public void Translate_SubsetClusters_TakeTheParentsTlsDecision(string? mode, bool tls)
    {
        var services = mode is null
            ? Services
            : Services.Replace("  host: orders\n", $"  host: orders\n  trafficPolicy: {{tls: {{mode: {mode}}}}}\n", StringComparison.Ordinal);
        var result = YamlConfigLoader.Load([("services.yaml", services)]);
        Assert.Empty(result.Errors);

        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);

        foreach (var name in new[] { Cluster80, V1, V2 })
        {
            var cluster = snapshot.Clusters[name].Resource.Unpack<Cluster>();
            Assert.Equal(tls, cluster.TransportSocket is not null);
            Assert.Equal(snapshot.Clusters[Cluster80].Resource.Unpack<Cluster>().TransportSocket, cluster.TransportSocket);
        }
    }

    [Fact]
    public void Translate_VirtualService_MatchBlocksBecomeRoutesInOrderWithTheirAction()
    {
        var routes = VirtualHost(Translate(Canary), Cluster80).Routes;

        Assert.Equal(["ab.beta", "ab", "pay", "split"], routes.Select(r => r.Name).ToArray());
        var beta = routes[0].Match;
        Assert.Equal("/api", beta.Prefix);
        Assert.False(beta.CaseSensitive);
        Assert.Equal(
            [
                new HeaderMatcher { Name = "x-trace", PresentMatch = true },
                new HeaderMatcher { Name = "x-user", StringMatch = new StringMatcher { SafeRegex = new RegexMatcher { Regex = "beta-[0-9]+" } } },
                new HeaderMatcher { Name = ":method", StringMatch = new StringMatcher { Exact = "GET" } },
                new HeaderMatcher { Name = "x-legacy", StringMatch = new StringMatcher { Exact = "1" }, InvertMatch = true, TreatMissingHeaderAsEmpty = true },
            ],
            beta.Headers.ToArray());

        var regex = routes[1].Match;
        Assert.Equal(RouteMatch.PathSpecifierOneofCase.SafeRegex, regex.PathSpecifierCase);
        Assert.Equal("/v[0-9]+/orders", regex.SafeRegex.Regex);
        Assert.True(regex.CaseSensitive);
        Assert.Empty(regex.Headers);

        Assert.Equal(routes[0].Route_, routes[1].Route_);
        var action = routes[0].Route_;
        Assert.Equal(V2, action.Cluster);
        Assert.Equal(TimeSpan.FromSeconds(2), action.Timeout.ToTimeSpan());
        Assert.Equal(TimeSpan.FromSeconds(2), action.MaxStreamDuration.MaxStreamDuration_.ToTimeSpan());
        Assert.Equal(3u, action.RetryPolicy.NumRetries);
        Assert.Equal(TimeSpan.FromMilliseconds(500), action.RetryPolicy.PerTryTimeout.ToTimeSpan());
        Assert.Equal("5xx,connect-failure,retriable-status-codes", action.RetryPolicy.RetryOn);
        Assert.Equal([503u], action.RetryPolicy.RetriableStatusCodes.ToArray());
    }

    [Fact]
    public void Translate_WeightedRoute_KeepsWeightsVerbatimAndDropsZero()
    {
        var split = VirtualHost(Translate(Canary), Cluster80).Routes[3];

        Assert.Equal("/", split.Match.Prefix);
        Assert.Null(split.Route_.Timeout);
        Assert.Null(split.Route_.RetryPolicy);
        var weighted = split.Route_.WeightedClusters;
        Assert.Null(weighted.TotalWeight);
        Assert.Equal([(V1, 90u), (V2, 10u)], weighted.Clusters.Select(c => (c.Name, c.Weight!.Value)).ToArray());
    }

    [Fact]
    public void Translate_RoutesAfterACatchAll_AreLeftOut()
    {
        var routes = VirtualHost(Translate(Canary), Cluster80).Routes;

        Assert.Equal("outbound|8080||payments.default.svc.cluster.local", routes[2].Route_.Cluster);

        var shadowed = Canary.Replace("  - name: pay\n", "  - name: first\n    route:\n    - destination: {host: orders}\n  - name: pay\n", StringComparison.Ordinal);
        Assert.NotEqual(Canary, shadowed);
        var after = VirtualHost(Translate(shadowed), Cluster80).Routes;
        Assert.Equal(["ab.beta", "ab", "first"], after.Select(r => r.Name).ToArray());
        Assert.Equal(Cluster80, after[2].Route_.Cluster);
    }

    [Fact]
    public void Translate_HostWithoutVirtualService_KeepsTheSingleCatchAllRoute()
    {
        var route = Assert.Single(VirtualHost(Translate(Canary), "outbound|8080||payments.default.svc.cluster.local").Routes);

        Assert.Equal(string.Empty, route.Match.Prefix);
        Assert.Equal("outbound|8080||payments.default.svc.cluster.local", route.Route_.Cluster);
    }

    [Fact]
    public void Translate_UriExact_BecomesPath()
    {
        var routes = VirtualHost(Translate(Canary.Replace("uri: {prefix: /api}", "uri: {exact: /api/orders}", StringComparison.Ordinal)), Cluster80).Routes;

        Assert.Equal(RouteMatch.PathSpecifierOneofCase.Path, routes[0].Match.PathSpecifierCase);
        Assert.Equal("/api/orders", routes[0].Match.Path);
    }

    [Theory]
    [InlineData("{attempts: 2}", 2u, RouteTranslator.DefaultRetryOn, new uint[0])]
    [InlineData("{attempts: 0}", null, "", new uint[0])]
    [InlineData("{attempts: 1, retryOn: \"502,503,retriable-status-codes,502\"}", 1u, "retriable-status-codes", new uint[] { 502, 503 })]
    public void Translate_Retries_FollowIstiod(string retries, uint? attempts, string retryOn, uint[] codes)
    {
        var yaml = Canary.Replace("{attempts: 3, perTryTimeout: 500ms, retryOn: \"5xx,503,connect-failure\"}", retries, StringComparison.Ordinal);
        Assert.NotEqual(Canary, yaml);

        var policy = VirtualHost(Translate(yaml), Cluster80).Routes[0].Route_.RetryPolicy;

        // attempts: 0 must not become num_retries 0, which grpc-js NACKs; an empty retry_on retries nothing.
        Assert.Equal(attempts, policy.NumRetries);
        Assert.Equal(retryOn, policy.RetryOn);
        Assert.Equal(codes, policy.RetriableStatusCodes.ToArray());
        Assert.Null(policy.PerTryTimeout);
    }
}
