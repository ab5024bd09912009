using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// A subset removed in the same change as the route that used it, under steady load. The control plane pushes the new
/// clusters (without the subset) before the new routes (xDS's make-before-break order), so for a moment the client
/// holds routes that name a cluster it no longer has: it must keep routing them, not drop the service.
/// </summary>
public sealed class SubsetRemovalTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SubsetAndItsRouteRemovedTogether_UnderSteadyLoad_NoRequestFails()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var v1 = await NamedBackend.StartAsync("v1");
        await using var v2 = await NamedBackend.StartAsync("v2");
        var file = Path.Combine(mesh.ConfigDirectory, "canary.yaml");
        await File.WriteAllTextAsync(file, Config(v1.Port, v2.Port, withV2: true));
        await mesh.WaitForEndpointsAsync("canary", 2);

        using var host = await mesh.CreateClientHostAsync(configureHost: b => b.Services.AddHttpClient("canary", c => c.BaseAddress = new Uri("http://canary/")));
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("canary");
        await Eventually.HoldsAsync(async () => await client.GetStringAsync("/") == "v2", "the 50/50 split to reach v2");

        using var stop = new CancellationTokenSource();
        var load = LoadRun.Start(client, "/", workers: 4, TimeSpan.FromSeconds(90), maxRequests: 200_000, body => body, out var completion, stop.Token);
        await Eventually.HoldsAsync(() => Task.FromResult(load.Markers.GetValueOrDefault("v2") > 200), "v2 to take load before the change");

        // One edit removes subset v2 and the route to it.
        await File.WriteAllTextAsync(file, Config(v1.Port, v2.Port, withV2: false));
        var v2Before = 0;
        await Eventually.HoldsAsync(
            async () =>
            {
                // v2 stops growing: every request now goes to v1. Checked over a quarter second of load.
                var now = load.Markers.GetValueOrDefault("v2");
                var settled = now == v2Before;
                v2Before = now;
                await Task.Delay(250);
                return settled && load.Markers.GetValueOrDefault("v2") == now;
            },
            "v2 to stop receiving requests");
        var mark = load.Succeeded;
        await Eventually.HoldsAsync(() => Task.FromResult(load.Succeeded > mark + 500), "500 more requests after the change");

        await stop.CancelAsync();
        var run = await completion;
        output.WriteLine($"subset removal under load: {run.Sent} sent, {run.Succeeded} ok, {run.Failures.Count} failed; v1 {run.Markers.GetValueOrDefault("v1")}, v2 {run.Markers.GetValueOrDefault("v2")}");
        Console.WriteLine($"[subset-removal] {run.Succeeded} ok, {run.Failures.Count} failed");
        Assert.True(run.Failures.Count == 0, $"{run.Failures.Count} requests failed, e.g. {run.Failures.FirstOrDefault()}");
    }

    private static string Config(int v1Port, int v2Port, bool withV2) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: canary}
        spec:
          hosts: [canary]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints:
          - {address: 127.0.0.1, ports: {http: {{{v1Port}}}}, labels: {version: v1}}
          - {address: 127.0.0.1, ports: {http: {{{v2Port}}}}, labels: {version: v2}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: canary}
        spec:
          host: canary
          subsets:
          - {name: v1, labels: {version: v1}}
        {{{(withV2 ? "  - {name: v2, labels: {version: v2}}" : string.Empty)}}}
        ---
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: canary}
        spec:
          hosts: [canary]
          http:
          - route:
            - destination: {host: canary, subset: v1}
        {{{(withV2 ? "      weight: 50\n    - destination: {host: canary, subset: v2}\n      weight: 50" : string.Empty)}}}
        """;
}
