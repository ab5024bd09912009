using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Microsoft.Extensions.Primitives;
using WeightedCluster = Mesh.Xds.Envoy.Config.Route.V3.WeightedCluster;

namespace Mesh.Benchmarks;

/// <summary>
/// Route match + weighted pick + endpoint pick for a service whose VirtualService has 10 routes (header, prefix, exact,
/// regex, query parameter, method and presence matches, then a 90/10 split over two subsets of 3 endpoints each), decoded from xDS by
/// the client's own decoder exactly as it arrives from the control plane. Target: 0 bytes allocated per request.
/// </summary>
[MemoryDiagnoser]
public class VirtualServiceRoutingBenchmarks
{
    private const string Fqdn = "orders.default.svc.cluster.local";
    private const string V1 = "outbound|80|v1|" + Fqdn;
    private const string V2 = "outbound|80|v2|" + Fqdn;
    private readonly HttpRequestMessage _fallThrough = new(HttpMethod.Get, "http://orders/orders/42");
    private readonly HttpRequestMessage _firstRouteHeader = new(HttpMethod.Get, "http://orders/orders/42");
    private readonly HttpRequestMessage _regexRoute = new(HttpMethod.Get, "http://orders/beta/42");
    private readonly HttpRequestMessage _typedUserAgent = new(HttpMethod.Get, "http://orders/orders/42");
    private readonly HttpRequestMessage _queryRoute = new(HttpMethod.Get, "http://orders/api/v3/items?page=2&version=v3");
    private MeshRouter _router = null!;

    [GlobalSetup]
    public void Setup()
    {
        _firstRouteHeader.Headers.Add("x-beta", "1");
        _fallThrough.Headers.TryAddWithoutValidation("user-agent", "bench/1.0");
        _typedUserAgent.Headers.UserAgent.ParseAdd("bench/1.0");
        var routes = new RouteConfiguration { Name = $"outbound|80||{Fqdn}" };
        var host = new VirtualHost { Name = $"{Fqdn}:80" };
        host.Domains.Add([Fqdn, "orders", "orders.default"]);
        host.Routes.Add(Route("beta-header", new RouteMatch { Prefix = "/" }, V2, Header("x-beta", new StringMatcher { Exact = "1" })));
        host.Routes.Add(Route("admin", new RouteMatch { Prefix = "/admin" }, V2, Header("x-role", new StringMatcher { SafeRegex = new RegexMatcher { Regex = "admin|ops" } })));
        host.Routes.Add(Route("beta-path", new RouteMatch { SafeRegex = new RegexMatcher { Regex = "/beta/[0-9]+" } }, V2));
        var apiV3 = Route("api-v3", new RouteMatch { Prefix = "/api/v3/" }, V2);
        apiV3.Match.QueryParameters.Add(new QueryParameterMatcher { Name = "version", StringMatch = new StringMatcher { Exact = "v3" } });
        host.Routes.Add(apiV3);
        host.Routes.Add(Route("health", new RouteMatch { Path = "/healthz" }, V1));
        host.Routes.Add(Route("canary-flag", new RouteMatch { Prefix = "/" }, V2, new HeaderMatcher { Name = "x-canary", PresentMatch = true }));
        host.Routes.Add(Route("reports", new RouteMatch { Prefix = "/Reports", CaseSensitive = false }, V1));
        host.Routes.Add(Route("curl", new RouteMatch { Prefix = "/" }, V1, Header("user-agent", new StringMatcher { Prefix = "curl/" })));
        host.Routes.Add(Route("legacy-post", new RouteMatch { Prefix = "/legacy" }, V1, Header(":method", new StringMatcher { Exact = "POST" })));
        var split = new Route { Name = "split", Match = new RouteMatch { Prefix = "/" }, Route_ = new RouteAction { WeightedClusters = new WeightedCluster() } };
        split.Route_.WeightedClusters.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = V1, Weight = 90 });
        split.Route_.WeightedClusters.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = V2, Weight = 10 });
        host.Routes.Add(split);
        routes.VirtualHosts.Add(host);

        var hcm = new HttpConnectionManager { Rds = new Rds { ConfigSource = new ConfigSource { Ads = new AggregatedConfigSource() }, RouteConfigName = routes.Name } };
        hcm.HttpFilters.Add(new HttpFilter { Name = "envoy.filters.http.router", TypedConfig = Any.Pack(new Router()) });
        var listener = new Listener { Name = $"{Fqdn}:80", ApiListener = new ApiListener { ApiListener_ = Any.Pack(hcm) } };

        var incomplete = new List<string>();
        var snapshot = MeshSnapshotBuilder.Build(
            "1",
            Decode<ListenerResource>(XdsTypeUrls.Listener, listener),
            Decode<RouteConfiguration>(XdsTypeUrls.RouteConfiguration, routes),
            Decode<ClusterResource>(XdsTypeUrls.Cluster, Cluster(V1), Cluster(V2)),
            Decode<EndpointsResource>(XdsTypeUrls.ClusterLoadAssignment, Endpoints(V1, 10), Endpoints(V2, 20)),
            MeshSnapshot.Empty,
            incomplete);
        if (incomplete.Count > 0 || snapshot.Services.Length != 1 || snapshot.Services[0].Routes.Length != 10)
        {
            throw new InvalidOperationException($"The benchmark's snapshot did not build: {string.Join("; ", incomplete)}");
        }

        _router = new MeshRouter(new FixedSource(snapshot), new MeshHostNames("default", "cluster.local"));
        Expect(_fallThrough, "split");
        Expect(_firstRouteHeader, "beta-header");
        Expect(_regexRoute, "beta-path");
        Expect(_typedUserAgent, "split");
        Expect(_queryRoute, "api-v3");
    }

    /// <summary>Nine routes miss (headers, prefixes, a regex), the tenth splits 90/10: the worst case.</summary>
    [Benchmark(Baseline = true)]
    public object? TenthRoute_WeightedSplit() => Route(_fallThrough);

    [Benchmark]
    public object? FirstRoute_HeaderMatch() => Route(_firstRouteHeader);

    [Benchmark]
    public object? ThirdRoute_PathRegex() => Route(_regexRoute);

    /// <summary>The fourth route: a prefix and a query parameter (<c>?page=2&amp;version=v3</c>), read from spans of <c>Uri.Query</c>.</summary>
    [Benchmark]
    public object? FourthRoute_QueryParameter() => Route(_queryRoute);

    /// <summary>
    /// As the baseline, with the User-Agent set through the typed header (as <c>DefaultRequestHeaders.UserAgent</c>
    /// does): .NET keeps it parsed, and matching the route's user-agent condition costs the header's string.
    /// </summary>
    [Benchmark]
    public object? TenthRoute_TypedUserAgentHeader() => Route(_typedUserAgent);

    private object? Route(HttpRequestMessage request)
    {
        _router.Route(request, 0, null, out _, out _, out var endpoint);
        return endpoint;
    }

    private void Expect(HttpRequestMessage request, string route)
    {
        var service = _router.Snapshot.Services[0];
        var matched = MeshRouter.MatchRoute(service, request, request.RequestUri!);
        if (matched?.Name != route)
        {
            throw new InvalidOperationException($"{request.RequestUri} matched route '{matched?.Name}', not '{route}'.");
        }
    }

    private static Route Route(string name, RouteMatch match, string cluster, params HeaderMatcher[] headers)
    {
        match.Headers.Add(headers);
        return new Route { Name = name, Match = match, Route_ = new RouteAction { Cluster = cluster } };
    }

    private static HeaderMatcher Header(string name, StringMatcher match) => new() { Name = name, StringMatch = match };

    private static Cluster Cluster(string name) => new()
    {
        Name = name,
        Type = Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.DiscoveryType.Eds,
        EdsClusterConfig = new Cluster.Types.EdsClusterConfig { EdsConfig = new ConfigSource { Ads = new AggregatedConfigSource() }, ServiceName = name },
    };

    private static ClusterLoadAssignment Endpoints(string cluster, int firstOctet)
    {
        var locality = new LocalityLbEndpoints { Locality = new Locality { Region = "r1" }, LoadBalancingWeight = 1 };
        for (var i = 1; i <= 3; i++)
        {
            locality.LbEndpoints.Add(new LbEndpoint
            {
                Endpoint = new Endpoint { Address = new Address { SocketAddress = new SocketAddress { Address = $"10.{firstOctet}.0.{i}", PortValue = 8080 } } },
                HealthStatus = HealthStatus.Healthy,
            });
        }

        var assignment = new ClusterLoadAssignment { ClusterName = cluster };
        assignment.Endpoints.Add(locality);
        return assignment;
    }

    private static Dictionary<string, T> Decode<T>(string typeUrl, params IMessage[] resources)
    {
        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(typeUrl, resources.Select(Any.Pack), errors)
            ?? throw new InvalidOperationException($"The benchmark's {typeUrl} did not decode: {string.Join("; ", errors)}");
        return decoded.ToDictionary(p => p.Key, p => (T)p.Value, StringComparer.Ordinal);
    }

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
