using System.Net;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// Fail closed, control-plane side: a control plane restarted with an invalid config folder is not ready and serves no
/// ADS (never an empty snapshot), so running workloads keep their last good config (routes and inbound policy) and keep
/// serving; once the folder is fixed it becomes ready and they reconnect.
/// </summary>
public sealed class InvalidConfigRestartTests(ITestOutputHelper output)
{
    private const string DenyDelete = """
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: orders-deny-delete}
        spec:
          selector: {matchLabels: {app: orders}}
          action: DENY
          rules: [{to: [{operation: {methods: [DELETE]}}]}]
        """;

    // The kind is misspelt: read as "not yet supported" and ignored, it would have dropped a DENY.
    private const string Mistyped = """
        apiVersion: security.istio.io/v1
        kind: AuthorisationPolicy
        metadata: {name: orders-deny-get}
        spec:
          selector: {matchLabels: {app: orders}}
          action: DENY
          rules: [{to: [{operation: {methods: [GET]}}]}]
        """;

    [Fact]
    public async Task ControlPlaneRestartedWithInvalidFolder_NotReadyNoAds_WorkloadsKeepConfigAndServe_ReadyAfterFix()
    {
        await using var mesh = await LocalMesh.StartAsync(output, fixedPorts: true);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "deny-delete.yaml"), DenyDelete);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        await mesh.WaitForEndpointsAsync("orders", 1);

        var scratch = Directory.CreateTempSubdirectory("mesh-secit-badcfg-").FullName;
        try
        {
            using var mtls = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "load-client", scratch));
            using var admin = CreatePlainClient();
            await Eventually.HoldsAsync(async () => await StatusAsync(mtls, HttpMethod.Delete, Https(orders, "/orders/1")) == HttpStatusCode.Forbidden, "orders to deny DELETE");

            // The folder breaks while the control plane runs (rejected, last good kept), then it restarts on it.
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "mistyped.yaml"), Mistyped);
            await Eventually.HoldsAsync(async () => (await ConfigErrorsAsync(mesh)).Length > 0, "the running control plane to reject the folder");
            await mesh.RestartControlPlaneAsync(kill: false);

            // Not ready, naming the file and line; ADS refused with UNAVAILABLE (the workloads log why).
            var (readyStatus, readyBody) = await ReadyAsync(admin, mesh);
            output.WriteLine($"restarted control plane /healthz/ready: {(int)readyStatus} {readyBody}");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, readyStatus);
            Assert.Contains("mistyped.yaml:2: AuthorisationPolicy default/orders-deny-get: kind: AuthorisationPolicy is not a known security.istio.io kind", readyBody, StringComparison.Ordinal);
            await orders.Process.WaitForLineAsync(@"ADS stream to \S+ failed: Unavailable: control plane not ready: the config folder is invalid", TimeSpan.FromSeconds(60));

            // The workloads keep their last good config: outbound routes (frontend → orders → inventory) and inbound policy.
            var run = await LoadRun.RunAsync(mtls, Https(frontend, "/").ToString(), workers: 2, TimeSpan.FromSeconds(5), maxRequests: 100_000);
            Console.WriteLine($"[invalid-config-restart] {run.Sent} requests through frontend→orders→inventory while the restarted control plane was not ready: {run.Failures.Count} failed");
            Assert.Empty(run.Failures);
            Assert.True(run.Sent > 0);
            Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(mtls, HttpMethod.Delete, Https(orders, "/orders/1")));
            Assert.Equal(HttpStatusCode.OK, await StatusAsync(mtls, HttpMethod.Get, Https(orders, "/orders/1")));
            Assert.Equal(HttpStatusCode.OK, await StatusAsync(mtls, HttpMethod.Get, Https(orders, "/healthz/ready")));
            Assert.Equal(HttpStatusCode.ServiceUnavailable, (await ReadyAsync(admin, mesh)).Status);

            // Fixed: ready, the workloads reconnect, and the policy (now with the corrected kind) still holds.
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "mistyped.yaml"), Mistyped.Replace("AuthorisationPolicy", "AuthorizationPolicy", StringComparison.Ordinal).Replace("[GET]", "[PATCH]", StringComparison.Ordinal));
            await Eventually.HoldsAsync(async () => (await ReadyAsync(admin, mesh)).Status == HttpStatusCode.OK, "the control plane to become ready after the fix");
            await Eventually.HoldsAsync(async () => await ClientCountAsync(mesh) >= 3, "the three workloads to reconnect to ADS", TimeSpan.FromSeconds(90));
            Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(mtls, HttpMethod.Delete, Https(orders, "/orders/1")));
            Assert.Equal(HttpStatusCode.OK, await StatusAsync(mtls, HttpMethod.Get, Https(frontend, "/")));
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient client, HttpMethod method, Uri uri)
    {
        using var request = new HttpRequestMessage(method, uri);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    private static async Task<(HttpStatusCode Status, string Body)> ReadyAsync(HttpClient admin, LocalMesh mesh)
    {
        using var response = await admin.GetAsync(new Uri(mesh.ControlPlane.AdminAddress, "/healthz/ready"));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<JsonElement[]> ConfigErrorsAsync(LocalMesh mesh)
    {
        using var dump = await mesh.ConfigDumpAsync();
        return [.. dump.RootElement.GetProperty("configErrors").EnumerateArray().Select(e => e.Clone())];
    }

    private static async Task<int> ClientCountAsync(LocalMesh mesh)
    {
        using var dump = await mesh.ConfigDumpAsync();
        return dump.RootElement.GetProperty("clients").GetArrayLength();
    }
}
