using Mesh.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// DestinationRule <c>localityLbSetting</c> from the control plane's YAML folder to real Mesh clients (HttpClient path) in a
/// given <c>Mesh:Locality</c>, against real Kestrel backends in two zones: each client gets EDS priorities for its own locality.
/// </summary>
public sealed class LocalityLoadBalancingTests(ITestOutputHelper output)
{
    private const string ZoneA = "us-east/zone-a";
    private const string ZoneB = "us-east/zone-b";

    [Fact]
    public async Task Failover_ClientInZoneA_StaysInZoneA_AndFailsOverToZoneBWhenZoneAIsEjected()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var a1 = await NamedBackend.StartAsync("a1");
        await using var a2 = await NamedBackend.StartAsync("a2");
        await using var b1 = await NamedBackend.StartAsync("b1");
        await using var b2 = await NamedBackend.StartAsync("b2");
        await WriteConfigAsync(mesh, [(a1, ZoneA), (a2, ZoneA), (b1, ZoneB), (b2, ZoneB)], """
            outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}
            """);
        using var zoneAClient = await StartClientAsync(mesh, ZoneA);
        using var anywhereClient = await StartClientAsync(mesh, locality: null);
        var client = zoneAClient.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        var anywhere = anywhereClient.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        // Priorities arrive with EDS; until then the client may still spread over both zones.
        await Eventually.HoldsAsync(async () => (await CountAsync(client, 50)).Keys.All(k => k.StartsWith('a')), "the zone-a client to keep to zone a");

        var healthy = await CountAsync(client, 400);
        output.WriteLine($"healthy, client in {ZoneA}: {Show(healthy)}");
        Assert.Equal(400, healthy.GetValueOrDefault("a1") + healthy.GetValueOrDefault("a2"));
        Assert.True(healthy.GetValueOrDefault("a1") > 100 && healthy.GetValueOrDefault("a2") > 100, "both zone-a endpoints share the load");

        // The attacker's view: a client that says no locality is not steered to zone a (all localities are the same to it).
        var unlocated = await CountAsync(anywhere, 400);
        output.WriteLine($"healthy, client without a locality: {Show(unlocated)}");
        Assert.True(unlocated.GetValueOrDefault("b1") + unlocated.GetValueOrDefault("b2") > 100, $"a client without locality spreads over both zones: {Show(unlocated)}");

        // Zone a fails: after a couple of 5xx per endpoint both are ejected and priority 1 (zone b) takes everything.
        a1.Status = 503;
        a2.Status = 503;
        const int Requests = 1_000;
        var failover = await CountAsync(client, Requests);
        var ok = failover.Where(kv => kv.Key != "503").Sum(kv => kv.Value);
        var success = ok / (double)Requests;
        output.WriteLine($"zone a answering 503: {Show(failover)}; success {success:P2}");
        Console.WriteLine($"[locality] client in {ZoneA}: healthy 400/400 to zone a; zone a failing → {ok}/{Requests} succeeded ({success:P2}) via zone b");
        Assert.True(success >= 0.99, $"success {success:P2} < 99 % after zone a failed: {Show(failover)}");
        Assert.True(failover.GetValueOrDefault("b1") > 300 && failover.GetValueOrDefault("b2") > 300, $"zone b serves the failover: {Show(failover)}");
    }

    [Fact]
    public async Task Distribute_8020_LandsWithinThreePercentOver2000Requests()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var a1 = await NamedBackend.StartAsync("a1");
        await using var b1 = await NamedBackend.StartAsync("b1");
        await using var b2 = await NamedBackend.StartAsync("b2");

        // Two endpoints in zone b, one in zone a: a flat pick would send zone a a third, distribute says 80 %.
        await WriteConfigAsync(mesh, [(a1, ZoneA), (b1, ZoneB), (b2, ZoneB)], """
            loadBalancer:
              localityLbSetting:
                distribute:
                - from: us-east/zone-a/*
                  to: {"us-east/zone-a/*": 80, "us-east/zone-b/*": 20}
            """);
        using var host = await StartClientAsync(mesh, ZoneA + "/rack-1");
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () => (await CountAsync(client, 100)).GetValueOrDefault("a1") > 60, "the distribute weights to reach the client");

        const int Requests = 2_000;
        var counts = await CountAsync(client, Requests);
        var share = counts.GetValueOrDefault("a1") / (double)Requests;
        output.WriteLine($"distribute 80/20: {Show(counts)}; zone a {share:P2}");
        Console.WriteLine($"[locality] distribute 80/20 over {Requests} requests: zone a {share:P2}, zone b {1 - share:P2}");
        Assert.Equal(Requests, counts.GetValueOrDefault("a1") + counts.GetValueOrDefault("b1") + counts.GetValueOrDefault("b2"));
        Assert.InRange(share, 0.77, 0.83);
    }

    /// <summary>Sends <paramref name="requests"/> GETs one at a time; counts answers by body (the backend's name) or status.</summary>
    private static async Task<Dictionary<string, int>> CountAsync(HttpClient client, int requests)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < requests; i++)
        {
            using var response = await client.GetAsync(new Uri("http://zonal/items"));
            var key = response.IsSuccessStatusCode ? await response.Content.ReadAsStringAsync() : ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
            counts[key] = counts.GetValueOrDefault(key) + 1;
        }

        return counts;
    }

    private static string Show(Dictionary<string, int> counts) => string.Join(", ", counts.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key}={kv.Value}"));

    private static Task WriteConfigAsync(LocalMesh mesh, (NamedBackend Backend, string Locality)[] backends, string trafficPolicy) =>
        StaticServiceConfig.WriteAsync(mesh, "zonal", [.. backends.Select(b => $"{{address: 127.0.0.1, ports: {{http: {b.Backend.Port}}}, locality: {b.Locality}}}")], trafficPolicy, retryAttempts: 2);

    private static async Task<IHost> StartClientAsync(LocalMesh mesh, string? locality)
    {
        var host = await mesh.CreateClientHostAsync(options => options.Locality = locality);
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        return host;
    }
}
