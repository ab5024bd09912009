using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using EndpointHealth = Mesh.Xds.Envoy.Config.Core.V3.HealthStatus;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Hosting;

public sealed class MeshReadinessHealthCheckTests
{
    [Fact]
    public async Task CheckHealth_BeforeAndAfterFirstSnapshot_UnhealthyThenHealthy()
    {
        await using var controlPlane = await TestControlPlane.StartAsync();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddLogging();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Mesh:ControlPlane:Address"] = controlPlane.Address.ToString() });
        builder.AddServiceMesh();
        using var host = builder.Build();
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();

        await controlPlane.NextRequestAsync(XdsTypeUrls.Cluster);
        var before = (await health.CheckHealthAsync(c => c.Tags.Contains("ready"))).Entries["mesh"];
        Assert.Equal(HealthStatus.Unhealthy, before.Status);
        Assert.StartsWith("not yet synced with control plane", before.Description, StringComparison.Ordinal);

        await controlPlane.SendAsync(Lds("1", Listener("orders")));
        await controlPlane.SendAsync(Cds("1", Cluster("orders")));
        await controlPlane.SendAsync(Rds("1", Routes("orders")));
        await controlPlane.SendAsync(Eds("1", Endpoints("orders", 80, ("10.0.0.1", 8080, EndpointHealth.Healthy))));
        await host.Services.GetRequiredService<XdsClient>().FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(10));

        var after = (await health.CheckHealthAsync(c => c.Tags.Contains("ready"))).Entries["mesh"];
        await host.StopAsync();
        Assert.Equal(HealthStatus.Healthy, after.Status);
        Assert.Contains("version lds=1 rds=1 cds=1 eds=1, 1 services", after.Description, StringComparison.Ordinal);
    }
}
