using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests.Hosting;

/// <summary>Mesh:ControlPlane:Addresses (replicas in priority order) next to Mesh:ControlPlane:Address.</summary>
public sealed class ControlPlaneAddressesTests
{
    [Fact]
    public async Task Start_AddressesList_BindsInOrder_AndAddressStaysUnset()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:1",
            ["Mesh:ControlPlane:Addresses:1"] = "http://127.0.0.1:2",
        });

        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        var channel = host.Services.GetRequiredService<Mesh.Client.Xds.ControlPlaneChannel>();
        await host.StopAsync();

        Assert.Null(options.ControlPlane.Address);
        Assert.Equal([new Uri("http://127.0.0.1:1"), new Uri("http://127.0.0.1:2")], channel.Addresses);
    }

    [Fact]
    public async Task Start_AddressAlone_IsTheOnlyReplica()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = "http://127.0.0.1:1" });

        await host.StartAsync();
        var channel = host.Services.GetRequiredService<Mesh.Client.Xds.ControlPlaneChannel>();
        await host.StopAsync();

        Assert.Equal([new Uri("http://127.0.0.1:1")], channel.Addresses);
    }

    [Theory]
    [InlineData("both", "Mesh:ControlPlane:Address and Mesh:ControlPlane:Addresses are both set; set only one")]
    [InlineData("mixed", "Mesh:ControlPlane:Addresses:1 'https://127.0.0.1:2/' is https:// but Mesh:ControlPlane:Addresses:0 is http://; every replica must use the same scheme")]
    [InlineData("duplicate", "Mesh:ControlPlane:Addresses:1 'http://127.0.0.1:1/xds' repeats Mesh:ControlPlane:Addresses:0; list each replica once")]
    [InlineData("duplicate-case", "Mesh:ControlPlane:Addresses:1 'http://LOCALHOST:1' repeats Mesh:ControlPlane:Addresses:0")]
    [InlineData("relative", "Mesh:ControlPlane:Addresses:1 must be an absolute http(s) URI, not 'controlplane:15010'")]
    [InlineData("scheme", "Mesh:ControlPlane:Addresses:0 must be an absolute http(s) URI, not 'dns:///mesh:15012'")]
    [InlineData("comma", "Mesh:ControlPlane:Addresses is a list, not one value; set Mesh:ControlPlane:Addresses:0, Mesh:ControlPlane:Addresses:1, … (environment: Mesh__ControlPlane__Addresses__0, …)")]
    [InlineData("index", "Mesh:ControlPlane:Addresses:first is not a list index")]
    public async Task Start_BadAddresses_FailsNamingTheKey(string input, string expected)
    {
        var settings = input switch
        {
            "both" => new Dictionary<string, string?> { ["Mesh:ControlPlane:Address"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:2" },
            "mixed" => new() { ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses:1"] = "https://127.0.0.1:2/" },
            "duplicate" => new() { ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses:1"] = "http://127.0.0.1:1/xds" },
            "duplicate-case" => new() { ["Mesh:ControlPlane:Addresses:0"] = "http://localhost:1", ["Mesh:ControlPlane:Addresses:1"] = "http://LOCALHOST:1" },
            "relative" => new() { ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses:1"] = "controlplane:15010" },
            "scheme" => new() { ["Mesh:ControlPlane:Addresses:0"] = "dns:///mesh:15012" },
            "comma" => new() { ["Mesh:ControlPlane:Address"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses"] = "http://127.0.0.1:1,http://127.0.0.1:2" },
            "index" => new() { ["Mesh:ControlPlane:Addresses:0"] = "http://127.0.0.1:1", ["Mesh:ControlPlane:Addresses:first"] = "http://127.0.0.1:2" },
            _ => throw new ArgumentOutOfRangeException(nameof(input)),
        };
        using var host = Build(settings);

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_HttpsReplicas_RequireTheRootCertificate()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Addresses:0"] = "https://127.0.0.1:1",
            ["Mesh:ControlPlane:Addresses:1"] = "https://127.0.0.1:2",
        });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:RootCertificate is required with an https:// control plane", error.Message, StringComparison.Ordinal);
    }

    private static IHost Build(Dictionary<string, string?> settings) => MeshHosts.WithServices(settings, services => services.AddServiceMesh());
}
