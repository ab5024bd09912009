using System.Net.Http.Json;
using System.Text.Json;
using Mesh.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>security.md §5 test 3: a valid mesh certificate for the wrong SPIFFE ID gets no traffic.</summary>
public sealed class SecureNamingTests(ITestOutputHelper output)
{
    [Fact]
    public async Task InstanceWithAnotherIdentity_CannotRegisterAsTheService_AndGetsNoEndpoint()
    {
        await using var mesh = await LocalMesh.StartAsync(output);

        // orders runs as sa/orders (its ServiceEntry name); this instance holds a valid SVID of sa/frontend.
        // It registers honestly as sa/frontend (Mesh:ServiceAccount) with the label app=orders, so the control plane's
        // ServiceEntry check ("runs as") is what refuses it, not the caller-equals-payload check.
        var environment = mesh.ControlPlane.SecureEnvironment(await mesh.ControlPlane.MintTokenAsync("frontend"));
        environment["Mesh__ServiceAccount"] = "frontend";
        await using var impostor = (await MeshProcesses.StartWorkloadAsync(Repository.App("Mesh.Samples.Orders"), "orders", "orders-impostor", environment)).Process;

        var refusal = await impostor.WaitForLineAsync(@"PermissionDenied[^\n]*may not register[^\n]*", TimeSpan.FromSeconds(90));
        output.WriteLine($"impostor log: {refusal.Value}");
        Assert.Contains(SpiffeId("frontend"), impostor.Output, StringComparison.Ordinal);

        // A genuine orders instance registers on the same control plane, so the registry works and the count below is meaningful.
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        await mesh.WaitForEndpointsAsync("orders", 1);
        using var dump = await mesh.ConfigDumpAsync();
        var endpoints = dump.RootElement.GetProperty("services").EnumerateArray()
            .Single(s => s.GetProperty("host").GetString() == "orders.default.svc.cluster.local")
            .GetProperty("endpoints").GetRawText();
        var impostorPort = (await impostor.WaitForListeningAsync(TimeSpan.FromSeconds(5))).Port;
        Console.WriteLine($"[secure-naming-register] impostor sa/frontend as orders: refused ({refusal.Value.Trim()}); orders endpoints {await mesh.EndpointCountAsync("orders")}, impostor port {impostorPort} among them: {endpoints.Contains($"{impostorPort}", StringComparison.Ordinal)}");
        Assert.DoesNotContain($"{impostorPort}", endpoints, StringComparison.Ordinal);
        Assert.Equal(1, await mesh.EndpointCountAsync("orders"));
    }

    [Fact]
    public async Task ServerPresentingAnotherValidIdentity_MeshClientRefusesToSend_AndTheServerSeesNothing()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        var scratch = Directory.CreateTempSubdirectory("mesh-secit-naming-").FullName;
        using var stats = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "stats-reader", scratch));
        var before = await Eventually.ReturnsAsync(() => RequestsAsync(stats, frontend), _ => true, "frontend's request counter");

        // "payments" must run as sa/orders, but its only endpoint is the frontend process (sa/frontend). The inline endpoint
        // declares frontend's address:port for orders, so while it exists frontend's inbound listener is not frontend's
        // (it answers 503): the counter is read before and after it.
        var naming = Path.Combine(mesh.ConfigDirectory, "naming.yaml");
        await File.WriteAllTextAsync(naming, $"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {"{"}name: payments, namespace: default{"}"}
            spec:
              hosts: [payments.default.svc.cluster.local]
              subjectAltNames: [{SpiffeId("orders")}]
              ports: [{"{"}number: 80, name: http, protocol: HTTP{"}"}]
              resolution: STATIC
              endpoints:
                - address: 127.0.0.1
                  ports: {"{"}http: {frontend.Address.Port}{"}"}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {"{"}name: payments, namespace: default{"}"}
            spec:
              host: payments.default.svc.cluster.local
              trafficPolicy:
                tls: {"{"}mode: ISTIO_MUTUAL{"}"}
            """);
        await mesh.WaitForEndpointsAsync("payments", 1);

        try
        {
            using var host = await mesh.CreateClientHostAsync();
            await host.StartAsync();
            var health = host.Services.GetRequiredService<HealthCheckService>();
            await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
            var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");

            // "/" is the frontend's counted path: any request that got through would show in its /_stats.
            var attempts = 0;
            var message = await Eventually.ReturnsAsync(
                async () =>
                {
                    attempts++;
                    try
                    {
                        using var response = await client.GetAsync("http://payments/");
                        return $"HTTP {(int)response.StatusCode}";
                    }
                    catch (ServiceMeshException e)
                    {
                        return $"{e.GetType().Name}: {e.Message}";
                    }
                },
                m => m.Contains(SpiffeId("frontend"), StringComparison.Ordinal),
                "the mesh client to refuse the server's identity",
                TimeSpan.FromSeconds(60));
            output.WriteLine($"refusal: {message}");

            await host.StopAsync();
            File.Delete(naming);
            var after = await Eventually.ReturnsAsync(() => RequestsAsync(stats, frontend), _ => true, "frontend to serve again once its address is no longer declared for orders", TimeSpan.FromSeconds(90));
            Console.WriteLine($"[secure-naming-client] {attempts} call(s) to payments (expects sa/orders, server is sa/frontend): refused; server request counter {before} → {after}");
            Assert.Contains(SpiffeId("orders"), message, StringComparison.Ordinal);
            Assert.Contains(SpiffeId("frontend"), message, StringComparison.Ordinal);
            Assert.Equal(before, after);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task<long> RequestsAsync(HttpClient mtls, WorkloadProcess workload)
    {
        using var json = JsonDocument.Parse(await mtls.GetStringAsync(Https(workload, "/_stats")));
        return json.RootElement.GetProperty("requests").GetInt64();
    }
}
