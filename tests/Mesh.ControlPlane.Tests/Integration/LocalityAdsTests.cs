using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>Per-client EDS over real ADS streams: each node locality gets its own priorities, the same locality the same bytes.</summary>
public class LocalityAdsTests
{
    private const string Cluster = "outbound|80||orders.default.svc.cluster.local";
    private const string Config = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          endpoints:
          - {address: 127.0.0.1, ports: {http: 5001}, locality: us-east/zone-a}
          - {address: 127.0.0.2, ports: {http: 5001}, locality: us-east/zone-b}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          trafficPolicy:
            outlierDetection: {consecutive5xxErrors: 3}
        """;

    private static Node NodeIn(string zone) =>
        new() { Id = $"sidecar~10.0.0.9~client-{zone}.default~default.svc.cluster.local", Locality = new Locality { Region = "us-east", Zone = zone } };

    private static async Task<ClusterLoadAssignment> EdsAsync(AdsTestClient ads, Node node)
    {
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster], node);
        return Assert.Single((await ads.NextAsync()).Resources).Unpack<ClusterLoadAssignment>();
    }

    private static uint PriorityOf(ClusterLoadAssignment cla, string address) =>
        cla.Endpoints.Single(l => l.LbEndpoints.Any(e => e.Endpoint.Address.SocketAddress.Address == address)).Priority;

    [Fact]
    public async Task Eds_ClientsInDifferentZones_EachGetTheirOwnZoneAtPriorityZero()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Config));
        await using var zoneA = cp.OpenAds();
        await using var zoneB = cp.OpenAds();
        await using var zoneAAgain = cp.OpenAds();
        await using var nowhere = cp.OpenAds();

        var a = await EdsAsync(zoneA, NodeIn("zone-a"));
        var b = await EdsAsync(zoneB, NodeIn("zone-b"));
        var again = await EdsAsync(zoneAAgain, NodeIn("zone-a"));
        var none = await EdsAsync(nowhere, AdsTestClient.Node());

        Assert.Equal((0u, 1u), (PriorityOf(a, "127.0.0.1"), PriorityOf(a, "127.0.0.2")));
        Assert.Equal((1u, 0u), (PriorityOf(b, "127.0.0.1"), PriorityOf(b, "127.0.0.2")));
        Assert.Equal(a, again);
        Assert.All(none.Endpoints, l => Assert.Equal(0u, l.Priority));
    }
}
