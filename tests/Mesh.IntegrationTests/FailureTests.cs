using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests;

public sealed class FailureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task OneOfThreeInstancesKilledUnderSteadyLoad_EveryRequestSucceeds()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var orders = new[]
        {
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1"),
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-2"),
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-3"),
        };
        await mesh.WaitForEndpointsAsync("orders", 3);
        using var host = await mesh.CreateClientHostAsync();
        await host.StartAsync();
        await WaitSyncedAsync(host);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        var progress = LoadRun.Start(client, "http://orders/orders/7", workers: 4, TimeSpan.FromSeconds(15), maxRequests: 3_000, OrdersInstance, out var load);
        await Eventually.HoldsAsync(() => Task.FromResult(progress.Succeeded >= 150), "150 requests before the kill");
        await orders[1].Process.KillAsync();
        output.WriteLine($"SIGKILLed {orders[1].Instance} (pid {orders[1].Process.Id}) under load");
        var run = await load;
        output.WriteLine($"orders ×3, one killed: {run}; split {string.Join(", ", run.Markers)}");
        Console.WriteLine($"[kill-one-of-three] {run.Sent} requests sent, {run.Failures.Count} failed");

        Assert.Empty(run.Failures);
        Assert.True(run.Sent >= 300, $"expected a steady load, sent only {run.Sent}");
        Assert.Equal(3, run.Markers.Count);
        await host.StopAsync();
    }

    [Fact]
    public async Task ControlPlaneRestartedUnderLoad_ZeroFailedRequests_AndClientsComeBack()
    {
        await using var mesh = await LocalMesh.StartAsync(output, fixedPorts: true);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-2");
        await mesh.WaitForEndpointsAsync("orders", 2);
        using var host = await mesh.CreateClientHostAsync();
        await host.StartAsync();
        await WaitSyncedAsync(host);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        var progress = LoadRun.Start(client, "http://orders/orders/1", workers: 4, TimeSpan.FromSeconds(20), maxRequests: 5_000, OrdersInstance, out var load);
        await Eventually.HoldsAsync(() => Task.FromResult(progress.Succeeded >= 150), "150 requests before the restart");
        await mesh.RestartControlPlaneAsync(kill: true);
        output.WriteLine("control plane SIGKILLed and started again on the same ports");

        // Every workload reconnects: 3 mesh processes and this test's client.
        await Eventually.ReturnsAsync(ConnectedClientsAsync, n => n >= 4, "every workload to reconnect to the restarted control plane");
        await mesh.WaitForEndpointsAsync("orders", 2);
        var run = await load;
        output.WriteLine($"control plane restart under load: {run}");
        Console.WriteLine($"[control-plane-restart] {run.Sent} requests sent, {run.Failures.Count} failed");

        Assert.Empty(run.Failures);
        Assert.True(run.Sent >= 300, $"expected a steady load, sent only {run.Sent}");
        Assert.Equal(2, run.Markers.Count);
        await host.StopAsync();

        async Task<int> ConnectedClientsAsync()
        {
            using var dump = await mesh.ConfigDumpAsync();
            return dump.RootElement.GetProperty("clients").GetArrayLength();
        }
    }

    [Fact]
    public async Task InstanceKilledWithoutDeregistering_IsRemovedWhenItsLeaseExpires()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var doomed = await mesh.StartReadyWorkloadAsync(
            "Mesh.Samples.Orders",
            "orders",
            "orders-2",
            new Dictionary<string, string?> { ["Mesh__Registration__LeaseTtl"] = "00:00:03" });
        await mesh.WaitForEndpointsAsync("orders", 2);

        await doomed.Process.KillAsync();
        var removedWithin = System.Diagnostics.Stopwatch.StartNew();
        await Eventually.ReturnsAsync(() => mesh.EndpointCountAsync("orders"), n => n == 1, "the killed instance's lease to expire", TimeSpan.FromSeconds(20));
        output.WriteLine($"removed {removedWithin.Elapsed.TotalSeconds:0.0} s after SIGKILL (lease 3 s)");
    }

    private static async Task WaitSyncedAsync(IHost host)
    {
        var health = host.Services.GetRequiredService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>();
        await Eventually.HoldsAsync(
            async () => (await health.CheckHealthAsync()).Status == Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy,
            "the test's mesh client to sync");
    }

    private static string? OrdersInstance(string body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("orders").GetString();
    }
}
