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
/// A VirtualService and DestinationRule subsets from the control plane's YAML folder, applied by a real Mesh client
/// (HttpClient path) against two real Kestrel backends: canary split, header and regex routes, a live shift.
/// </summary>
public sealed class VirtualServiceRoutingTests(ITestOutputHelper output)
{
    private const int Requests = 2000;

    [Fact]
    public async Task Canary9010_HeaderAndRegexRoutes_AndALiveShift_AsTheVirtualServiceSays()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var v1 = await NamedBackend.StartAsync("v1");
        await using var v2 = await NamedBackend.StartAsync("v2");
        var vsFile = Path.Combine(mesh.ConfigDirectory, "canary-vs.yaml");
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "canary.yaml"), $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: canary}
            spec:
              hosts: [canary]
              ports: [{number: 80, name: http, protocol: HTTP}]
              resolution: STATIC
              endpoints:
              - {address: 127.0.0.1, ports: {http: {{{v1.Port}}}}, labels: {version: v1}}
              - {address: 127.0.0.1, ports: {http: {{{v2.Port}}}}, labels: {version: v2}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: canary}
            spec:
              host: canary
              subsets:
              - {name: v1, labels: {version: v1}}
              - {name: v2, labels: {version: v2}}
            """);
        await File.WriteAllTextAsync(vsFile, VirtualService(90, 10));
        await mesh.WaitForEndpointsAsync("canary", 2);

        using var host = await mesh.CreateClientHostAsync();
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        // The first answer may still come from before the client's RDS arrived; wait until the subsets answer at all.
        await Eventually.HoldsAsync(async () => await CallAsync(client, "/beta/1") == "v2", "the VirtualService's regex route to reach v2");

        var split = await CountAsync(client, "/items", Requests);
        var v2Share = split.GetValueOrDefault("v2") / (double)Requests;
        output.WriteLine($"90/10 canary over {Requests}: {string.Join(", ", split.Select(p => $"{p.Key}={p.Value}"))} (v2 {v2Share:P1})");
        Assert.Equal(Requests, split.GetValueOrDefault("v1") + split.GetValueOrDefault("v2"));
        Assert.InRange(v2Share, 0.07, 0.13);

        var header = await CountAsync(client, "/items", 200, ("x-beta", "1"));
        var regex = await CountAsync(client, "/beta/42", 200);
        var notRegex = await CountAsync(client, "/beta/42/x", 200);
        output.WriteLine($"x-beta: 1 → {string.Join(", ", header)}; /beta/42 → {string.Join(", ", regex)}; /beta/42/x → {string.Join(", ", notRegex)}");
        Assert.Equal(200, header.GetValueOrDefault("v2"));
        Assert.Equal(200, regex.GetValueOrDefault("v2"));
        Assert.True(notRegex.GetValueOrDefault("v1") > 150, "a path the regex does not match whole must take the canary split");

        // Shift everything to v2 by editing the file; once the client has it, v1 gets nothing.
        await File.WriteAllTextAsync(vsFile, VirtualService(0, 100));
        await Eventually.HoldsAsync(async () => (await CountAsync(client, "/items", 20)).Keys.SequenceEqual(["v2"]), "the 0/100 shift to reach the client");
        var shifted = await CountAsync(client, "/items", 500);
        output.WriteLine($"after 0/100: {string.Join(", ", shifted)}");
        Console.WriteLine($"[canary-httpclient] 90/10 over {Requests}: v2 {v2Share:P1}; header route {header.GetValueOrDefault("v2")}/200 to v2; regex route {regex.GetValueOrDefault("v2")}/200 to v2; after 0/100 shift {shifted.GetValueOrDefault("v2")}/500 to v2");
        Assert.Equal(500, shifted.GetValueOrDefault("v2"));
    }

    private static string VirtualService(int v1, int v2) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: canary}
        spec:
          hosts: [canary]
          http:
          - name: beta-header
            match:
            - headers: {x-beta: {exact: "1"}}
            - uri: {regex: "/beta/[0-9]+"}
            route:
            - destination: {host: canary, subset: v2}
          - name: split
            route:
            - destination: {host: canary, subset: v1}
              weight: {{{v1}}}
            - destination: {host: canary, subset: v2}
              weight: {{{v2}}}
        """;

    private static async Task<string> CallAsync(HttpClient client, string path, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://canary" + path));
        foreach (var (name, value) in headers)
        {
            request.Headers.Add(name, value);
        }

        using var response = await client.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }

    private static async Task<Dictionary<string, int>> CountAsync(HttpClient client, string path, int count, params (string Name, string Value)[] headers)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var version = await CallAsync(client, path, headers);
            counts[version] = counts.GetValueOrDefault(version) + 1;
        }

        return counts;
    }
}
