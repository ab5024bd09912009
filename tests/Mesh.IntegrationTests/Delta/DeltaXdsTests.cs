using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests.Delta;

/// <summary>
/// Delta ADS (<c>Mesh:ControlPlane:Protocol=Delta</c>) between real processes over the secure port (mTLS to the control
/// plane, SVIDs, inbound listeners by name): the demo's frontend → orders (HTTP) → inventory (gRPC) chain.
/// </summary>
public sealed class DeltaXdsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task DemoChain_EveryWorkloadOnDelta_WildcardAndOnDemand_CallsFlowEndToEnd()
    {
        var wildcard = new Dictionary<string, string?> { ["Mesh__ControlPlane__Protocol"] = "Delta" };
        var onDemand = new Dictionary<string, string?> { ["Mesh__ControlPlane__Protocol"] = "Delta", ["Mesh__ControlPlane__Subscriptions"] = "OnDemand" };
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", wildcard);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", onDemand);
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1", wildcard);
        await mesh.WaitForEndpointsAsync("inventory", 1);

        using var client = new HttpClient { BaseAddress = frontend.Address };
        var run = await LoadRun.RunAsync(client, "/", workers: 2, TimeSpan.FromSeconds(60), maxRequests: 40, marker: InventoryInstance);
        output.WriteLine($"frontend → orders → inventory, delta: {run}");

        Assert.Empty(run.Failures);
        Assert.Equal(40, run.Succeeded);
        Assert.Equal(["inventory-1"], run.Markers.Keys);

        // Every workload's stream was a delta one (a client that fell back to state-of-the-world would pass the calls too).
        var log = mesh.ControlPlane.Process.Output;
        foreach (var service in new[] { "inventory", "orders", "frontend" })
        {
            Assert.Matches($@"ADS client [^\n]*~{service}-[^\n]* connected from [^\n]*, delta stream\)", log);
            Assert.DoesNotMatch($@"ADS client [^\n]*~{service}-[^\n]* connected from [^\n]*, sotw stream\)", log);
        }

        // Each subscribed its own inbound listeners by name next to "*" (or its on-demand hosts), and NACKed nothing.
        using var admin = new HttpClient();
        using var clients = JsonDocument.Parse(await admin.GetStringAsync(new Uri(mesh.ControlPlane.AdminAddress, "/debug/clients")));
        foreach (var service in new[] { "inventory", "orders", "frontend" })
        {
            var stream = Assert.Single(clients.RootElement.EnumerateArray(), c => c.GetProperty("id").GetString()!.Contains($"~{service}-", StringComparison.Ordinal));
            var listeners = stream.GetProperty("subscriptions").GetProperty("type.googleapis.com/envoy.config.listener.v3.Listener").EnumerateArray().Select(n => n.GetString()!).ToList();
            output.WriteLine($"{service}: LDS {string.Join(", ", listeners)}");
            Assert.Contains(listeners, n => n.StartsWith("xds.istio.io/grpc/lds/inbound/", StringComparison.Ordinal));
            Assert.Equal(service != "orders", listeners.Contains("*"));
            Assert.Empty(stream.GetProperty("nacks").EnumerateArray());
        }
    }

    private static string? InventoryInstance(string body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("inventory").GetString();
    }
}
