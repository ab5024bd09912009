using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Grpc.Core;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>Single-use tokens, reserved identities and the bootstrap certificate lifetime, tried the way an attacker would.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class TokenHardeningTests
{
    private const string ControlPlaneId = "spiffe://cluster.local/ns/mesh-system/sa/mesh-control-plane";

    [Fact]
    public async Task CreateCertificate_SingleUseTokenReplayed_SecondUnauthenticated()
    {
        await using var cp = await SecureHost.StartAsync();
        var token = cp.Token("default", "orders");
        await cp.IssueAsync(token);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(token));

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains("was already used; bootstrap tokens are single-use unless minted as reusable", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_ReusableToken_CertifiesAgain()
    {
        await using var cp = await SecureHost.StartAsync();
        var token = cp.Token("default", "orders", reusable: true);

        var (_, first) = await cp.IssueAsync(token);
        var (_, second) = await cp.IssueAsync(token);

        Assert.NotEqual(first.SerialNumber, second.SerialNumber);
        Assert.Equal(0, ((SpentTokens)cp.Host.Services.GetService(typeof(SpentTokens))!).Count);
    }

    [Fact]
    public async Task CreateCertificate_SpentTokenAfterRestart_StillRefused()
    {
        var root = SecureHost.NewRoot();
        try
        {
            string token;
            await using (var first = await SecureHost.StartAsync(root))
            {
                token = first.Token("default", "orders");
                await first.IssueAsync(token);
            }

            await using var restarted = await SecureHost.StartAsync(root);
            var ex = await Assert.ThrowsAsync<RpcException>(() => restarted.IssueAsync(token));

            Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
            Assert.Contains("was already used", ex.Status.Detail, StringComparison.Ordinal);
            var (_, leaf) = await restarted.IssueAsync(restarted.Token("default", "orders"));
            Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], CertificateAuthority.UriSans(leaf));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task CreateCertificate_ConcurrentCsrsWithOneSingleUseToken_ExactlyOneCertificate()
    {
        await using var cp = await SecureHost.StartAsync();
        var token = cp.Token("default", "orders");
        var client = cp.CaClient();
        using var start = new SemaphoreSlim(0);
        var attempts = Enumerable.Range(0, 8).Select(async _ =>
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var csr = SecureHost.Csr(key);
            await start.WaitAsync();
            try
            {
                await client.CreateCertificateAsync(new IstioCertificateRequest { Csr = csr }, SecureHost.Bearer(token));
                return "issued";
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unauthenticated && ex.Status.Detail.Contains("was already used", StringComparison.Ordinal))
            {
                return "refused";
            }
        }).ToList();

        start.Release(attempts.Count);
        var outcomes = await Task.WhenAll(attempts);

        Assert.Equal(1, outcomes.Count(o => o == "issued"));
        Assert.Equal(attempts.Count - 1, outcomes.Count(o => o == "refused"));
    }

    [Fact]
    public async Task CreateCertificate_BadCsr_DoesNotSpendTheToken()
    {
        await using var cp = await SecureHost.StartAsync();
        var token = cp.Token("default", "orders");

        var bad = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = "garbage" }, SecureHost.Bearer(token)).ResponseAsync);
        var (_, leaf) = await cp.IssueAsync(token);

        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], CertificateAuthority.UriSans(leaf));
    }

    [Fact]
    public async Task CreateCertificate_WithToken_CappedAtBootstrapMaximum_RenewalWithTheSvidGetsTheNormalTtl()
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:Bootstrap:MaxCertificateTtl=00:10:00"]);
        var before = DateTimeOffset.UtcNow;

        var (_, bootstrap) = await cp.IssueAsync(cp.Token("default", "orders"), ttlSeconds: 86_400);
        var (_, renewed) = await cp.IssueAsync(clientCertificate: bootstrap, ttlSeconds: 86_400);

        Assert.InRange(Lifetime(bootstrap, before), TimeSpan.FromMinutes(9), TimeSpan.FromMinutes(11));
        Assert.InRange(Lifetime(renewed, before), TimeSpan.FromHours(23.9), TimeSpan.FromHours(24.1));
    }

    [Fact]
    public async Task PostTokens_ControlPlanesOwnIdentity_BadRequest()
    {
        await using var cp = await SecureHost.StartAsync();

        using var response = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), new { @namespace = "mesh-system", serviceAccount = "mesh-control-plane" });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains($"{ControlPlaneId} is a reserved identity (the control plane's own); no bootstrap token may name it", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("kube-system", "default", "ControlPlane:Bootstrap:ReservedIdentities 'kube-system/*'")]
    [InlineData("ops", "admin", "ControlPlane:Bootstrap:ReservedIdentities 'ops/admin'")]
    public async Task PostTokens_ConfiguredReservedIdentity_BadRequestNamingTheEntry(string ns, string sa, string expected)
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:Bootstrap:ReservedIdentities:0=kube-system/*", "--ControlPlane:Bootstrap:ReservedIdentities:1=ops/admin"]);

        using var response = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), new { @namespace = ns, serviceAccount = sa });
        using var allowed = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), new { @namespace = "ops", serviceAccount = "viewer" });

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
    }

    [Fact]
    public async Task CreateCertificate_TokenMintedBeforeTheIdentityWasReserved_Unauthenticated()
    {
        var root = SecureHost.NewRoot();
        try
        {
            string token;
            await using (var before = await SecureHost.StartAsync(root))
            {
                token = before.Token("ops", "admin");
            }

            await using var cp = await SecureHost.StartAsync(root, ["--ControlPlane:Bootstrap:ReservedIdentities:0=ops/admin"]);
            var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(token));

            Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
            Assert.Contains("bearer token names spiffe://cluster.local/ns/ops/sa/admin is a reserved identity (ControlPlane:Bootstrap:ReservedIdentities 'ops/admin')", ex.Status.Detail, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task TokenCli_ReservedIdentity_RefusedWithExitCode2()
    {
        await using var cp = await SecureHost.StartAsync();

        var (exitCode, stdout, stderr) = await RunCliAsync(cp, "--namespace", "mesh-system", "--service-account", "mesh-control-plane");

        Assert.Equal(2, exitCode);
        Assert.Equal(string.Empty, stdout);
        Assert.Contains($"{ControlPlaneId} is a reserved identity", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TokenCli_ReservedInAppsettingsJson_RefusedAsTheServerWould()
    {
        await using var cp = await SecureHost.StartAsync();
        var directory = Directory.CreateTempSubdirectory("mesh-cli-").FullName;
        try
        {
            await File.WriteAllTextAsync(Path.Combine(directory, "appsettings.json"), """{"ControlPlane":{"Bootstrap":{"ReservedIdentities":["ops/*"]}}}""");

            var (exitCode, stdout, stderr) = await RunCliInAsync(cp, directory, "--namespace", "ops", "--service-account", "admin");

            Assert.Equal(2, exitCode);
            Assert.Equal(string.Empty, stdout);
            Assert.Contains("ControlPlane:Bootstrap:ReservedIdentities 'ops/*'", stderr, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task TokenCli_Reusable_TokenCertifiesTwice_WithoutTheFlag_Once()
    {
        await using var cp = await SecureHost.StartAsync();

        var reusable = await RunCliAsync(cp, "--namespace", "default", "--service-account", "orders", "--reusable");
        var single = await RunCliAsync(cp, "--namespace", "default", "--service-account", "orders");

        Assert.True(reusable.ExitCode == 0, reusable.Stderr);
        await cp.IssueAsync(reusable.Stdout.Trim());
        await cp.IssueAsync(reusable.Stdout.Trim());
        Assert.True(single.ExitCode == 0, single.Stderr);
        await cp.IssueAsync(single.Stdout.Trim());
        await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(single.Stdout.Trim()));
    }

    [Fact]
    public async Task PostTokens_ReusableField_MintsAReusableToken()
    {
        await using var cp = await SecureHost.StartAsync();

        using var response = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), new { @namespace = "default", serviceAccount = "orders", reusable = true });
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var token = body.RootElement.GetProperty("token").GetString()!;

        await cp.IssueAsync(token);
        await cp.IssueAsync(token);
    }

    [Fact]
    public void SpentTokens_ExpiredEntriesPruned_FileCompactedAndReloaded()
    {
        var root = SecureHost.NewRoot();
        try
        {
            var options = new Configuration.ControlPlaneOptions { StateDirectory = root };
            var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
            var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger<SpentTokens>.Instance;
            var store = new SpentTokens(options, time, logger);
            Assert.True(store.TryConsume("short", time.GetUtcNow().AddMinutes(1), out _));
            Assert.True(store.TryConsume("long", time.GetUtcNow().AddHours(2), out _));
            Assert.False(store.TryConsume("long", time.GetUtcNow().AddHours(2), out var reason));
            Assert.Contains("long was already used", reason, StringComparison.Ordinal);

            time.Advance(TimeSpan.FromMinutes(5));
            var reloaded = new SpentTokens(options, time, logger);

            Assert.Equal(1, reloaded.Count);
            Assert.True(reloaded.IsSpent("long"));
            Assert.False(reloaded.IsSpent("short"));
            Assert.Equal(["long"], File.ReadAllLines(reloaded.FilePath).Select(l => l.Split(' ')[0]));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(reloaded.FilePath));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void SpentTokens_Full_RefusesNewTokensUntilSomeExpire()
    {
        var root = SecureHost.NewRoot();
        try
        {
            var options = new Configuration.ControlPlaneOptions { StateDirectory = root };
            var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
            var store = new SpentTokens(options, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<SpentTokens>.Instance, capacity: 2);
            Assert.True(store.TryConsume("a", time.GetUtcNow().AddMinutes(10), out _));
            Assert.True(store.TryConsume("b", time.GetUtcNow().AddHours(2), out _));

            var full = store.TryConsume("c", time.GetUtcNow().AddHours(1), out var reason);
            time.Advance(TimeSpan.FromMinutes(15));
            var afterExpiry = store.TryConsume("c", time.GetUtcNow().AddHours(1), out _);

            Assert.False(full);
            Assert.Contains("already remembers 2 unexpired single-use tokens", reason, StringComparison.Ordinal);
            Assert.True(afterExpiry);
            Assert.Equal(2, store.Count);
            Assert.False(store.IsSpent("a"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void SpentTokens_TornLastLine_IgnoredAndLaterEntriesKept()
    {
        var root = SecureHost.NewRoot();
        try
        {
            var options = new Configuration.ControlPlaneOptions { StateDirectory = root };
            var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
            var logger = Microsoft.Extensions.Logging.Abstractions.NullLogger<SpentTokens>.Instance;
            var store = new SpentTokens(options, time, logger);
            Assert.True(store.TryConsume("a", time.GetUtcNow().AddHours(1), out _));
            File.AppendAllText(store.FilePath, "b 17");

            var reloaded = new SpentTokens(options, time, logger);
            Assert.True(reloaded.TryConsume("c", time.GetUtcNow().AddHours(1), out _));
            var again = new SpentTokens(options, time, logger);

            Assert.True(again.IsSpent("a"));
            Assert.True(again.IsSpent("c"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static TimeSpan Lifetime(System.Security.Cryptography.X509Certificates.X509Certificate2 leaf, DateTimeOffset before) =>
        new DateTimeOffset(leaf.NotAfter.ToUniversalTime()) - before;

    private static Task<(int ExitCode, string Stdout, string Stderr)> RunCliAsync(SecureHost cp, params string[] args) => RunCliInAsync(cp, workingDirectory: null, args);

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunCliInAsync(SecureHost cp, string? workingDirectory, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory ?? string.Empty };
        start.ArgumentList.Add(typeof(ControlPlaneHost).Assembly.Location);
        start.ArgumentList.Add("token");
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.ArgumentList.Add($"--ControlPlane:StateDirectory={cp.StateDirectory}");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (process.ExitCode, await stdout, await stderr);
    }
}
