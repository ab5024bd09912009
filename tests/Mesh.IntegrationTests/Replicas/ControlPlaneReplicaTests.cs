using System.Diagnostics;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Replicas;

/// <summary>
/// Issue 13, replicas: two control-plane processes serve one config folder under one CA at once; workloads list both
/// (Mesh:ControlPlane:Addresses) and fail over when the one they use is SIGKILLed under load.
/// </summary>
public sealed partial class ControlPlaneReplicaTests(ITestOutputHelper output)
{
    private static readonly string ControlPlaneDll = Repository.App("Mesh.ControlPlane");

    [Fact]
    public async Task ReplicaKilledUnderLoad_NoFailedRequest_ClientsMoveToTheOther_RenewalAndNewWorkloadThere()
    {
        var root = Directory.CreateTempSubdirectory("mesh-it-replicas-").FullName;
        var config = Directory.CreateDirectory(Path.Combine(root, "config")).FullName;
        File.Copy(LocalMesh.DemoServicesYaml, Path.Combine(config, "services.yaml"));
        var processes = new List<ChildProcess>();
        using var admin = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            // Replica 1 makes the self-signed root in its state folder; replica 2 signs with the same one (ControlPlane:Ca:*File).
            var first = await MeshProcesses.StartControlPlaneAsync(ControlPlaneDll, config, Path.Combine(root, "state-1"));
            processes.Add(first.Process);
            var second = await MeshProcesses.StartControlPlaneAsync(
                ControlPlaneDll,
                config,
                Path.Combine(root, "state-2"),
                extraArgs: [$"--ControlPlane:Ca:CertificateFile={first.RootCertificate}", $"--ControlPlane:Ca:KeyFile={Path.Combine(first.StateDirectory, "ca", "root-key.pem")}"]);
            processes.Add(second.Process);
            Assert.Equal(await admin.GetStringAsync(new Uri(first.AdminAddress, "/ca/bundle.pem")), await admin.GetStringAsync(new Uri(second.AdminAddress, "/ca/bundle.pem")));

            // One-minute certificates: each workload renews about every 30 s, so a renewal falls after the kill.
            var shortLived = new Dictionary<string, string?> { ["Mesh__Identity__CertificateTtl"] = "00:01:00" };
            var inventory = await StartWorkloadAsync(first, [first, second], "Mesh.Samples.Inventory", "inventory", "inventory-1", shortLived);
            var orders = await StartWorkloadAsync(first, [first, second], "Mesh.Samples.Orders", "orders", "orders-1", shortLived);
            var frontend = await StartWorkloadAsync(first, [first, second], "Mesh.Samples.Frontend", "frontend", "frontend-1", shortLived);
            processes.AddRange([inventory.Process, orders.Process, frontend.Process]);

            var scratch = Directory.CreateDirectory(Path.Combine(root, "client")).FullName;
            using var mtls = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(first, "load-client", scratch));
            foreach (var workload in new[] { inventory, orders, frontend })
            {
                await Eventually.HoldsAsync(() => ReadyAsync(mtls, workload), $"{workload.Instance} to be ready", TimeSpan.FromSeconds(90));
            }

            // Each instance registered with both replicas, and streams ADS from the first (the first listed).
            foreach (var service in new[] { "inventory", "orders", "frontend" })
            {
                await Eventually.ReturnsAsync(() => EndpointCountAsync(admin, first, service), n => n == 1, $"{service} registered with replica 1");
                await Eventually.ReturnsAsync(() => EndpointCountAsync(admin, second, service), n => n == 1, $"{service} registered with replica 2");
            }

            await Eventually.ReturnsAsync(() => ClientIdentitiesAsync(admin, first), ids => ids.Count == 3, "three workloads streaming ADS from replica 1");
            Assert.Empty(await ClientIdentitiesAsync(admin, second));

            var progress = LoadRun.Start(mtls, Https(frontend, "/").ToString(), workers: 4, TimeSpan.FromSeconds(40), maxRequests: 1_000_000, marker: null, out var load);
            await Eventually.HoldsAsync(() => Task.FromResult(progress.Succeeded >= 100), "100 requests through frontend before the kill");
            var issuedBeforeKill = new[] { inventory, orders, frontend }.ToDictionary(w => w.Instance, w => IssuedCount(w.Process));
            var beforeKill = progress.Sent;
            await first.Process.KillAsync();
            var killed = Stopwatch.StartNew();
            output.WriteLine($"replica 1 SIGKILLed after {beforeKill} requests");

            // Every workload's ADS stream moves to replica 2 (its /debug/clients lists them by SPIFFE ID).
            var moved = await Eventually.ReturnsAsync(() => ClientIdentitiesAsync(admin, second), ids => ids.Count == 3, "the three workloads streaming ADS from replica 2", TimeSpan.FromSeconds(60));
            var reconnect = killed.Elapsed;
            var run = await load;
            Console.WriteLine($"[replicas] {run.Sent} requests frontend→orders→inventory (mTLS), {run.Sent - beforeKill} after replica 1 was SIGKILLed: {run.Failures.Count} failed; all 3 workloads on replica 2 within {reconnect.TotalSeconds:0.0} s ({string.Join(", ", moved)})");
            Assert.Empty(run.Failures);
            Assert.True(run.Sent - beforeKill >= 100, $"only {run.Sent - beforeKill} requests after the kill");

            // Renewal after the kill: each workload's next certificate comes from replica 2's CA (same root).
            foreach (var workload in new[] { inventory, orders, frontend })
            {
                await Eventually.HoldsAsync(() => Task.FromResult(IssuedCount(workload.Process) > issuedBeforeKill[workload.Instance]), $"{workload.Instance} to renew its certificate after the kill", TimeSpan.FromSeconds(90));
            }

            // A new instance listing the dead replica first: certificate, registration and ADS from replica 2; it takes traffic.
            var late = await StartWorkloadAsync(second, [first, second], "Mesh.Samples.Orders", "orders", "orders-2", shortLived);
            processes.Add(late.Process);
            await Eventually.HoldsAsync(() => ReadyAsync(mtls, late), "orders-2 to be ready with replica 1 down", TimeSpan.FromSeconds(90));
            await Eventually.ReturnsAsync(() => EndpointCountAsync(admin, second, "orders"), n => n == 2, "orders-2 registered with replica 2");
            var after = await LoadRun.RunAsync(mtls, Https(frontend, "/").ToString(), workers: 2, TimeSpan.FromSeconds(10), maxRequests: 200);
            Console.WriteLine($"[replicas] after the kill: renewals from replica 2 for all 3 workloads; orders-2 (replica 1 listed first, down) ready and registered; {after}");
            Assert.Empty(after.Failures);
            Assert.Contains($"Control plane {first.SecureAddress} is unreachable", late.Process.Output, StringComparison.Ordinal);
        }
        finally
        {
            foreach (var process in processes)
            {
                await process.DisposeAsync();
                var text = process.Output;
                output.WriteLine($"----- {process.Name} (pid {process.Id}) -----");
                output.WriteLine(text.Length > 10_000 ? "…" + text[^10_000..] : text);
            }

            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task<WorkloadProcess> StartWorkloadAsync(
        ControlPlaneProcess tokenFrom, ControlPlaneProcess[] replicas, string app, string service, string instance, Dictionary<string, string?> extra)
    {
        var environment = new Dictionary<string, string?>(extra)
        {
            // Replica 2 signs with replica 1's root file (ControlPlane:Ca:CertificateFile): the mesh root for both.
            ["Mesh__ControlPlane__RootCertificate"] = replicas[0].RootCertificate,
            ["Mesh__Identity__Token"] = await tokenFrom.MintTokenAsync(service),
        };
        for (var i = 0; i < replicas.Length; i++)
        {
            environment[$"Mesh__ControlPlane__Addresses__{i}"] = replicas[i].SecureAddress.ToString();
        }

        return await MeshProcesses.StartWorkloadAsync(Repository.App(app), service, instance, environment);
    }

    /// <summary>The workload's readiness over mTLS (inventory serves gRPC, so HTTP/2 only).</summary>
    private static async Task<bool> ReadyAsync(HttpClient mtls, WorkloadProcess workload)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Https(workload, "/healthz/ready"))
        {
            Version = workload.Service == "inventory" ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        try
        {
            using var response = await mtls.SendAsync(request);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return false;
        }
    }

    private static int IssuedCount(ChildProcess process) => IssuedLine().Count(process.Output);

    private static async Task<int> EndpointCountAsync(HttpClient admin, ControlPlaneProcess controlPlane, string service)
    {
        using var dump = JsonDocument.Parse(await admin.GetStringAsync(new Uri(controlPlane.AdminAddress, "/debug/config_dump")));
        return dump.RootElement.GetProperty("services").EnumerateArray()
            .Where(e => e.GetProperty("host").GetString()!.StartsWith(service + ".", StringComparison.Ordinal))
            .Select(e => e.GetProperty("endpoints").GetArrayLength())
            .FirstOrDefault();
    }

    /// <summary>The SPIFFE IDs of the ADS streams a replica serves now (its /debug/clients).</summary>
    private static async Task<IReadOnlyList<string>> ClientIdentitiesAsync(HttpClient admin, ControlPlaneProcess controlPlane)
    {
        using var clients = JsonDocument.Parse(await admin.GetStringAsync(new Uri(controlPlane.AdminAddress, "/debug/clients")));
        return [.. clients.RootElement.EnumerateArray().Select(c => c.TryGetProperty("identity", out var id) ? id.GetString()! : "(none)").Order(StringComparer.Ordinal)];
    }

    [GeneratedRegex(@"Workload certificate for spiffe://\S+ issued")]
    private static partial Regex IssuedLine();
}
