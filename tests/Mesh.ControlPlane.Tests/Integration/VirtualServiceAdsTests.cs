using System.Net.Http.Json;
using System.Text.Json;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>A VirtualService canary and DestinationRule subsets served over a real ADS stream, and a bad edit that must not reach it.</summary>
public class VirtualServiceAdsTests
{
    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: orders}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-1}
        spec: {address: 127.0.0.1, ports: {http: 5001}, labels: {app: orders, version: v1}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-2}
        spec: {address: 127.0.0.1, ports: {http: 5002}, labels: {app: orders, version: v2}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          trafficPolicy: {tls: {mode: DISABLE}}
          subsets:
          - {name: v1, labels: {version: v1}}
          - {name: v2, labels: {version: v2}}
        """;

    private const string Canary = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - route:
            - destination: {host: orders, subset: v1}
              weight: 90
            - destination: {host: orders, subset: v2}
              weight: 10
        """;

    [Fact]
    public async Task ConfigFolder_CanaryThenBadEditThenShift_ServesSubsetsAndNeverTheBadEdit()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("vs.yaml", Canary));
        await using var ads = cp.OpenAds();

        await ads.SendAsync(TypeUrls.RouteConfiguration, [Cluster80], AdsTestClient.Node());
        var rds = await ads.NextAsync();
        Assert.Equal([(V1, 90u), (V2, 10u)], Weights(rds));
        await ads.AckAsync(rds, [Cluster80]);

        await ads.SendAsync(TypeUrls.Cluster, [V1, V2]);
        var cds = await ads.NextAsync();
        Assert.Equal([V1, V2], cds.Resources.Select(r => r.Unpack<Cluster>().Name).Order(StringComparer.Ordinal).ToArray());
        await ads.AckAsync(cds, [V1, V2]);

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [V2]);
        var eds = await ads.NextAsync();
        var cla = Assert.Single(eds.Resources).Unpack<ClusterLoadAssignment>();
        Assert.Equal(V2, cla.ClusterName);
        Assert.Equal(5002u, Assert.Single(Assert.Single(cla.Endpoints).LbEndpoints).Endpoint.Address.SocketAddress.PortValue);
        await ads.AckAsync(eds, [V2]);

        var vsFile = Path.Combine(cp.ConfigDirectory, "vs.yaml");
        await File.WriteAllTextAsync(vsFile, Canary.Replace("weight: 10", "weight: -10", StringComparison.Ordinal));
        var error = await PollConfigErrorAsync(cp);
        Assert.Equal("vs.yaml", error.GetProperty("file").GetString());
        Assert.Equal(11, error.GetProperty("line").GetInt32());
        Assert.Contains("spec.http[0].route[1].weight: weight -10 < 0", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // The next RDS the client sees is the good edit: the rejected one was never pushed.
        await File.WriteAllTextAsync(vsFile, Canary.Replace("weight: 90", "weight: 0", StringComparison.Ordinal).Replace("weight: 10", "weight: 100", StringComparison.Ordinal));
        var shifted = await ads.NextAsync();
        while (shifted.TypeUrl != TypeUrls.RouteConfiguration)
        {
            // Unchanged clusters or endpoints may be re-sent with the new version; only the routes matter here.
            shifted = await ads.NextAsync();
        }

        Assert.Equal([(V2, 100u)], Weights(shifted));
    }

    [Theory]
    [InlineData("grpc-node-js", 2u)]
    [InlineData("envoy", 2u)]
    [InlineData("mesh-dotnet", null)]
    public async Task Rds_RouteWithoutRetries_StandardClientsGetIstiosDefaultPolicyMeshClientsNone(string userAgent, uint? expectedRetries)
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("vs.yaml", Canary));
        await using var ads = cp.OpenAds();
        var node = AdsTestClient.Node();
        node.UserAgentName = userAgent;
        node.Metadata = new Google.Protobuf.WellKnownTypes.Struct { Fields = { ["GENERATOR"] = Google.Protobuf.WellKnownTypes.Value.ForString("grpc") } };

        await ads.SendAsync(TypeUrls.RouteConfiguration, [Cluster80], node);
        var rds = await ads.NextAsync();

        var route = Assert.Single(Assert.Single(Assert.Single(rds.Resources).Unpack<RouteConfiguration>().VirtualHosts).Routes);
        Assert.Equal(expectedRetries, route.Route_.RetryPolicy?.NumRetries);
        Assert.Equal([(V1, 90u), (V2, 10u)], Weights(rds));
    }

    private static (string, uint)[] Weights(Mesh.Xds.Envoy.Service.Discovery.V3.DiscoveryResponse response)
    {
        var route = Assert.Single(Assert.Single(Assert.Single(response.Resources).Unpack<RouteConfiguration>().VirtualHosts).Routes);
        return [.. route.Route_.WeightedClusters.Clusters.Select(c => (c.Name, c.Weight!.Value))];
    }

    private static async Task<JsonElement> PollConfigErrorAsync(ControlPlaneFixture cp)
    {
        JsonElement errors = default;
        await Poll.UntilAsync(
            async () =>
            {
                var dump = await cp.Admin.GetFromJsonAsync<JsonElement>(new Uri("/debug/config_dump", UriKind.Relative));
                errors = dump.GetProperty("configErrors");
                return errors.GetArrayLength() > 0;
            },
            "the bad edit was never reported",
            AdsTestClient.Timeout);
        return errors[0];
    }
}
