using Grpc.Core;
using Grpc.Net.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.IntegrationTests.Interop;
using Mesh.Samples.Inventory.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// A VirtualService (x-beta: 1 → v2, else 90/10 v1/v2) and DestinationRule subsets from the control plane's YAML folder,
/// applied per gRPC call by an <c>xds:///</c> channel, an <c>AddGrpcClient(http://inventory)</c> client and Node's
/// grpc-js-xds, against two real inventory processes under STRICT mTLS.
/// </summary>
public sealed class GrpcRoutingTests(ITestOutputHelper output)
{
    private const int Calls = 2000;
    private const int HeaderCalls = 200;

    [Fact]
    public async Task XdsChannelAndGrpcClientFactory_Canary9010AndHeaderRoute_PerCall()
    {
        await using var mesh = await StartCanaryMeshAsync(plaintextXds: false);
        using var host = await StartClientAsync(mesh);
        using var channel = host.Services.CreateMeshGrpcChannel("xds:///inventory");
        var clients = new (string Name, Inventory.InventoryClient Client)[]
        {
            ("xds:///inventory channel", new Inventory.InventoryClient(channel)),
            ("AddGrpcClient(http://inventory)", host.Services.GetRequiredService<Inventory.InventoryClient>()),
        };

        foreach (var (name, client) in clients)
        {
            await Eventually.HoldsAsync(async () => await CallAsync(client, beta: true) == "inventory-2", $"the {name} to see the VirtualService's header route");
            var split = await CountAsync(client, Calls, beta: false);
            var header = await CountAsync(client, HeaderCalls, beta: true);
            var v2Share = split.GetValueOrDefault("inventory-2") / (double)Calls;
            var misroutes = HeaderCalls - header.GetValueOrDefault("inventory-2");
            output.WriteLine($"{name}: 90/10 over {Calls}: {Describe(split)} (v2 {v2Share:P1}); x-beta: 1 → {Describe(header)}");
            Console.WriteLine($"[canary-grpc] {name}: 90/10 over {Calls} calls: v2 {v2Share:P1}; header route misroutes {misroutes}/{HeaderCalls}");

            Assert.Equal(Calls, split.GetValueOrDefault("inventory-1") + split.GetValueOrDefault("inventory-2"));
            Assert.InRange(v2Share, 0.07, 0.13);
            Assert.Equal(0, misroutes);
        }
    }

    [Fact]
    public async Task GrpcJsXdsClient_Canary9010AndHeaderRoute_OverMtls_NothingNacked()
    {
        await using var mesh = await StartCanaryMeshAsync(plaintextXds: true);

        // A .NET client proves the control plane serves the VirtualService before Node starts.
        using (var host = await StartClientAsync(mesh))
        {
            var probe = host.Services.GetRequiredService<Inventory.InventoryClient>();
            await Eventually.HoldsAsync(async () => await CallAsync(probe, beta: true) == "inventory-2", "the control plane to serve the VirtualService");
        }

        var split = await RunNodeAsync(mesh, metadata: null, Calls);
        var header = await RunNodeAsync(mesh, metadata: "x-beta=1", HeaderCalls);

        var v2 = split.Count(c => c.instance == "inventory-2");
        var v2Share = v2 / (double)Calls;
        var misroutes = header.Count(c => c.instance != "inventory-2");
        output.WriteLine($"grpc-js-xds: 90/10 over {Calls}: v1={split.Count(c => c.instance == "inventory-1")}, v2={v2} (v2 {v2Share:P1}); x-beta: 1 → misroutes {misroutes}/{HeaderCalls}");
        Console.WriteLine($"[canary-grpc] grpc-js-xds: 90/10 over {Calls} calls: v2 {v2Share:P1}; header route misroutes {misroutes}/{HeaderCalls}");

        Assert.All(split.Concat(header), c => Assert.Null(c.error));
        Assert.All(split.Concat(header), c => Assert.Equal("spiffe://cluster.local/ns/default/sa/node-client", c.caller));
        Assert.InRange(v2Share, 0.07, 0.13);
        Assert.Equal(0, misroutes);
    }

    private async Task<NodeCall[]> RunNodeAsync(LocalMesh mesh, string? metadata, int calls)
    {
        // It runs on until disposed (bounded by its own MAX_SECONDS), so its ADS stream is still open for the config dump.
        var node = await NodeXdsClient.StartAsync(mesh.ControlPlane, mesh.StateDirectory, xdsCredentials: true, metadata, maxCalls: 20 * calls, intervalMs: 0);
        await using (node)
        {
            try
            {
                await Eventually.HoldsAsync(() => Task.FromResult(node.Calls.Count >= calls), $"{calls} calls from the Node client", TimeSpan.FromSeconds(120));

                // What the control plane sent (LEAST_REQUEST clusters, weighted clusters, the default retry policy) was
                // accepted whole: the Node client ACKed every type and NACKed nothing.
                using var dump = await mesh.ConfigDumpAsync();
                var client = dump.RootElement.GetProperty("clients").EnumerateArray()
                    .Single(c => c.GetProperty("id").GetString()!.Contains("node-client", StringComparison.Ordinal));
                output.WriteLine($"node client acked: {client.GetProperty("acked")}; nacks: {client.GetProperty("nacks")}");
                Assert.Equal(0, client.GetProperty("nacks").GetArrayLength());
                Assert.True(client.GetProperty("acked").TryGetProperty("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", out _), "the Node client never ACKed a RouteConfiguration");
            }
            finally
            {
                output.WriteLine(node.Errors);
            }

            return [.. node.Calls.Take(calls)];
        }
    }

    private async Task<LocalMesh> StartCanaryMeshAsync(bool plaintextXds)
    {
        var mesh = await LocalMesh.StartAsync(output, plaintextXds: plaintextXds);
        try
        {
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "canary.yaml"), """
                apiVersion: security.istio.io/v1
                kind: PeerAuthentication
                metadata: {name: default, namespace: istio-system}
                spec:
                  mtls: {mode: STRICT}
                ---
                apiVersion: networking.istio.io/v1
                kind: DestinationRule
                metadata: {name: inventory}
                spec:
                  host: inventory
                  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
                  subsets:
                  - {name: v1, labels: {version: v1}}
                  - {name: v2, labels: {version: v2}}
                ---
                apiVersion: networking.istio.io/v1
                kind: VirtualService
                metadata: {name: inventory}
                spec:
                  hosts: [inventory]
                  http:
                  - name: beta
                    match:
                    - headers: {x-beta: {exact: "1"}}
                    route:
                    - destination: {host: inventory, subset: v2}
                  - name: split
                    route:
                    - destination: {host: inventory, subset: v1}
                      weight: 90
                    - destination: {host: inventory, subset: v2}
                      weight: 10
                """);
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", new Dictionary<string, string?> { ["Mesh__Labels__version"] = "v1" });
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2", new Dictionary<string, string?> { ["Mesh__Labels__version"] = "v2" });
            await mesh.WaitForEndpointsAsync("inventory", 2);
            return mesh;
        }
        catch
        {
            await mesh.DisposeAsync();
            throw;
        }
    }

    private static async Task<IHost> StartClientAsync(LocalMesh mesh)
    {
        var host = await mesh.CreateClientHostAsync(configureHost: builder =>
            builder.Services.AddGrpcClient<Inventory.InventoryClient>(o => o.Address = new Uri("http://inventory"))
                .ConfigureChannel(o => o.Credentials = ChannelCredentials.Insecure));
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        return host;
    }

    private static async Task<string> CallAsync(Inventory.InventoryClient client, bool beta)
    {
        var headers = beta ? new Metadata { { "x-beta", "1" } } : null;
        var reply = await client.ReserveAsync(new ReserveRequest { Sku = "canary", Quantity = 1 }, headers, DateTime.UtcNow.AddSeconds(10));
        return reply.Instance;
    }

    private static async Task<Dictionary<string, int>> CountAsync(Inventory.InventoryClient client, int count, bool beta)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var instance = await CallAsync(client, beta);
            counts[instance] = counts.GetValueOrDefault(instance) + 1;
        }

        return counts;
    }

    private static string Describe(Dictionary<string, int> counts) => string.Join(", ", counts.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
}
