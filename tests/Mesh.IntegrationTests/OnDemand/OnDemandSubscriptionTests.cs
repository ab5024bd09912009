using System.Diagnostics;
using System.Text.Json;
using Mesh.Client;
using Mesh.Client.Http;
using Mesh.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.OnDemand;

/// <summary>
/// On-demand subscriptions between real processes over the secure port (mTLS to the control plane, SVIDs): the demo's
/// frontend → orders (HTTP) → inventory (gRPC) chain, with every workload subscribing only to what it calls.
/// </summary>
public sealed class OnDemandSubscriptionTests(ITestOutputHelper output)
{
    private static readonly Dictionary<string, string?> OnDemand = new() { ["Mesh__ControlPlane__Subscriptions"] = "OnDemand" };

    [Fact]
    public async Task DemoChain_EveryWorkloadOnDemand_CallsFlowEndToEnd()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", OnDemand);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", OnDemand);
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1", OnDemand);
        await mesh.WaitForEndpointsAsync("inventory", 1);

        using var client = new HttpClient { BaseAddress = frontend.Address };
        var run = await LoadRun.RunAsync(client, "/", workers: 2, TimeSpan.FromSeconds(60), maxRequests: 40, marker: InventoryInstance);
        output.WriteLine($"frontend → orders → inventory, on demand: {run}");

        Assert.Empty(run.Failures);
        Assert.Equal(40, run.Succeeded);
        Assert.Equal(["inventory-1"], run.Markers.Keys);
    }

    [Fact]
    public async Task ClientOnDemand_ServiceDoesNotExist_FailsFastWithTheUnknownServiceError_ThenARealOneWorks()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        await mesh.WaitForEndpointsAsync("orders", 1);
        using var host = await mesh.CreateClientHostAsync(options =>
        {
            options.ControlPlane.Subscriptions = ControlPlaneSubscriptions.OnDemand;
            options.ControlPlane.SubscriptionTimeout = TimeSpan.FromSeconds(30);
        });
        await host.StartAsync();
        using var meshOnly = new HttpClient(host.Services.GetRequiredService<IMeshOutboundHandlerFactory>().CreateHandler());

        var watch = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => meshOnly.GetStringAsync(new Uri("http://no-such-service/")));
        output.WriteLine($"unknown service after {watch.Elapsed}: {error.Message}");

        Assert.Contains("Mesh service 'no-such-service' is unknown to the control plane", error.Message, StringComparison.Ordinal);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"took {watch.Elapsed}");

        // The same client reaches a real service over mTLS (its first call subscribes and waits).
        var stats = await meshOnly.GetStringAsync(new Uri("http://orders/_stats"));
        output.WriteLine($"orders /_stats: {stats}");
        using (var json = JsonDocument.Parse(stats))
        {
            Assert.Equal(JsonValueKind.Object, json.RootElement.ValueKind);
        }

        await host.StopAsync();
    }

    private static string? InventoryInstance(string body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("inventory").GetString();
    }
}
