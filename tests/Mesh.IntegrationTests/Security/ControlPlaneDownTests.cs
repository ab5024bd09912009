using System.Diagnostics;
using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>security.md §5 tests 19 and 21: static stability while the control plane (and its CA) is down.</summary>
public sealed class ControlPlaneDownTests(ITestOutputHelper output)
{
    /// <summary>
    /// Running workloads keep mTLS working while the control plane is SIGKILLed; a new instance started on default
    /// settings meanwhile is not ready and serves no plaintext (inbound ports fail closed until the control plane's
    /// inbound policy arrives), and becomes ready when the control plane returns.
    /// </summary>
    [Fact]
    public async Task ControlPlaneKilled_MtlsTrafficKeepsFlowing_NewInstanceServesNoPlaintextUntilItReturns()
    {
        await using var mesh = await LocalMesh.StartAsync(output, fixedPorts: true);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "strict.yaml"), """
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: default, namespace: istio-system}
            spec:
              mtls: {mode: STRICT}
            """);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        await mesh.WaitForEndpointsAsync("orders", 1);

        var scratch = Directory.CreateTempSubdirectory("mesh-secit-cpdown-").FullName;
        try
        {
            using var plain = CreatePlainClient();
            using var mtls = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "load-client", scratch));

            // The mesh-wide STRICT policy is in force before the outage: plaintext to orders is closed.
            await Eventually.HoldsAsync(async () => await PlaintextAnswerAsync(plain, Http(orders, "/_stats")) is null, "orders to close plaintext under mesh-wide STRICT", TimeSpan.FromSeconds(60));

            // Tokens come from the control plane's admin API: mint the late instance's now, while it is up.
            var lateEnvironment = mesh.ControlPlane.SecureEnvironment(await mesh.ControlPlane.MintTokenAsync("orders"));
            var outage = TimeSpan.FromSeconds(15);
            var progress = LoadRun.Start(mtls, Https(frontend, "/").ToString(), workers: 4, outage + TimeSpan.FromSeconds(10), maxRequests: 1_000_000, marker: null, out var load);
            await Eventually.HoldsAsync(() => Task.FromResult(progress.Succeeded >= 100), "100 requests through frontend before the kill");
            var beforeKill = progress.Sent;
            await mesh.ControlPlane.Process.KillAsync();
            var down = Stopwatch.StartNew();
            output.WriteLine($"control plane SIGKILLed after {beforeKill} requests");
            var run = await load;
            var loadAfterKill = down.Elapsed;
            Console.WriteLine($"[control-plane-down] {run.Sent} requests through frontend→orders→inventory (mTLS), {run.Sent - beforeKill} of them during {loadAfterKill.TotalSeconds:0.0} s with the control plane SIGKILLed: {run.Failures.Count} failed");
            Assert.Empty(run.Failures);
            Assert.True(loadAfterKill >= outage, $"load ran only {loadAfterKill.TotalSeconds:0.0} s after the kill");

            // A new orders instance starts while the control plane (and CA) are down: no certificate, no policy.
            await using var late = (await MeshProcesses.StartWorkloadAsync(Repository.App("Mesh.Samples.Orders"), "orders", "orders-late", lateEnvironment)).Process;
            var lateWorkload = new WorkloadProcess(late, "orders", "orders-late", await late.WaitForListeningAsync(TimeSpan.FromSeconds(60)));

            // Wait until it has tried the CA and failed at least once, so the checks below see its steady "dark" state.
            await late.WaitForLineAsync(@"Workload certificate request to \S+ failed", TimeSpan.FromSeconds(60));
            var plaintextServed = new List<string>();
            var readyAnswers = new List<string>();
            foreach (var path in new[] { "/healthz/ready", "/_stats", "/orders/1", "/healthz/ready", "/_stats" })
            {
                if (await PlaintextAnswerAsync(plain, Http(lateWorkload, path)) is { } status)
                {
                    plaintextServed.Add($"{path} → {status}");
                }
            }

            foreach (var client in new[] { plain, mtls })
            {
                var uri = client == plain ? Http(lateWorkload, "/healthz/ready") : Https(lateWorkload, "/healthz/ready");
                if (await IsReadyAsync(client, uri))
                {
                    readyAnswers.Add(uri.ToString());
                }
            }

            Console.WriteLine($"[control-plane-down] new instance (default settings) while down: plaintext requests served {plaintextServed.Count} of 5{(plaintextServed.Count > 0 ? " (" + string.Join(", ", plaintextServed) + ")" : string.Empty)}; readiness 200 by {readyAnswers.Count} of 2 probes");
            Assert.True(plaintextServed.Count == 0, $"the new instance served plaintext while it had no certificate and no policy: {string.Join(", ", plaintextServed)}");
            Assert.Empty(readyAnswers);

            // The control plane returns on the same ports and state: the new instance gets its SVID, policy, and becomes ready.
            var back = Stopwatch.StartNew();
            await mesh.RestartControlPlaneAsync(kill: true);
            await mesh.WaitReadyAsync(lateWorkload);
            await mesh.WaitForEndpointsAsync("orders", 2);
            var plaintextAfter = await PlaintextAnswerAsync(plain, Http(lateWorkload, "/_stats"));
            Console.WriteLine($"[control-plane-down] after restart: new instance ready and registered {back.Elapsed.TotalSeconds:0.0} s later; plaintext to it: {plaintextAfter ?? "refused"}");
            Assert.Null(plaintextAfter);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>Gets the HTTP status a plaintext request got, or null when the connection was refused or closed.</summary>
    private static async Task<string?> PlaintextAnswerAsync(HttpClient plain, Uri uri)
    {
        try
        {
            using var response = await plain.GetAsync(uri);
            return $"HTTP {(int)response.StatusCode}";
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return null;
        }
    }
}
