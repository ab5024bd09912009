using Mesh.IntegrationTests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// VirtualService <c>sourceLabels</c>/<c>sourceNamespace</c> (routes chosen per caller by the control plane) and
/// <c>queryParams</c> (matched per request by the client), through a real control plane process, real Kestrel
/// backends and real Mesh clients that differ only in their labels or their certified namespace.
/// </summary>
public sealed class SourceAndQueryRoutingTests(ITestOutputHelper output)
{
    private const int Requests = 300;

    [Fact]
    public async Task SourceLabelsSourceNamespaceAndQueryParams_RouteEachCallerAndRequestAsTheVirtualServiceSays()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var v1 = await NamedBackend.StartAsync("v1");
        await using var v2 = await NamedBackend.StartAsync("v2");
        await using var v3 = await NamedBackend.StartAsync("v3");
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "pricing.yaml"), $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: pricing}
            spec:
              hosts: [pricing]
              ports: [{number: 80, name: http, protocol: HTTP}]
              resolution: STATIC
              endpoints:
              - {address: 127.0.0.1, ports: {http: {{{v1.Port}}}}, labels: {version: v1}}
              - {address: 127.0.0.1, ports: {http: {{{v2.Port}}}}, labels: {version: v2}}
              - {address: 127.0.0.1, ports: {http: {{{v3.Port}}}}, labels: {version: v3}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: pricing}
            spec:
              host: pricing
              subsets:
              - {name: v1, labels: {version: v1}}
              - {name: v2, labels: {version: v2}}
              - {name: v3, labels: {version: v3}}
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: pricing}
            spec:
              hosts: [pricing]
              http:
              - name: beta-testers
                match:
                - sourceLabels: {track: beta}
                route:
                - destination: {host: pricing, subset: v2}
              - name: shop-namespace
                match:
                - sourceNamespace: shop
                route:
                - destination: {host: pricing, subset: v3}
              - name: version-query
                match:
                - queryParams: {version: {exact: v2}}
                route:
                - destination: {host: pricing, subset: v2}
              - route:
                - destination: {host: pricing, subset: v1}
            """);
        await mesh.WaitForEndpointsAsync("pricing", 3);

        // Same namespace and certificate namespace (default); one claims the label track=beta.
        using var plain = await StartClientAsync(mesh, "default", labels: null, claimedNamespace: null);
        using var beta = await StartClientAsync(mesh, "default", labels: new() { ["track"] = "beta" }, claimedNamespace: null);

        // Certified in namespace shop; and a caller certified in default that claims NAMESPACE shop in its node metadata.
        using var shop = await StartClientAsync(mesh, "shop", labels: null, claimedNamespace: "shop");
        using var impostor = await StartClientAsync(mesh, "default", labels: null, claimedNamespace: "shop");

        await Eventually.HoldsAsync(async () => await CallAsync(beta, "/items") == "v2", "the labelled caller's own route to reach it");
        await Eventually.HoldsAsync(async () => await CallAsync(shop, "/items") == "v3", "the shop caller's own route to reach it");
        await Eventually.HoldsAsync(async () => await CallAsync(plain, "/items?version=v2") == "v2", "the query route to reach the plain caller");
        await Eventually.HoldsAsync(async () => await CallAsync(impostor, "/items?version=v2") == "v2", "the impostor's routes to arrive");

        var plainCounts = await CountAsync(plain, "/items", Requests);
        var betaCounts = await CountAsync(beta, "/items", Requests);
        var shopCounts = await CountAsync(shop, "/items", Requests);
        var impostorCounts = await CountAsync(impostor, "/items", Requests);
        var query = await CountAsync(plain, "/items?a=1&version=v2", Requests);
        var otherQuery = await CountAsync(plain, "/items?version=v20&x=version=v2", Requests);
        var betaWithQuery = await CountAsync(beta, "/items?version=v1", Requests);
        Report("plain caller /items", plainCounts);
        Report("track=beta caller /items", betaCounts);
        Report("namespace shop caller (certified) /items", shopCounts);
        Report("caller certified in default claiming NAMESPACE shop /items", impostorCounts);
        Report("plain caller ?a=1&version=v2", query);
        Report("plain caller ?version=v20&x=version=v2", otherQuery);
        Report("track=beta caller ?version=v1", betaWithQuery);

        var misroutes = Requests - plainCounts.GetValueOrDefault("v1")
            + (Requests - betaCounts.GetValueOrDefault("v2"))
            + (Requests - shopCounts.GetValueOrDefault("v3"))
            + (Requests - impostorCounts.GetValueOrDefault("v1"))
            + (Requests - query.GetValueOrDefault("v2"))
            + (Requests - otherQuery.GetValueOrDefault("v1"))
            + (Requests - betaWithQuery.GetValueOrDefault("v2"));
        Console.WriteLine($"[source-query-routing] {7 * Requests} requests over 4 callers: {misroutes} misroutes");
        Assert.Equal(0, misroutes);
    }

    private void Report(string what, Dictionary<string, int> counts) =>
        output.WriteLine($"{what}: {string.Join(", ", counts.OrderBy(c => c.Key).Select(c => $"{c.Key}={c.Value}"))}");

    /// <summary>A mesh client host certified in <paramref name="certifiedNamespace"/>, with <paramref name="labels"/> and a claimed NAMESPACE.</summary>
    private static async Task<IHost> StartClientAsync(LocalMesh mesh, string certifiedNamespace, Dictionary<string, string>? labels, string? claimedNamespace)
    {
        var token = await mesh.ControlPlane.MintTokenAsync("caller", certifiedNamespace);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.AddServiceMesh(options =>
        {
            options.ControlPlane.Address = mesh.ControlPlane.SecureAddress;
            options.ControlPlane.RootCertificate = mesh.ControlPlane.RootCertificate;
            options.Identity.Token = token;
            options.Namespace = claimedNamespace ?? certifiedNamespace;
            foreach (var (key, value) in labels ?? [])
            {
                options.Labels[key] = value;
            }
        });
        builder.Services.AddHttpClient("mesh");
        var host = builder.Build();
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "a mesh client to sync");
        return host;
    }

    private static async Task<string> CallAsync(IHost host, string pathAndQuery)
    {
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

        // Fully qualified, so callers in any namespace name the same service.
        using var response = await client.GetAsync(new Uri("http://pricing.default.svc.cluster.local" + pathAndQuery));
        response.EnsureSuccessStatusCode();
        return await response.Content.ReadAsStringAsync();
    }

    private static async Task<Dictionary<string, int>> CountAsync(IHost host, string pathAndQuery, int count)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            var version = await CallAsync(host, pathAndQuery);
            counts[version] = counts.GetValueOrDefault(version) + 1;
        }

        return counts;
    }
}
