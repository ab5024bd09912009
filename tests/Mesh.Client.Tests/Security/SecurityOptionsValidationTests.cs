using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests.Security;

public class SecurityOptionsValidationTests
{
    [Fact]
    public async Task StartAsync_HttpsWithoutRootOrToken_FailsNamingEveryKey()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = "https://127.0.0.1:1" });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:RootCertificate is required with an https:// control plane", error.Message, StringComparison.Ordinal);
        Assert.Contains("Mesh:Identity:Token or Mesh:Identity:TokenFile is required", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Mesh:Identity:TrustDomain", "Cluster.Local", "Mesh:Identity:TrustDomain 'Cluster.Local' must be a SPIFFE trust domain")]
    [InlineData("Mesh:Identity:CertificateTtl", "00:00:30", "Mesh:Identity:CertificateTtl (00:00:30) must be between")]
    [InlineData("Mesh:Inbound:Mode", "Mutual", "Mesh:Inbound:Mode 'Mutual' must be Strict, Permissive or Disable")]
    [InlineData("Mesh:ControlPlane:Identity", "spiffe://cluster.local", "Mesh:ControlPlane:Identity 'spiffe://cluster.local' is not a workload SPIFFE ID")]
    [InlineData("Mesh:ControlPlane:Identity", "spiffe://cluster.local/control-plane", "Mesh:ControlPlane:Identity 'spiffe://cluster.local/control-plane' is not a workload SPIFFE ID")]
    [InlineData("Mesh:ServiceAccount", "orders.v1", "Mesh:ServiceAccount 'orders.v1' must be a DNS label")]
    [InlineData("Mesh:ControlPlane:RootCertificate", "/nonexistent/root.pem", "Mesh:ControlPlane:RootCertificate '/nonexistent/root.pem' does not exist")]
    [InlineData("Mesh:Identity:TokenFile", "/nonexistent/token", "Mesh:Identity:TokenFile '/nonexistent/token' does not exist")]
    [InlineData("Mesh:Inbound:Mod", "Strict", "Mesh:Inbound:Mod is not a known option; did you mean Mesh:Inbound:Mode?")]
    [InlineData("Mesh:Identity:CredentialFile", "/nonexistent/dir/orders.pem", "Mesh:Identity:CredentialFile '/nonexistent/dir/orders.pem': its directory '/nonexistent/dir' does not exist")]
    [InlineData("Mesh:Identity:CredentialFile", "/tmp", "Mesh:Identity:CredentialFile '/tmp' must be a file path")]
    [InlineData("Mesh:Identity:CredentialFile", " ", "Mesh:Identity:CredentialFile ' ' must be a file path")]
    public async Task StartAsync_InvalidSecurityOption_FailsNamingTheKey(string key, string value, string expected)
    {
        var settings = new Dictionary<string, string?> { ["Mesh:ControlPlane:Address"] = "https://127.0.0.1:1", [key] = value };
        if (key != "Mesh:Identity:TokenFile")
        {
            settings["Mesh:Identity:Token"] = "t";
        }

        using var host = Build(settings);

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_PlaintextControlPlane_NeedsNoIdentitySettings()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = "http://127.0.0.1:1", ["Mesh:Inbound:Mode"] = "strict" });

        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        await host.StopAsync();

        Assert.Equal("cluster.local", options.Identity.TrustDomain);
        Assert.Equal(TimeSpan.FromHours(24), options.Identity.CertificateTtl);
    }

    /// <summary>A host with <c>builder.AddServiceMesh()</c>, the README's entry point.</summary>
    protected virtual IHost Build(Dictionary<string, string?> settings)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.AddServiceMesh();
        return builder.Build();
    }
}

/// <summary>Every test above through <c>services.AddServiceMesh()</c> on a host that is not an IHostApplicationBuilder.</summary>
public sealed class SecurityOptionsValidationThroughServicesTests : SecurityOptionsValidationTests
{
    protected override IHost Build(Dictionary<string, string?> settings) => MeshHosts.WithServices(settings, services => services.AddServiceMesh());
}
