using System.Collections.Immutable;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Xds;

namespace Mesh.Client.Tests.Routing;

public sealed class MeshRouterTests
{
    private const long Now = 1_000;

    [Theory]
    [InlineData("http://orders/")]
    [InlineData("http://ORDERS.default/x")]
    [InlineData("http://orders.default.svc.cluster.local/")]
    public void Route_HostAliases_RouteToTheService(string url)
    {
        var snapshot = TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(9000)]));

        var status = Route(snapshot, url, out var service, out var endpoint);

        Assert.Equal(RouteStatus.Routed, status);
        Assert.Equal("orders.default.svc.cluster.local", service!.Host);
        Assert.Equal(9000, endpoint!.Port);
    }

    [Fact]
    public void Route_ExplicitAndDefaultPort_PickTheMatchingServicePort()
    {
        var web = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(9080)]);
        var admin = TestSnapshots.Cluster("orders", 9090, [TestSnapshots.Endpoint(9090)]);
        var snapshot = new MeshSnapshot(
            "test",
            [.. TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 9090, admin)), .. TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, web))],
            [web, admin]);

        Assert.Equal(RouteStatus.Routed, Route(snapshot, "http://orders:9090/", out _, out var explicitPort));
        Assert.Equal(9090, explicitPort!.Port);
        Assert.Equal(RouteStatus.Routed, Route(snapshot, "http://orders/", out _, out var defaultPort));
        Assert.Equal(9080, defaultPort!.Port);
        Assert.Equal(RouteStatus.NotMeshHost, Route(snapshot, "http://orders:1234/", out _, out _));
    }

    [Fact]
    public void Route_OnlyPortIsNotTheSchemeDefault_DefaultPortRequestTakesIt()
    {
        var snapshot = TestSnapshots.Snapshot(("orders", 8080, [TestSnapshots.Endpoint(9000)]));

        Assert.Equal(RouteStatus.Routed, Route(snapshot, "http://orders/", out var service, out _));
        Assert.Equal(8080, service!.Port);
    }

    [Theory]
    [InlineData("http://example.com/")]
    [InlineData("http://127.0.0.1:5000/")]
    [InlineData("http://payments/")]
    public void Route_NotAMeshHost_IsLeftAlone(string url)
    {
        var snapshot = TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(9000)]));

        Assert.Equal(RouteStatus.NotMeshHost, Route(snapshot, url, out _, out _));
    }

    [Theory]
    [InlineData("http://orders/", true)]
    [InlineData("http://orders.default/", true)]
    [InlineData("http://orders.prod.svc.cluster.local/", true)]
    [InlineData("http://localhost:5000/", false)]
    [InlineData("http://example.com/", false)]
    [InlineData("http://10.0.0.1/", false)]
    public void Route_BeforeFirstSnapshot_FailsFastOnlyForMeshLookingNames(string url, bool notSynced)
    {
        Assert.Equal(notSynced ? RouteStatus.NotSynced : RouteStatus.NotMeshHost, Route(MeshSnapshot.Empty, url, out _, out _));
    }

    [Fact]
    public void Route_WeightedClusters_SplitsBySeededRandom()
    {
        var v1 = new MeshCluster("outbound|80|v1|orders", "orders", LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(9001)]);
        var v2 = new MeshCluster("outbound|80|v2|orders", "orders", LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(9002)]);
        var route = new MeshRoute("/", null, true, [new WeightedCluster(v1, 90), new WeightedCluster(v2, 10)]);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [v1, v2]);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names, new Random(1234).Next);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/");

        var toV2 = 0;
        for (var i = 0; i < 1000; i++)
        {
            router.Route(request, Now, null, out _, out var cluster, out _);
            toV2 += cluster == v2 ? 1 : 0;
        }

        Assert.InRange(toV2, 70, 130);
    }

    [Fact]
    public void Route_PathAndHeaderMatches_PickTheFirstMatchingRoute()
    {
        var api = TestSnapshots.Cluster("api", 80, [TestSnapshots.Endpoint(9001)]);
        var canary = TestSnapshots.Cluster("canary", 80, [TestSnapshots.Endpoint(9002)]);
        var health = TestSnapshots.Cluster("health", 80, [TestSnapshots.Endpoint(9003)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute(null, "/healthz", true, [new WeightedCluster(health, 1)]),
            new MeshRoute("/api", null, true, [new WeightedCluster(canary, 1)], [new HeaderMatch("x-canary", new StringMatch(StringMatchKind.Exact, "1", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/api", null, true, [new WeightedCluster(api, 1)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [api, canary, health]);

        Assert.Equal(9003, RoutePort(snapshot, "http://orders/healthz"));
        Assert.Equal(9001, RoutePort(snapshot, "http://orders/api/items"));
        Assert.Equal(9002, RoutePort(snapshot, "http://orders/api/items", ("x-canary", "1")));
        Assert.Equal(RouteStatus.NoRoute, Route(snapshot, "http://orders/other", out _, out _));
    }

    /// <summary>What the control plane sends for a VirtualService uri regex and method match.</summary>
    [Fact]
    public void Route_RegexPathAndMethodMatches_PickTheFirstMatchingRoute()
    {
        var regex = TestSnapshots.Cluster("regex", 80, [TestSnapshots.Endpoint(9004)]);
        var get = TestSnapshots.Cluster("get", 80, [TestSnapshots.Endpoint(9005)]);
        var rest = TestSnapshots.Cluster("rest", 80, [TestSnapshots.Endpoint(9006)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute(null, null, false, [new WeightedCluster(regex, 1)], pathRegex: StringMatch.SafeRegex("/v[0-9]+/orders", "p", [])),
            new MeshRoute("/", null, true, [new WeightedCluster(get, 1)], [new HeaderMatch(":method", new StringMatch(StringMatchKind.Exact, "GET", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(rest, 1)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [regex, get, rest]);

        int Port(HttpMethod method, string url)
        {
            using var request = new HttpRequestMessage(method, url);
            var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
            Assert.Equal(RouteStatus.Routed, router.Route(request, Now, null, out _, out _, out var endpoint));
            return endpoint!.Port;
        }

        Assert.Equal(9004, Port(HttpMethod.Post, "http://orders/v2/orders?x=1"));
        Assert.Equal(9005, Port(HttpMethod.Get, "http://orders/v2/orders/1"));
        Assert.Equal(9005, Port(HttpMethod.Get, "http://orders/V2/orders"));
        Assert.Equal(9006, Port(HttpMethod.Post, "http://orders/items"));
    }

    private static int RoutePort(MeshSnapshot snapshot, string url, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        Assert.Equal(RouteStatus.Routed, router.Route(request, Now, null, out _, out _, out var endpoint));
        return endpoint!.Port;
    }

    private static RouteStatus Route(MeshSnapshot snapshot, string url, out MeshService? service, out MeshEndpoint? endpoint)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        return router.Route(request, Now, null, out service, out _, out endpoint);
    }
}
