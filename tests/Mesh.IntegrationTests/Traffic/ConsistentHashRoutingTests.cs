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
/// DestinationRule <c>consistentHash.httpHeaderName</c> from the control plane's YAML folder, applied by a real Mesh client
/// (HttpClient path) against three real Kestrel backends: each key sticks to one backend, keys spread, no key spreads.
/// </summary>
public sealed class ConsistentHashRoutingTests(ITestOutputHelper output)
{
    private const int Users = 40;
    private const int RequestsPerUser = 15;

    [Fact]
    public async Task ConsistentHashByHeader_EachKeyStaysOnOneBackend_KeysSpread()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var a = await NamedBackend.StartAsync("a");
        await using var b = await NamedBackend.StartAsync("b");
        await using var c = await NamedBackend.StartAsync("c");
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "sticky.yaml"), $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: sticky}
            spec:
              hosts: [sticky]
              ports: [{number: 80, name: http, protocol: HTTP}]
              resolution: STATIC
              endpoints:
              - {address: 127.0.0.1, ports: {http: {{{a.Port}}}}}
              - {address: 127.0.0.1, ports: {http: {{{b.Port}}}}}
              - {address: 127.0.0.1, ports: {http: {{{c.Port}}}}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: sticky}
            spec:
              host: sticky
              trafficPolicy:
                loadBalancer:
                  consistentHash:
                    httpHeaderName: x-user
                    ringHash: {minimumRingSize: 2048}
            """);
        await mesh.WaitForEndpointsAsync("sticky", 3);

        using var host = await mesh.CreateClientHostAsync();
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        // Stickiness needs the RING_HASH cluster and the route's hash_policy; wait until one key answers from one backend.
        await Eventually.HoldsAsync(async () => (await CountAsync(client, 30, "probe")).Count == 1, "the consistent hash to reach the client");

        var owners = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var user = 0; user < Users; user++)
        {
            var counts = await CountAsync(client, RequestsPerUser, $"user-{user}");
            var owner = Assert.Single(counts).Key;
            Assert.Equal(RequestsPerUser, counts[owner]);
            owners[$"user-{user}"] = owner;
        }

        var perBackend = owners.GroupBy(o => o.Value).ToDictionary(g => g.Key, g => g.Count());
        var unkeyed = await CountAsync(client, 150, user: null);
        var summary = $"{Users * RequestsPerUser} keyed requests, {Users} keys, each on one backend; keys per backend {string.Join(", ", perBackend.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"))}; 150 requests without the header: {string.Join(", ", unkeyed.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"))}";
        output.WriteLine(summary);
        Console.WriteLine($"[consistent-hash-httpclient] {summary}");

        // 40 keys over three ring owners: every backend holds keys (all on one would be a broken hash); without a key, Envoy picks at random.
        Assert.Equal(3, perBackend.Count);
        Assert.All(perBackend.Values, n => Assert.InRange(n, 3, 30));
        Assert.Equal(3, unkeyed.Count);
    }

    private static async Task<Dictionary<string, int>> CountAsync(HttpClient client, int count, string? user)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://sticky/items"));
            if (user is not null)
            {
                request.Headers.Add("x-user", user);
            }

            using var response = await client.SendAsync(request);
            response.EnsureSuccessStatusCode();
            var backend = await response.Content.ReadAsStringAsync();
            counts[backend] = counts.GetValueOrDefault(backend) + 1;
        }

        return counts;
    }
}
