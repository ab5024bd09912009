using System.Diagnostics;
using System.Globalization;
using Grpc.Net.Client;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Xunit.Abstractions;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>
/// Fault: every client reconnects at once after a control-plane restart. 200 clients (what a CI test affords on 2 cores;
/// the 1,000-client run belongs to the benchmark), each behaving as Mesh.Client (wildcard CDS and LDS, then every EDS and
/// RDS name), against 100 services × 5 endpoints.
/// </summary>
public sealed class ReconnectStormTests(ITestOutputHelper output)
{
    private const int Clients = 200;
    private const int Services = 100;
    private static readonly TimeSpan SyncBound = TimeSpan.FromSeconds(20);
    private const long HeapGrowthBound = 128L * 1024 * 1024;

    [Fact]
    public async Task Restart_200ClientsReconnectAtOnce_AllSyncedWithin20sHeapGrowthUnder128MB()
    {
        var root = Path.Combine(Path.GetTempPath(), "mesh-cp-storm-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "config"));
        try
        {
            await File.WriteAllTextAsync(Path.Combine(root, "config", "many.yaml"), SotwPushTests.ManyServices(Services, 5));
            var first = await StartAsync(root, port: 0);
            var address = first.XdsAddress!;
            var clients = await ConnectAllAsync(address);
            await first.DisposeAsync();
            foreach (var (channel, ads) in clients)
            {
                await ads.DisposeAsync();
                channel.Dispose();
            }

            GC.Collect();
            GC.WaitForPendingFinalizers();
            var heapBefore = GC.GetTotalMemory(forceFullCollection: true);

            // The same address, as a restarted control plane behind a Service; every client dials it at the same moment.
            await using var second = await StartAsync(root, address.Port);
            var watch = Stopwatch.StartNew();
            clients = await ConnectAllAsync(address);
            var elapsed = watch.Elapsed;
            var heapAfter = GC.GetTotalMemory(forceFullCollection: true);
            output.WriteLine($"{Clients} clients synced {Services} services in {elapsed.TotalSeconds:F1} s after the restart; managed heap {heapBefore / 1048576} MB -> {heapAfter / 1048576} MB");

            Assert.True(elapsed < SyncBound, $"{Clients} reconnecting clients took {elapsed.TotalSeconds:F1} s to sync; the bound is {SyncBound.TotalSeconds} s");
            Assert.True(heapAfter - heapBefore < HeapGrowthBound, $"the managed heap grew by {(heapAfter - heapBefore) / 1048576} MB with {Clients} synced clients (bound 128 MB)");
            foreach (var (channel, ads) in clients)
            {
                await ads.DisposeAsync();
                channel.Dispose();
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static Task<ControlPlaneHost> StartAsync(string root, int port) => ControlPlaneHost.StartAsync(
    [
        $"--ControlPlane:ConfigDirectory={Path.Combine(root, "config")}",
        $"--ControlPlane:StateDirectory={Path.Combine(root, "state")}",
        $"--ControlPlane:XdsAddress=http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}",
        "--ControlPlane:AdminAddress=http://127.0.0.1:0",
        "--ControlPlane:SecureAddress=https://127.0.0.1:0",
        "--ControlPlane:DebounceInterval=00:00:00.020",
        "--Logging:LogLevel:Default=Warning",
    ]);

    private static async Task<List<(GrpcChannel Channel, AdsTestClient Ads)>> ConnectAllAsync(Uri address)
    {
        var clients = Enumerable.Range(0, Clients).Select(i =>
        {
            var channel = GrpcChannel.ForAddress(address);
            return (channel, new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(channel).StreamAggregatedResources()));
        }).ToList();
        await Task.WhenAll(clients.Select((c, i) => SyncAsync(c.Item2, i)));
        return clients;
    }

    /// <summary>As Mesh.Client: wildcard CDS and LDS, then every EDS and RDS name they reference, each response ACKed.</summary>
    private static async Task SyncAsync(AdsTestClient ads, int index)
    {
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node($"sidecar~10.1.{index / 256}.{index % 256}~client-{index}.default~default.svc.cluster.local"));
        var cds = await NextAsync(ads, TypeUrls.Cluster);
        Assert.Equal(Services, cds.Resources.Count);
        await ads.AckAsync(cds, []);
        await ads.SendAsync(TypeUrls.Listener, []);
        var lds = await NextAsync(ads, TypeUrls.Listener);
        Assert.Equal(Services, lds.Resources.Count);
        await ads.AckAsync(lds, []);

        var names = Enumerable.Range(0, Services).Select(i => $"outbound|80||svc-{i.ToString(CultureInfo.InvariantCulture)}.default.svc.cluster.local").ToList();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, names);
        var eds = await NextAsync(ads, TypeUrls.ClusterLoadAssignment);
        Assert.Equal(Services, eds.Resources.Count);
        await ads.AckAsync(eds, names);
        await ads.SendAsync(TypeUrls.RouteConfiguration, names);
        var rds = await NextAsync(ads, TypeUrls.RouteConfiguration);
        Assert.Equal(Services, rds.Resources.Count);
        await ads.AckAsync(rds, names);
    }

    private static async Task<DiscoveryResponse> NextAsync(AdsTestClient ads, string typeUrl)
    {
        // Generous per response: 200 clients share 2 cores; the test's bound is the total.
        var response = await ads.NextAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(typeUrl, response.TypeUrl);
        return response;
    }
}
