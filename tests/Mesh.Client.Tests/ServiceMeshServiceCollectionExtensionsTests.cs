using Mesh.Client.Authorization;
using Mesh.Client.Discovery;
using Mesh.Client.Hosting;
using Mesh.Client.Registration;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Mesh.Client.Xds;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests;

/// <summary>The <see cref="IServiceCollection"/> entry points: <c>AddServiceMesh()</c> = <c>AddServiceMeshCore()</c> + the <c>Mesh</c> section.</summary>
public sealed class ServiceMeshServiceCollectionExtensionsTests : IDisposable
{
    private const string Unreachable = "http://127.0.0.1:1";
    private readonly string _directory = Directory.CreateTempSubdirectory("mesh-di-").FullName;

    public static TheoryData<string> Combinations() =>
    [
        "services twice",
        "core, then services",
        "services, then core",
        "builder, then services",
        "builder twice",
    ];

    [Fact]
    public async Task AddServiceMesh_NoControlPlaneAddress_HostFailsAtStartNamingTheKey()
    {
        using var host = MeshHosts.WithServices(new() { ["Mesh:Service"] = "orders" }, services => services.AddServiceMesh());

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:Address is required", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AddServiceMesh_UnknownKeyInTheMeshSection_HostFailsAtStartNamingTheKey()
    {
        using var host = MeshHosts.WithServices(
            new() { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:Registration:LeaseTTL"] = "00:00:30", ["Mesh:Regsitration:Enabled"] = "false" },
            services => services.AddServiceMesh());

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:Regsitration is not a known option; did you mean Mesh:Registration?", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("LeaseTTL", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddServiceMesh_ContainerWithoutConfiguration_FailsNamingIConfiguration()
    {
        using var provider = new ServiceCollection().AddServiceMesh().BuildServiceProvider();

        var error = Assert.Throws<InvalidOperationException>(() => provider.GetRequiredService<IOptions<ServiceMeshOptions>>().Value);

        Assert.Contains(typeof(IConfiguration).FullName!, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Combinations))]
    public void AddServiceMesh_AnyCombinationTwice_RegistersWhatOneCallDoes(string combination)
    {
        var once = Registrations(builder => builder.Services.AddServiceMesh());

        var twice = Registrations(builder =>
        {
            switch (combination)
            {
                case "services twice":
                    builder.Services.AddServiceMesh().AddServiceMesh();
                    break;
                case "core, then services":
                    builder.Services.AddServiceMeshCore().AddServiceMesh();
                    break;
                case "services, then core":
                    builder.Services.AddServiceMesh().AddServiceMeshCore();
                    break;
                case "builder, then services":
                    builder.AddServiceMesh().Services.AddServiceMesh();
                    break;
                case "builder twice":
                    builder.AddServiceMesh().AddServiceMesh();
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(combination), combination, null);
            }
        });

        Assert.Equal(once, twice);
    }

    [Fact]
    public void AddServiceMesh_OnTheBuilder_RegistersWhatTheServiceCollectionEntryPointDoes()
    {
        Assert.Equal(Registrations(builder => builder.Services.AddServiceMesh()), Registrations(builder => builder.AddServiceMesh()));
    }

    [Fact]
    public void AddServiceMeshCore_RegistersEverythingButTheConfiguration()
    {
        var full = Registrations(builder => builder.Services.AddServiceMesh());
        var core = Registrations(builder => builder.Services.AddServiceMeshCore());

        var onlyInFull = Subtract(full, core);
        Assert.Empty(Subtract(core, full));
        Assert.Contains(onlyInFull, r => r.Contains(nameof(ServiceMeshConfigurationSection), StringComparison.Ordinal));
        Assert.Contains(onlyInFull, r => r.Contains(typeof(IOptionsChangeTokenSource<ServiceMeshOptions>).Name, StringComparison.Ordinal));
    }

    [Fact]
    public async Task AddServiceMesh_CalledTwiceWithConfigure_RunsOnceAndAppliesEveryConfigureAfterBinding()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Address"] = Unreachable,
            ["Mesh:Namespace"] = "bound",
            ["Mesh:Service"] = "orders",
        });
        builder.AddServiceMesh().AddServiceMesh(o => o.Namespace = "shop");
        builder.Services.AddServiceMesh(o => o.Registration.Enabled = false);

        using var host = builder.Build();
        await host.StartAsync();
        var hosted = host.Services.GetServices<IHostedService>().ToList();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        await host.StopAsync();

        Assert.Single(hosted.OfType<XdsClient>());
        Assert.Single(hosted.OfType<WorkloadRegistrationService>());
        Assert.Single(hosted.OfType<WorkloadIdentityService>());
        Assert.Equal("shop", options.Namespace);
        Assert.Equal("orders", options.Service);
        Assert.False(options.Registration.Enabled);
        Assert.Equal("mesh", Assert.Single(report.Entries).Key);
    }

    [Fact]
    public async Task AddServiceMeshCore_DoesNotBindTheMeshSection_OptionsComeFromCodeAndAreValidated()
    {
        var settings = new Dictionary<string, string?> { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:Namespace"] = "shop", ["Mesh:NotAnOption"] = "x" };

        using (var unconfigured = MeshHosts.WithServices(settings, services => services.AddServiceMeshCore()))
        {
            var error = await Assert.ThrowsAsync<OptionsValidationException>(() => unconfigured.StartAsync());
            Assert.Contains("Mesh:ControlPlane:Address is required", error.Message, StringComparison.Ordinal);
            // The advice fits a host that binds nothing: configuration and environment variables would not reach it.
            Assert.Contains("AddServiceMeshCore() reads no configuration, so set ServiceMeshOptions.ControlPlane.Address", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("environment variable", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("NotAnOption", error.Message, StringComparison.Ordinal);
        }

        using var host = MeshHosts.WithServices(settings, services => services
            .AddServiceMeshCore()
            .Configure<ServiceMeshOptions>(o => o.ControlPlane.Address = new Uri("http://127.0.0.1:2")));
        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        await host.StopAsync();

        Assert.Equal(new Uri("http://127.0.0.1:2"), options.ControlPlane.Address);
        Assert.Equal("default", options.Namespace);
    }

    [Fact]
    public void AddServiceMesh_SecureConfiguration_ReachesEveryServiceThroughTheContainer()
    {
        using var ca = new TestCa();
        var root = Path.Combine(_directory, "root-cert.pem");
        File.WriteAllText(root, ca.RootPem);
        using var host = MeshHosts.WithServices(
            new()
            {
                ["Mesh:ControlPlane:Address"] = "https://127.0.0.1:1",
                ["Mesh:ControlPlane:RootCertificate"] = root,
                ["Mesh:Identity:Token"] = "t",
                ["Mesh:Service"] = "orders",
                ["Mesh:Namespace"] = "shop",
                ["Mesh:Inbound:Mode"] = "Permissive",
            },
            services => services.AddServiceMesh());
        var provider = host.Services;

        var xds = provider.GetRequiredService<XdsClient>();
        Assert.Same(xds, provider.GetRequiredService<IMeshSnapshotSource>());
        Assert.Same(xds, Assert.Single(provider.GetServices<IHostedService>().OfType<XdsClient>()));
        Assert.Equal(new Uri("https://127.0.0.1:1"), xds.ControlPlaneAddress);

        var certificates = provider.GetRequiredService<WorkloadCertificateStore>();
        Assert.Same(certificates, provider.GetRequiredService<IWorkloadCertificateSource>());
        Assert.True(certificates.IsSecure);
        Assert.Equal(ca.Root.Thumbprint, Assert.Single(certificates.Bundle.Roots).Thumbprint);

        Assert.True(provider.GetRequiredService<InboundPolicyStore>().IsMeshServed);
        Assert.Equal(PeerAuthenticationMode.Permissive, provider.GetRequiredService<IPeerAuthenticationModeSource>().GetMode(8080));
        Assert.Equal("shop", provider.GetRequiredService<MeshHostNames>().Namespace);
        Assert.NotNull(provider.GetRequiredService<MeshRouter>());
    }

    [Fact]
    public void AddServiceMesh_PlaintextConfiguration_ReachesEveryServiceThroughTheContainer()
    {
        using var host = MeshHosts.WithServices(
            new() { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:Service"] = "orders" },
            services => services.AddServiceMesh());
        var provider = host.Services;

        Assert.False(provider.GetRequiredService<WorkloadCertificateStore>().IsSecure);
        Assert.Empty(provider.GetRequiredService<WorkloadCertificateStore>().Bundle.Roots);
        Assert.False(provider.GetRequiredService<InboundPolicyStore>().IsMeshServed);
        Assert.Equal(PeerAuthenticationMode.Strict, provider.GetRequiredService<IPeerAuthenticationModeSource>().GetMode(8080));
        Assert.Equal("default", provider.GetRequiredService<MeshHostNames>().Namespace);
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>What <paramref name="add"/> registers on a fresh application builder, one line per registration, sorted.</summary>
    private static List<string> Registrations(Action<HostApplicationBuilder> add)
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        var before = builder.Services.Select(Describe).ToList();
        add(builder);
        return Subtract(builder.Services.Select(Describe).ToList(), before);
    }

    private static string Describe(ServiceDescriptor descriptor) => descriptor.ToString();

    private static List<string> Subtract(List<string> from, List<string> remove)
    {
        var rest = from.ToList();
        foreach (var item in remove)
        {
            rest.Remove(item);
        }

        rest.Sort(StringComparer.Ordinal);
        return rest;
    }
}
