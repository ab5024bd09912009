using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// Tokens are single-use now: a restarted workload either gets a new one, or resumes from its opt-in credential file
/// (Mesh:Identity:CredentialFile) and renews with the saved SVID. Real control plane, real workload processes.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CredentialFileRestartTests(ITestOutputHelper output)
{
    [Fact]
    public async Task WorkloadRestart_WithCredentialFile_RenewsWithItsSvid_WithoutFileTheSpentTokenIsRefused()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var scratch = Directory.CreateTempSubdirectory("mesh-it-credential-").FullName;
        try
        {
            var credentialFile = Path.Combine(scratch, "orders.pem");
            var token = await mesh.ControlPlane.MintTokenAsync("orders");
            var withFile = mesh.ControlPlane.SecureEnvironment(token);
            withFile["Mesh__Identity__CredentialFile"] = credentialFile;

            var first = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", withFile);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(credentialFile));
            await first.Process.StopAsync(TimeSpan.FromSeconds(15));

            // Same environment, same (now spent) token: it resumes from the file and renews with the saved certificate.
            var resumed = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1-restarted", withFile);
            await resumed.Process.WaitForLineAsync(@"Resuming with the workload certificate for spiffe://cluster\.local/ns/default/sa/orders from Mesh:Identity:CredentialFile", TimeSpan.FromSeconds(30));
            await resumed.Process.WaitForLineAsync(@"Workload certificate for spiffe://cluster\.local/ns/default/sa/orders issued", TimeSpan.FromSeconds(60));

            // Without the file the spent token buys nothing, and the workload says why.
            var withoutFile = mesh.ControlPlane.SecureEnvironment(token);
            var refused = await mesh.StartWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1-no-file", withoutFile);
            var why = await refused.Process.WaitForLineAsync(@"Workload certificate request to \S+ failed: (.*was already used.*)", TimeSpan.FromSeconds(60));

            Console.WriteLine($"[credential-file] restart with the file: renewed with the saved SVID; restart without it, spent token: {why.Groups[1].Value}");
            Assert.Contains("Unauthenticated", why.Groups[1].Value, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }
}
