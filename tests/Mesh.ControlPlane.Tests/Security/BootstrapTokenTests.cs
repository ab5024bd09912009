using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Tests.Security;

public class BootstrapTokenTests
{
    [Fact]
    public async Task TokenCli_WhileControlPlaneRuns_PrintsTokenTheCaAccepts()
    {
        await using var cp = await SecureHost.StartAsync();
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            ArgumentList =
            {
                typeof(ControlPlaneHost).Assembly.Location, "token", "--namespace", "default", "--service-account", "orders",
                "--ttl", "00:10:00", $"--ControlPlane:StateDirectory={cp.StateDirectory}",
            },
        };
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        Assert.True(process.ExitCode == 0, await stderr);
        var token = (await stdout).Trim();
        Assert.DoesNotContain('\n', token);
        var (_, leaf) = await cp.IssueAsync(token);
        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], CertificateAuthority.UriSans(leaf));
    }

    [Fact]
    public void TokenCli_StateDirectoryOfNoControlPlane_ExitsOneNamingTheKeyAndCreatesNothing()
    {
        // The tool run from the wrong directory (or with a misspelt --ControlPlane:StateDirectory) must not make a new
        // signing key and print a token every control plane refuses.
        var state = Path.Combine(Path.GetTempPath(), $"mesh-no-control-plane-{Guid.NewGuid():N}");
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();

        var exitCode = TokenCommand.Run(["--namespace", "default", "--service-account", "orders", $"--ControlPlane:StateDirectory={state}"], stdout, stderr);

        Assert.Equal(1, exitCode);
        Assert.Contains($"No token signing key at {Path.Combine(state, "ca", "token-signing-key.pem")}", stderr.ToString(), StringComparison.Ordinal);
        Assert.Empty(stdout.ToString());
        Assert.False(Directory.Exists(state));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void TokenCli_CorruptSigningKey_ExitsOneAndLeavesTheFileAsItWas()
    {
        var state = Path.Combine(Path.GetTempPath(), $"mesh-corrupt-key-{Guid.NewGuid():N}");
        var key = Path.Combine(state, "ca", "token-signing-key.pem");
        Directory.CreateDirectory(Path.GetDirectoryName(key)!);
        File.WriteAllText(key, "not a key");
        File.SetUnixFileMode(key, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        try
        {
            var exitCode = TokenCommand.Run(["--namespace", "default", "--service-account", "orders", $"--ControlPlane:StateDirectory={state}"], stdout, stderr);

            Assert.Equal(1, exitCode);
            Assert.Contains($"Private key file {key} is not a PEM ECDSA private key", stderr.ToString(), StringComparison.Ordinal);
            Assert.Contains("the token command never replaces it", stderr.ToString(), StringComparison.Ordinal);
            Assert.Empty(stdout.ToString());
            Assert.Equal("not a key", File.ReadAllText(key));
        }
        finally
        {
            Directory.Delete(state, recursive: true);
        }
    }

    [Fact]
    public async Task PostTokens_ValidRequest_ReturnsTokenAndExpiry()
    {
        await using var cp = await SecureHost.StartAsync();
        var before = DateTimeOffset.UtcNow;

        using var response = await cp.Admin.PostAsJsonAsync(new Uri("/tokens", UriKind.Relative), new { @namespace = "shop", serviceAccount = "cart", ttl = "00:30:00" });

        response.EnsureSuccessStatusCode();
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var token = body.RootElement.GetProperty("token").GetString()!;
        var expires = body.RootElement.GetProperty("expires").GetDateTimeOffset();
        Assert.InRange(expires - before, TimeSpan.FromMinutes(29), TimeSpan.FromMinutes(31));
        var (_, leaf) = await cp.IssueAsync(token);
        Assert.Equal(["spiffe://cluster.local/ns/shop/sa/cart"], CertificateAuthority.UriSans(leaf));
    }

    [Theory]
    [InlineData("""{"namespace":"Default","serviceAccount":"orders"}""", "namespace 'Default' must be a DNS label")]
    [InlineData("""{"namespace":"default","serviceAccount":"a/b"}""", "serviceAccount 'a/b' must be a DNS label")]
    [InlineData("""{"namespace":"default","serviceAccount":"orders","ttl":"2.00:00:00"}""", "must be more than 0 and at most 1.00:00:00")]
    [InlineData("""{"namespace":"default","serviceAccount":"orders","ttl":"soon"}""", "ttl 'soon' must be a TimeSpan")]
    public async Task PostTokens_InvalidRequest_BadRequestNamingTheField(string json, string expected)
    {
        await using var cp = await SecureHost.StartAsync();

        using var response = await cp.Admin.PostAsync(new Uri("/tokens", UriKind.Relative), new StringContent(json, System.Text.Encoding.UTF8, "application/json"));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(expected, await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_WithinSkewAfterExpiry_AcceptedThenRejected()
    {
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        using var tokens = new BootstrapTokens(ECDsa.Create(ECCurve.NamedCurves.nistP256), "cluster.local", time);
        var (token, _) = tokens.Mint("default", "orders", TimeSpan.FromMinutes(5));

        time.Advance(TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(20));
        var withinSkew = tokens.Validate(token, out _);
        time.Advance(TimeSpan.FromSeconds(20));
        var expired = tokens.Validate(token, out var reason);

        Assert.Equal(new WorkloadIdentity("cluster.local", "default", "orders"), withinSkew?.Identity);
        Assert.Null(expired);
        Assert.StartsWith("bearer token expired at", reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_TokenFromAnotherControlPlane_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync();
        await using var other = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var ex = await Assert.ThrowsAsync<Grpc.Core.RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, SecureHost.Bearer(other.Token("default", "orders"))).ResponseAsync);

        Assert.Equal(Grpc.Core.StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains("minted by another control plane", ex.Status.Detail, StringComparison.Ordinal);
    }
}
