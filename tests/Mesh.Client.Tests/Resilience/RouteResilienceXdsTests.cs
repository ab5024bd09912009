using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Resilience;

/// <summary>Route policies over a real ADS stream: a good one reaches the snapshot, a bad one is NACKed and the last good routes stay.</summary>
public sealed class RouteResilienceXdsTests : IAsyncLifetime
{
    private TestControlPlane _server = null!;
    private XdsClient _client = null!;
    private ControlPlaneChannel _channel = null!;

    public async Task InitializeAsync()
    {
        _server = await TestControlPlane.StartAsync();
        var options = new ServiceMeshOptions { Service = "checkout", Namespace = "shop" };
        options.ControlPlane.Address = _server.Address;
        options.ControlPlane.InitialReconnectDelay = TimeSpan.FromMilliseconds(20);
        options.ControlPlane.MaxReconnectDelay = TimeSpan.FromMilliseconds(100);
        _channel = new ControlPlaneChannel(Options.Create(options));
        _client = new XdsClient(Options.Create(options), _channel, TimeProvider.System, NullLogger<XdsClient>.Instance, "Checkout.Api");
        await _client.StartAsync(default);
    }

    public async Task DisposeAsync()
    {
        await _client.StopAsync(default);
        _client.Dispose();
        _channel.Dispose();
        await _server.DisposeAsync();
    }

    [Fact]
    public async Task BadRetryPolicy_IsNackedNamingTheField_LastGoodPolicyKeepsServing()
    {
        var good = Routes("orders");
        good.VirtualHosts[0].Routes[0].Route_.Timeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(2));
        good.VirtualHosts[0].Routes[0].Route_.RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 3 };
        var before = await SyncOrdersAsync(good);
        Assert.True(before.TryGetService("orders", 80, true, out var service));
        Assert.Equal(3, service!.Routes[0].Resilience!.Retry!.NumRetries);

        var bad = Routes("orders");
        bad.VirtualHosts[0].Routes[0].Route_.RetryPolicy = new RetryPolicy { RetryOn = "5xx,sometimes", NumRetries = 3 };
        await _server.SendAsync(Rds("5", bad));
        var nack = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);

        Assert.Equal("rds-5", nack.ResponseNonce);
        Assert.Equal("3", nack.VersionInfo);
        Assert.Contains(
            $"RouteConfiguration {ClusterName("orders")}: virtual_hosts[0].routes[0].route.retry_policy.retry_on 'sometimes' is not a retry condition this client knows",
            nack.ErrorDetail.Message,
            StringComparison.Ordinal);
        Assert.Same(before, _client.Current);
        Assert.Equal(TimeSpan.FromSeconds(2), service.Routes[0].Resilience!.Timeout);
    }

    private async Task<Discovery.MeshSnapshot> SyncOrdersAsync(RouteConfiguration routes)
    {
        await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        await _server.SendAsync(Lds("1", Listener("orders")));
        await _server.NextRequestAsync(XdsTypeUrls.Listener);
        await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        await _server.SendAsync(Cds("2", Cluster("orders")));
        await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        await _server.SendAsync(Rds("3", routes));
        var rdsAck = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Null(rdsAck.ErrorDetail);
        await _server.SendAsync(Eds("4", Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))));
        await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        await _client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(10));
        return _client.Current;
    }
}
