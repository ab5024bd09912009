using System.Globalization;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.ControlPlane.Tests.Support.AdsFixtures;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>State-of-the-world pushes proportional to the change, over real gRPC against a real control plane.</summary>
public sealed class SotwPushTests
{
    private const string PaymentsCluster = "outbound|50051||payments.default.svc.cluster.local";

    [Fact]
    public async Task Register_OneEndpointChange_OneClaToTheSubscribedClientNothingToOthersNoCds()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var both = cp.OpenAds();
        await using var paymentsOnly = cp.OpenAds();
        await SyncAsync(both, [Cluster80, PaymentsCluster]);
        await SyncAsync(paymentsOnly, [PaymentsCluster]);

        await RegisterOrdersAsync(cp, 5002);

        // CDS is pushed before EDS: a CDS response for this endpoint change would come first.
        var pushed = await both.NextAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, pushed.TypeUrl);
        var cla = Assert.Single(pushed.Resources).Unpack<ClusterLoadAssignment>();
        Assert.Equal(Cluster80, cla.ClusterName);
        Assert.Equal(2, cla.Endpoints.SelectMany(l => l.LbEndpoints).Count());
        await both.AckAsync(pushed, [Cluster80, PaymentsCluster]);

        // The other client's wake-up was queued before this request: had it caused a response, that would come first.
        await paymentsOnly.SendAsync(TypeUrls.RouteConfiguration, [PaymentsCluster]);
        var next = await paymentsOnly.NextAsync();
        Assert.Equal(TypeUrls.RouteConfiguration, next.TypeUrl);
        Assert.Equal(pushed.VersionInfo, next.VersionInfo);
    }

    [Fact]
    public async Task Subscribe_NameAddedAgainUnchanged_IsResentAndOnlyIt()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], AdsTestClient.Node());
        var first = await ads.NextAsync();
        await ads.AckAsync(first, [Cluster80]);

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, PaymentsCluster], nonce: first.Nonce, version: first.VersionInfo);
        var added = await ads.NextAsync();
        Assert.Equal(PaymentsCluster, Assert.Single(added.Resources).Unpack<ClusterLoadAssignment>().ClusterName);
        await ads.AckAsync(added, [Cluster80, PaymentsCluster]);

        // Unsubscribing answers nothing (the CDS request behind it answers first); subscribing again resends it unchanged.
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [PaymentsCluster], nonce: added.Nonce, version: added.VersionInfo);
        await ads.SendAsync(TypeUrls.Cluster, [Cluster80]);
        Assert.Equal(TypeUrls.Cluster, (await ads.NextAsync()).TypeUrl);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [PaymentsCluster, Cluster80], nonce: added.Nonce, version: added.VersionInfo);
        var again = await ads.NextAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, again.TypeUrl);
        Assert.Equal(Cluster80, Assert.Single(again.Resources).Unpack<ClusterLoadAssignment>().ClusterName);
        Assert.Equal(first.Resources[0], again.Resources[0]);
    }

    [Fact]
    public async Task WildcardCds_ClusterRemovedThenAdded_FullSetEachTime()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var initial = await ads.NextAsync();
        Assert.Equal(2, initial.Resources.Count);
        await ads.AckAsync(initial, []);

        File.Delete(Path.Combine(cp.ConfigDirectory, "payments.yaml"));
        var removed = await ads.NextAsync();
        Assert.Equal(TypeUrls.Cluster, removed.TypeUrl);
        Assert.Equal([Cluster80], removed.Resources.Select(r => r.Unpack<Cluster>().Name));
        await ads.AckAsync(removed, []);

        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "payments.yaml"), Payments);
        var added = await ads.NextAsync();
        Assert.Equal([PaymentsCluster, Cluster80], added.Resources.Select(r => r.Unpack<Cluster>().Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task ClientStopsReading_WriteTimesOutStreamClosedWithWarningAndMetric_OthersStillPushed()
    {
        var logs = new LogSink();
        var root = Path.Combine(Path.GetTempPath(), "mesh-cp-bp-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "config"));
        try
        {
            // 400 services × 20 endpoints: one EDS response of ~250 kB, far beyond HTTP/2's 64 kB stream window.
            await File.WriteAllTextAsync(Path.Combine(root, "config", "many.yaml"), ManyServices(400, 20));
            await File.WriteAllTextAsync(Path.Combine(root, "config", "orders.yaml"), Orders);
            await using var host = await ControlPlaneHost.StartAsync(
            [
                $"--ControlPlane:ConfigDirectory={Path.Combine(root, "config")}",
                $"--ControlPlane:StateDirectory={Path.Combine(root, "state")}",
                "--ControlPlane:XdsAddress=http://127.0.0.1:0",
                "--ControlPlane:PlaintextRegistration=true",
                "--ControlPlane:AdminAddress=http://127.0.0.1:0",
                "--ControlPlane:SecureAddress=https://127.0.0.1:0",
                "--ControlPlane:DebounceInterval=00:00:00.020",
                "--ControlPlane:AdsWriteTimeout=00:00:03",
                "--Logging:LogLevel:Default=Warning",
            ],
            services => services.AddSingleton<ILoggerProvider>(logs));
            using var admin = new HttpClient { BaseAddress = host.AdminAddress };

            // Its own connection, as another process would have: the stuck stream fills its stream and connection windows.
            using var stuckChannel = GrpcChannel.ForAddress(host.XdsAddress!);
            using var stuck = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(stuckChannel).StreamAggregatedResources();
            var names = Enumerable.Range(0, 400).Select(i => $"outbound|80||svc-{i.ToString(CultureInfo.InvariantCulture)}.default.svc.cluster.local").ToList();
            var request = new DiscoveryRequest { TypeUrl = TypeUrls.ClusterLoadAssignment, Node = AdsTestClient.Node("stuck-client") };
            request.ResourceNames.AddRange(names);
            await stuck.RequestStream.WriteAsync(request);

            using var healthyChannel = GrpcChannel.ForAddress(host.XdsAddress!);
            await using var healthy = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(healthyChannel).StreamAggregatedResources());
            await healthy.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], AdsTestClient.Node());
            await healthy.AckAsync(await healthy.NextAsync(), [Cluster80]);

            // While the stuck stream's write is blocked, a change still reaches the healthy client.
            var registry = new WorkloadRegistry.WorkloadRegistryClient(healthyChannel);
            await registry.RegisterAsync(new RegisterRequest { Workload = new Mesh.Xds.Registry.V1.WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } });
            var pushed = await healthy.NextAsync();
            Assert.Equal(2, Assert.Single(pushed.Resources).Unpack<ClusterLoadAssignment>().Endpoints.SelectMany(l => l.LbEndpoints).Count());
            Assert.DoesNotContain(logs.Lines, l => l.Contains("AdsWriteTimeout", StringComparison.Ordinal));

            await Poll.UntilAsync(() => logs.Lines.Any(l => l.Contains("stuck-client", StringComparison.Ordinal) && l.Contains("ControlPlane:AdsWriteTimeout", StringComparison.Ordinal)), "no write-timeout warning for the client that stopped reading");
            var warning = logs.Lines.First(l => l.Contains("stuck-client", StringComparison.Ordinal) && l.Contains("ControlPlane:AdsWriteTimeout", StringComparison.Ordinal));
            Assert.StartsWith("Warning ", warning, StringComparison.Ordinal);
            Assert.Contains("within 00:00:03 (ControlPlane:AdsWriteTimeout)", warning, StringComparison.Ordinal);
            await Poll.UntilAsync(async () => (await PrometheusText.ScrapeAsync(admin)).Count("pilot_xds_write_timeout", ("type", "eds")) == 1, "pilot_xds_write_timeout{type=eds} is not 1");
            await Poll.UntilAsync(async () => !(await admin.GetStringAsync(new Uri("/debug/config_dump", UriKind.Relative))).Contains("stuck-client", StringComparison.Ordinal), "the stuck stream is still listed");

            // The healthy stream lives on.
            await registry.RegisterAsync(new RegisterRequest { Workload = new Mesh.Xds.Registry.V1.WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5003 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } });
            await healthy.AckAsync(pushed, [Cluster80]);
            var later = await healthy.NextAsync();
            Assert.Equal(3, Assert.Single(later.Resources).Unpack<ClusterLoadAssignment>().Endpoints.SelectMany(l => l.LbEndpoints).Count());
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>
    /// <paramref name="services"/> ServiceEntries selecting <paramref name="endpoints"/> WorkloadEntries each (with a
    /// serviceAccount, as real workloads have), as the benchmark's generated config.
    /// </summary>
    internal static string ManyServices(int services, int endpoints)
    {
        var yaml = new StringBuilder();
        for (var i = 0; i < services; i++)
        {
            var name = "svc-" + i.ToString(CultureInfo.InvariantCulture);
            yaml.Append(CultureInfo.InvariantCulture, $"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}]\n  ports:\n  - number: 80\n    name: http\n    protocol: HTTP\n  workloadSelector:\n    labels: {{app: {name}}}\n---\n");
            for (var e = 0; e < endpoints; e++)
            {
                yaml.Append(CultureInfo.InvariantCulture, $"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}-{e}\nspec:\n  address: 10.{(i >> 8) & 255}.{i & 255}.{e + 1}\n  ports: {{http: 8080}}\n  labels: {{app: {name}}}\n  serviceAccount: {name}\n---\n");
            }
        }

        return yaml.ToString();
    }

    private static async Task SyncAsync(AdsTestClient ads, string[] eds)
    {
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var cds = await ads.NextAsync();
        await ads.AckAsync(cds, []);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, eds);
        var response = await ads.NextAsync();
        Assert.Equal(eds.Length, response.Resources.Count);
        await ads.AckAsync(response, eds);
    }

    private static async Task RegisterOrdersAsync(ControlPlaneFixture cp, uint port)
    {
        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        await registry.RegisterAsync(new RegisterRequest { Workload = new Mesh.Xds.Registry.V1.WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = port }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } });
    }
}
