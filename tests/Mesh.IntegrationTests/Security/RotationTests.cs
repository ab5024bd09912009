using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using System.Text.RegularExpressions;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>security.md §5 test 5, shortened: SVIDs of 1 min (renewed at ~30 s) under steady load for 3 min.</summary>
public sealed class RotationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan LoadDuration = TimeSpan.FromMinutes(3);

    [Fact]
    public async Task OneMinuteCertificates_RotateUnderThreeMinutesOfLoad_ZeroFailedRequests()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var shortLived = new Dictionary<string, string?> { ["Mesh__Identity__CertificateTtl"] = "00:01:00" };
        var inventory = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", shortLived);
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", shortLived);
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1", shortLived);
        await mesh.WaitForEndpointsAsync("orders", 1);
        await mesh.WaitForEndpointsAsync("inventory", 1);

        var scratch = Directory.CreateTempSubdirectory("mesh-secit-rotation-").FullName;
        try
        {
            var files = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "rotation-probe", scratch);
            var first = new Dictionary<string, X509Certificate2>();
            foreach (var workload in new[] { inventory, orders, frontend })
            {
                first[workload.Instance] = await ServerCertificateAsync(files, workload);
                output.WriteLine($"{workload.Instance} at start: serial {first[workload.Instance].SerialNumber}, NotAfter {first[workload.Instance].NotAfter:O}");
            }

            using var client = WorkloadCertificates.CreateMtlsClient(files);
            var clock = Stopwatch.StartNew();
            var run = await LoadRun.RunAsync(client, Https(frontend, "/").ToString(), workers: 2, LoadDuration, maxRequests: 10_000_000);
            output.WriteLine($"rotation under load: {run}");

            var lines = new List<string>();
            var rotated = 0;
            foreach (var workload in new[] { inventory, orders, frontend })
            {
                using var last = await ServerCertificateAsync(files, workload);
                var issued = Regex.Matches(workload.Process.Output, @"Workload certificate for \S+ issued \(serial (\w+)").Select(m => m.Groups[1].Value).Distinct().Count();
                var changed = last.SerialNumber != first[workload.Instance].SerialNumber;
                rotated += changed ? 1 : 0;
                lines.Add($"{workload.Instance}: {issued} certificates issued, serial {first[workload.Instance].SerialNumber[..8]}… → {last.SerialNumber[..8]}…");
                Assert.True(changed, $"{workload.Instance} still presents serial {last.SerialNumber} after {clock.Elapsed.TotalSeconds:0} s with a 1-min TTL");
                Assert.True(issued >= 4, $"{workload.Instance} logged only {issued} issued certificate(s) in {clock.Elapsed.TotalSeconds:0} s with a 1-min TTL (renewal at ~30 s)");

                // Renewal at half life: about one certificate per 30 s, not a storm (NotBefore is backdated 2 min by the CA).
                var most = 3 + (int)(clock.Elapsed.TotalSeconds / 25);
                Assert.True(issued <= most, $"{workload.Instance} logged {issued} issued certificates in {clock.Elapsed.TotalSeconds:0} s with a 1-min TTL; at most {most} expected (renewal at ~30 s)");
                Assert.True(last.NotAfter.ToUniversalTime() > DateTime.UtcNow, $"{workload.Instance} presents an expired certificate (NotAfter {last.NotAfter:O})");
            }

            Console.WriteLine($"[rotation] TTL 1 min, {LoadDuration.TotalMinutes:0} min of load frontend→orders→inventory: {run.Sent} requests, {run.Failures.Count} failed; {rotated} of 3 workloads presented a new serial; {string.Join("; ", lines)}");
            Assert.Empty(run.Failures);
            Assert.True(run.Sent >= 1_000, $"expected a steady load, sent only {run.Sent}");
            foreach (var certificate in first.Values)
            {
                certificate.Dispose();
            }
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>Does a fresh mTLS handshake with the workload and returns the leaf it presented.</summary>
    private static async Task<X509Certificate2> ServerCertificateAsync(WorkloadCertificates.Files files, WorkloadProcess workload)
    {
        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(files.RootCertificate));
        using var identity = X509Certificate2.CreateFromPemFile(files.CertificateChain, files.PrivateKey);
        X509Certificate2? presented = null;
        using var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            PooledConnectionLifetime = TimeSpan.Zero,
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificateContext = SslStreamCertificateContext.Create(identity, []),
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    presented = certificate is null ? null : new X509Certificate2(certificate);
                    return certificate is not null;
                },
            },
        };
        using var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(15) };
        using var request = new HttpRequestMessage(HttpMethod.Get, Https(workload, "/_stats"))
        {
            Version = workload.Service == "inventory" ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await http.SendAsync(request);
        return presented ?? throw new InvalidOperationException($"{workload.Instance} presented no certificate");
    }
}
