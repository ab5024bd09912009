using System.Net;
using Mesh.Client.Registration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Client.Tests.Registration;

/// <summary>A host names a Kestrel endpoint for the WorkloadEntry (Istio: ports maps a ServiceEntry port name to the workload's port).</summary>
public sealed class MeshPortNamesTests
{
    [Fact]
    public async Task BuildWorkload_NamedEndpoint_RegisteredUnderItsName_OthersKeepHttpNames()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddSingleton<MeshPortNames>();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0);
            kestrel.Listen(IPAddress.Loopback, 0, listen => listen.WithMeshPortName("tcp-db"));
            kestrel.Listen(IPAddress.Loopback, 0);
        });
        await using var app = builder.Build();
        await app.StartAsync();
        var ports = app.Urls.Select(u => (uint)new Uri(u).Port).ToList();
        var options = Microsoft.Extensions.Options.Options.Create(new ServiceMeshOptions { Service = "db" });
        using var registration = new WorkloadRegistrationService(options, app.Services, channel: null!, lifetime: null!, TimeProvider.System, NullLogger<WorkloadRegistrationService>.Instance);

        var workload = registration.BuildWorkload();

        Assert.NotNull(workload);
        Assert.Equal(new Dictionary<string, uint> { ["http"] = ports[0], ["tcp-db"] = ports[1], ["http-2"] = ports[2] }, workload.Ports);
        await app.StopAsync();
    }

    [Fact]
    public void Add_SameNameOnTwoEndpoints_Refused()
    {
        var names = new MeshPortNames();
        var kestrel = new Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions();
        var (first, second) = ((Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions?)null, (Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions?)null);
        kestrel.Listen(IPAddress.Loopback, 1001, l => first = l);
        kestrel.Listen(IPAddress.Loopback, 1002, l => second = l);
        names.Add(first!, "tcp-db");

        var error = Assert.Throws<InvalidOperationException>(() => names.Add(second!, "tcp-db"));

        Assert.Contains("'tcp-db'", error.Message, StringComparison.Ordinal);
        Assert.Equal("tcp-db", names.NameOf(1001));
        Assert.Null(names.NameOf(1002));
    }
}
