using System.Net;
using System.Net.Sockets;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Xds;

/// <summary>Mesh:ControlPlane:Addresses: every control-plane call moves on to the next replica when one is unreachable.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ControlPlaneFailoverTests
{
    [Fact]
    public async Task Ads_ReplicaInUseStops_StreamMovesToTheNext_SnapshotKeepsServing()
    {
        await using var first = await TestControlPlane.StartAsync();
        await using var second = await TestControlPlane.StartAsync();
        var options = AdsOptions(first.Address, second.Address);
        using var channel = new ControlPlaneChannel(Options.Create(options));
        using var client = new XdsClient(Options.Create(options), channel, TimeProvider.System, NullLogger<XdsClient>.Instance, "Checkout.Api");
        await client.StartAsync(default);
        try
        {
            await SyncOrdersAsync(first, client);
            Assert.Equal(first.Address, channel.Address);

            await first.StopAsync();

            // The second replica gets the reconnect, with the versions the client accepted from the first.
            var lds = await second.NextRequestAsync(XdsTypeUrls.Listener, TimeSpan.FromSeconds(30));
            Assert.Equal("1", lds.VersionInfo);
            Assert.Equal(second.Address, channel.Address);
            Assert.Equal(1, channel.Failovers);

            // Until the second replica answers, the last good snapshot keeps serving.
            Assert.True(client.Current.TryGetService("orders", 80, true, out var service));
            Assert.Equal("10.0.0.1:8080", service!.Routes[0].Clusters[0].Cluster.Endpoints[0].Authority);
        }
        finally
        {
            await client.StopAsync(default);
        }
    }

    [Fact]
    public async Task Ads_FirstReplicaNeverListened_ConnectsToTheSecond()
    {
        await using var live = await TestControlPlane.StartAsync();
        var options = AdsOptions(ClosedPort(), live.Address);
        using var channel = new ControlPlaneChannel(Options.Create(options));
        using var client = new XdsClient(Options.Create(options), channel, TimeProvider.System, NullLogger<XdsClient>.Instance, "Checkout.Api");
        await client.StartAsync(default);
        try
        {
            var lds = await live.NextRequestAsync(XdsTypeUrls.Listener, TimeSpan.FromSeconds(30));

            Assert.NotNull(lds.Node);
            Assert.Equal(live.Address, channel.Address);
        }
        finally
        {
            await client.StopAsync(default);
        }
    }

    [Fact]
    public void Ads_SingleAddress_Failover_StaysOnIt()
    {
        var only = new Uri("http://127.0.0.1:1");
        var options = AdsOptions(only);
        using var channel = new ControlPlaneChannel(Options.Create(options));

        Assert.False(channel.Failover(only, "refused"));
        Assert.Equal(only, channel.Address);
        Assert.Equal(0, channel.Failovers);
    }

    [Fact]
    public void Failover_ReportedForAReplicaNoLongerInUse_ChangesNothing()
    {
        var (a, b, c) = (new Uri("http://127.0.0.1:1"), new Uri("http://127.0.0.1:2"), new Uri("http://127.0.0.1:3"));
        using var channel = new ControlPlaneChannel(Options.Create(AdsOptions(a, b, c)));

        Assert.True(channel.Failover(a, "refused"));
        Assert.Equal(b, channel.Address);

        // A second call that also failed on a (started before the first failover) must not skip b.
        Assert.True(channel.Failover(a, "refused"));
        Assert.Equal(b, channel.Address);

        // Every replica failed since the last success: the caller backs off.
        Assert.False(channel.Failover(b, "refused"));
        Assert.Equal(c, channel.Address);
        channel.Succeeded(c);
        Assert.True(channel.Failover(c, "refused"));
        Assert.Equal(a, channel.Address);
    }

    [Fact]
    public async Task Certificate_FirstReplicaDown_IssuedByTheSecond_AndBundleFetchedThere()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        using var ca = new TestCa(intermediate: true, time: time);
        await using var down = await TestCaServer.StartAsync(ca);
        await using var up = await TestCaServer.StartAsync(ca);
        var root = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(root, ca.RootPem);
            var downAddress = down.Address;
            await down.DisposeAsync();
            var options = new ServiceMeshOptions { Service = "orders" };
            options.ControlPlane.Addresses.Add(downAddress);
            options.ControlPlane.Addresses.Add(up.Address);
            options.ControlPlane.RootCertificate = root;
            options.Identity.Token = TestCaServer.Token;
            using var store = new WorkloadCertificateStore(true, "cluster.local", TrustBundle.FromPem(ca.RootPem, root));
            using var channel = new ControlPlaneChannel(Options.Create(options), store, time);
            using var identity = new WorkloadIdentityService(Options.Create(options), store, channel, time, NullLogger<WorkloadIdentityService>.Instance, () => 0.5);

            await identity.StartAsync(default);
            await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(30));
            var certificate = store.Current!;
            await Poll.UntilAsync(() => Volatile.Read(ref up.BundleFetches) > 0, "the bundle fetched from the second replica");
            await identity.StopAsync(default);

            Assert.Equal(TestCa.Id("orders"), certificate.Id.Value);
            Assert.Single(up.Authentications);
            Assert.Equal(up.Address, channel.Address);
        }
        finally
        {
            File.Delete(root);
        }
    }

    [Fact]
    public async Task Registration_TwoReplicas_LeaseWithEach_ReRegistersWithOneThatLostIt_DeregistersFromBoth()
    {
        await using var first = await TestControlPlane.StartAsync();
        await using var second = await TestControlPlane.StartAsync();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Mesh:ControlPlane:Addresses:0"] = first.Address.ToString(),
            ["Mesh:ControlPlane:Addresses:1"] = second.Address.ToString(),
            ["Mesh:ControlPlane:InitialReconnectDelay"] = "00:00:00.020",
            ["Mesh:ControlPlane:MaxReconnectDelay"] = "00:00:00.200",
            ["Mesh:Service"] = "orders",
            ["Mesh:Registration:LeaseTtl"] = "00:00:01",
        });
        builder.AddServiceMesh();
        await using var app = builder.Build();
        await app.StartAsync();

        await Poll.UntilAsync(() => !first.Registry.Leases.IsEmpty && !second.Registry.Leases.IsEmpty, "a lease with each replica");
        Assert.Equal(first.Registry.Registrations.First().Workload, second.Registry.Registrations.First().Workload);

        // The second replica restarts without its leases (a replica that came back empty): the workload registers there again.
        await second.StopAsync();
        second.Registry.Leases.Clear();
        await second.RestartAsync();
        await Poll.UntilAsync(() => second.Registry.Registrations.Count >= 2 && !second.Registry.Leases.IsEmpty, "a new registration with the restarted replica");

        await app.StopAsync();

        Assert.Empty(first.Registry.Leases);
        Assert.Empty(second.Registry.Leases);
        Assert.Single(first.Registry.Registrations);
    }

    private static ServiceMeshOptions AdsOptions(params Uri[] addresses)
    {
        var options = new ServiceMeshOptions { Service = "checkout", Namespace = "shop" };
        foreach (var address in addresses)
        {
            options.ControlPlane.Addresses.Add(address);
        }

        options.ControlPlane.InitialReconnectDelay = TimeSpan.FromMilliseconds(20);
        options.ControlPlane.MaxReconnectDelay = TimeSpan.FromMilliseconds(200);
        return options;
    }

    /// <summary>An address where nothing listens: a port bound and released.</summary>
    private static Uri ClosedPort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return new Uri($"http://127.0.0.1:{((IPEndPoint)probe.LocalEndpoint).Port}");
    }

    private static async Task SyncOrdersAsync(TestControlPlane server, XdsClient client)
    {
        await server.NextRequestAsync(XdsTypeUrls.Cluster);
        await server.SendAsync(Lds("1", Listener("orders")));
        await server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        await server.SendAsync(Cds("2", Cluster("orders")));
        await server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        await server.SendAsync(Rds("3", Routes("orders")));
        await server.SendAsync(Eds("4", Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))));
        await client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(10));
    }
}
