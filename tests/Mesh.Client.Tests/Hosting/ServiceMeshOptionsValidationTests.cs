using Mesh.Client.Xds;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Tests.Hosting;

public class ServiceMeshOptionsValidationTests
{
    private const string Unreachable = "http://127.0.0.1:1";

    [Fact]
    public async Task StartAsync_ValidConfiguration_BindsEveryOption()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Address"] = Unreachable,
            ["Mesh:Service"] = "orders",
            ["Mesh:Namespace"] = "shop",
            ["Mesh:Labels:version"] = "v2",
            ["Mesh:Locality"] = "us-east/zone-a/rack-1",
            ["Mesh:Registration:LeaseTtl"] = "00:00:30",
            ["Mesh:Resilience:AttemptTimeout"] = "00:00:02",
        });

        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
        await host.StopAsync();

        Assert.Equal(new Uri(Unreachable), options.ControlPlane.Address);
        Assert.Equal("shop", options.Namespace);
        Assert.Equal("v2", options.Labels["version"]);
        Assert.Equal(new Mesh.Xds.Envoy.Config.Core.V3.Locality { Region = "us-east", Zone = "zone-a", SubZone = "rack-1" }, XdsNode.Create(options, "app", "10.0.0.1", "x").Locality);
        Assert.Equal(TimeSpan.FromSeconds(30), options.Registration.LeaseTtl);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Resilience.AttemptTimeout);
    }

    [Theory]
    [InlineData(null, null, null, "Mesh:ControlPlane:Address is required")]
    [InlineData("Mesh:ControlPlane:Address", "controlplane:15010", null, "Mesh:ControlPlane:Address must be an absolute http(s) URI")]
    [InlineData("Mesh:ControlPlane:Address", "/xds", null, "Mesh:ControlPlane:Address must be an absolute http(s) URI")]
    [InlineData("Mesh:Namespace", "Shop_1", null, "Mesh:Namespace 'Shop_1' must be a DNS label")]
    [InlineData("Mesh:Resilience:AttemptTimeout", "00:01:00", null, "Mesh:Resilience:AttemptTimeout (00:01:00) must not exceed Mesh:Resilience:TotalTimeout (00:00:30)")]
    [InlineData("Mesh:Registration:LeaseTtl", "00:10:00", null, "Mesh:Registration:LeaseTtl (00:10:00) must be between 00:00:01 and 00:05:00")]
    [InlineData("Mesh:ControlPlane:Adress", "http://x", null, "Mesh:ControlPlane:Adress is not a known option; did you mean Mesh:ControlPlane:Address?")]
    [InlineData("Mesh:Resilience:TotalTimeout", "-00:00:01", null, "Mesh:Resilience:TotalTimeout (-00:00:01) must be positive")]
    [InlineData("Mesh:Locality", "us-east//a", null, "Mesh:Locality 'us-east//a' must look like region, region/zone or region/zone/subzone")]
    [InlineData("Mesh:Locality", "us-east/a/b/c", null, "Mesh:Locality 'us-east/a/b/c' must look like region, region/zone or region/zone/subzone")]
    [InlineData("Mesh:Locality", "us-east/*", null, "Mesh:Locality 'us-east/*' must be at most 256 printable ASCII characters without spaces or '*'")]
    [InlineData("Mesh:Locality", "us east", null, "Mesh:Locality 'us east' must be at most 256 printable ASCII characters")]
    [InlineData("Mesh:Telemetry:ClusterId", "east cluster", null, "Mesh:Telemetry:ClusterId 'east cluster' must be a label value")]
    [InlineData("Mesh:Telemetry:ClusterId", "", null, "Mesh:Telemetry:ClusterId '' must be a label value")]
    [InlineData("Mesh:Telemetry:Workload", "-orders", null, "Mesh:Telemetry:Workload '-orders' must be a label value")]
    [InlineData("Mesh:Labels:version", "v 2", null, "Mesh:Labels:version 'v 2' must be a label value")]
    [InlineData("Mesh:Telemetry:ClusterID2", "east", null, "Mesh:Telemetry:ClusterID2 is not a known option")]
    [InlineData("Mesh:Telemetry:AccessLog:SampleRate", "1.5", null, "Mesh:Telemetry:AccessLog:SampleRate (1.5) must be between 0 and 1")]
    [InlineData("Mesh:Telemetry:AccessLog:SampleRate", "-0.1", null, "Mesh:Telemetry:AccessLog:SampleRate (-0.1) must be between 0 and 1")]
    [InlineData("Mesh:Telemetry:AccessLog:SampleRate", "NaN", null, "Mesh:Telemetry:AccessLog:SampleRate (NaN) must be between 0 and 1")]
    [InlineData("Mesh:Telemetry:AccessLog:SampleRatio", "0.5", null, "Mesh:Telemetry:AccessLog:SampleRatio is not a known option; did you mean Mesh:Telemetry:AccessLog:SampleRate?")]
    public async Task StartAsync_InvalidOption_FailsNamingTheKey(string? key, string? value, string? unused, string expected)
    {
        _ = unused;
        var settings = new Dictionary<string, string?>();
        if (key != "Mesh:ControlPlane:Address" && value is not null)
        {
            settings["Mesh:ControlPlane:Address"] = Unreachable;
        }

        if (key == "Mesh:ControlPlane:Adress")
        {
            settings.Remove("Mesh:ControlPlane:Address");
        }

        if (key is not null)
        {
            settings[key] = value;
        }

        using var host = Build(settings);

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_AccessLog_BindsEveryOption()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Address"] = Unreachable,
            ["Mesh:Telemetry:AccessLog:Enabled"] = "true",
            ["Mesh:Telemetry:AccessLog:SampleRate"] = "0.25",
            ["Mesh:Telemetry:AccessLog:AlwaysLogErrors"] = "false",
            ["Mesh:Telemetry:AccessLog:IncludeQuery"] = "true",
        });

        await host.StartAsync();
        var accessLog = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value.Telemetry.AccessLog;
        await host.StopAsync();

        Assert.Equal((true, 0.25, false, true), (accessLog.Enabled, accessLog.SampleRate, accessLog.AlwaysLogErrors, accessLog.IncludeQuery));
    }

    [Fact]
    public async Task StartAsync_AccessLogThatLogsNothing_FailsNamingBothKeys()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Address"] = Unreachable,
            ["Mesh:Telemetry:AccessLog:Enabled"] = "true",
            ["Mesh:Telemetry:AccessLog:SampleRate"] = "0",
            ["Mesh:Telemetry:AccessLog:AlwaysLogErrors"] = "false",
        });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:Telemetry:AccessLog:SampleRate is 0 and Mesh:Telemetry:AccessLog:AlwaysLogErrors is false: the enabled access log would log nothing", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_AccessLogEnabledNotABoolean_FailsNamingTheKey()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = Unreachable, ["Mesh:Telemetry:AccessLog:Enabled"] = "yes" });

        // The configuration binder refuses the value before validation runs; its message names the key.
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());

        Assert.Contains("'Mesh:Telemetry:AccessLog:Enabled'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_SeveralErrors_ReportsEveryOne()
    {
        using var host = Build(new() { ["Mesh:Namespace"] = "BAD", ["Mesh:Servce"] = "orders" });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:Address is required", error.Message, StringComparison.Ordinal);
        Assert.Contains("Mesh:Namespace 'BAD'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Mesh:Servce is not a known option; did you mean Mesh:Service?", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Readiness_ControlPlaneUnreachable_HostStartsAndMeshIsUnhealthy()
    {
        using var host = Build(new() { ["Mesh:ControlPlane:Address"] = Unreachable });
        await host.StartAsync();
        var client = host.Services.GetRequiredService<XdsClient>();
        await Support.Poll.UntilAsync(() => client.LastConnectionError is not null, "a failed connection attempt");

        var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(c => c.Tags.Contains("ready"));
        await host.StopAsync();

        var entry = report.Entries["mesh"];
        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.StartsWith($"not yet synced with control plane {Unreachable}/: ", entry.Description, StringComparison.Ordinal);
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
public sealed class ServiceMeshOptionsValidationThroughServicesTests : ServiceMeshOptionsValidationTests
{
    protected override IHost Build(Dictionary<string, string?> settings) => MeshHosts.WithServices(settings, services => services.AddServiceMesh());
}
