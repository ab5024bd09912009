using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Microsoft.Extensions.DependencyInjection;
using static Mesh.ControlPlane.Tests.Support.AdsFixtures;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>Istio's Sidecar egress scoping over real ADS streams: what is out of scope is neither listed nor served by name, and a scope edit reaches connected clients.</summary>
public sealed class SidecarScopeAdsTests
{
    private const string PaymentsCluster = "outbound|50051||payments.default.svc.cluster.local";

    private static string Sidecar(string hosts, string? selector = null) => $$"""
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {name: default, namespace: default}
        spec:
        {{(selector is null ? string.Empty : $"  workloadSelector: {{labels: {selector}}}\n")}}  egress:
          - hosts: [{{hosts}}]
        """;

    [Fact]
    public async Task WildcardCds_OnlyInScopeClusters_AndAWidenedScopeIsPushed()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments), ("sidecar.yaml", Sidecar("\"./orders.default.svc.cluster.local\"")));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var scoped = await ads.NextAsync();
        var names = scoped.Resources.Select(r => r.Unpack<Cluster>().Name).ToList();
        Assert.Contains(Cluster80, names);
        Assert.DoesNotContain(names, n => n.EndsWith("|payments.default.svc.cluster.local", StringComparison.Ordinal));
        await ads.AckAsync(scoped, []);

        // No resource changes, only the scope: the client still gets the new set.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "sidecar.yaml"), Sidecar("\"./*\""));
        var widened = await ads.NextAsync();
        Assert.Equal(TypeUrls.Cluster, widened.TypeUrl);
        Assert.Contains(PaymentsCluster, widened.Resources.Select(r => r.Unpack<Cluster>().Name));
    }

    [Fact]
    public async Task ByName_OutOfScopeListenerClusterAndAssignment_NotServedAsIfTheyDidNotExist()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments), ("sidecar.yaml", Sidecar("\"./orders.default.svc.cluster.local\"")));
        await using var ads = cp.OpenAds();

        // Every spelling of the out-of-scope service, next to one in scope.
        await ads.SendAsync(TypeUrls.Listener, ["payments:50051", "payments.default:50051", "payments.default.svc.cluster.local:50051", "orders:80"], AdsTestClient.Node());
        var listeners = await ads.NextAsync();
        Assert.Equal(["orders:80"], listeners.Resources.Select(r => r.Unpack<Listener>().Name));
        await ads.AckAsync(listeners, ["payments:50051", "payments.default:50051", "payments.default.svc.cluster.local:50051", "orders:80"]);

        await ads.SendAsync(TypeUrls.Cluster, [PaymentsCluster, Cluster80]);
        var clusters = await ads.NextAsync();
        Assert.Equal([Cluster80], clusters.Resources.Select(r => r.Unpack<Cluster>().Name));
        await ads.AckAsync(clusters, [PaymentsCluster, Cluster80]);

        // EDS/RDS by name: nothing for the out-of-scope name (a SotW request adding only absent names gets no response,
        // so the in-scope one is asked for with it and must come back alone).
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [PaymentsCluster, Cluster80]);
        var endpoints = await ads.NextAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, endpoints.TypeUrl);
        Assert.Equal([Cluster80], endpoints.Resources.Select(r => r.Unpack<Mesh.Xds.Envoy.Config.Endpoint.V3.ClusterLoadAssignment>().ClusterName));
    }

    [Fact]
    public async Task PlaintextClientAskingForEveryInboundListener_NoneServedNoneBuilt()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();
        string[] names = ["xds.istio.io/grpc/lds/inbound/127.0.0.1:5001", "xds.istio.io/grpc/lds/inbound/127.0.0.2:50051", "orders:80"];
        await ads.SendAsync(TypeUrls.Listener, names, AdsTestClient.Node());
        var listeners = await ads.NextAsync();

        Assert.Equal(["orders:80"], listeners.Resources.Select(r => r.Unpack<Listener>().Name));
        Assert.Equal(0, cp.Host.Services.GetRequiredService<XdsPublisher>().Current.InboundListeners.BuiltCount);
    }

    [Fact]
    public async Task WorkloadSelector_OnlyClientsClaimingTheLabelsAreScoped()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments), ("sidecar.yaml", Sidecar("\"./orders.default.svc.cluster.local\"", selector: "{app: web}")));
        await using var web = cp.OpenAds();
        var node = AdsTestClient.Node();
        node.Metadata = new Google.Protobuf.WellKnownTypes.Struct();
        var labels = new Google.Protobuf.WellKnownTypes.Struct();
        labels.Fields["app"] = Google.Protobuf.WellKnownTypes.Value.ForString("web");
        node.Metadata.Fields["LABELS"] = Google.Protobuf.WellKnownTypes.Value.ForStruct(labels);
        await web.SendAsync(TypeUrls.Cluster, [], node);
        Assert.DoesNotContain(PaymentsCluster, (await web.NextAsync()).Resources.Select(r => r.Unpack<Cluster>().Name));

        await using var other = cp.OpenAds();
        await other.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node("sidecar~10.0.0.8~client-2.default~default.svc.cluster.local"));
        Assert.Contains(PaymentsCluster, (await other.NextAsync()).Resources.Select(r => r.Unpack<Cluster>().Name));
    }
}
