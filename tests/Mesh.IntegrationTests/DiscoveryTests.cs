using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests;

public sealed class DiscoveryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Frontend_CallsFlowThroughOrdersOverGrpcToBothInventoryInstances()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        await mesh.WaitForEndpointsAsync("inventory", 2);

        using var client = new HttpClient { BaseAddress = frontend.Address };
        var run = await LoadRun.RunAsync(client, "/", workers: 2, TimeSpan.FromSeconds(60), maxRequests: 200, marker: InventoryInstance);
        output.WriteLine($"frontend → orders → inventory: {run}; split {string.Join(", ", run.Markers)}");

        Assert.Empty(run.Failures);
        Assert.Equal(200, run.Succeeded);
        Assert.Equal(["inventory-1", "inventory-2"], run.Markers.Keys.Order());
        Assert.All(run.Markers.Values, count => Assert.InRange(count, 40, 160));
    }

    private static string? InventoryInstance(string body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("inventory").GetString();
    }
}
