using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Xds;

public sealed class XdsClientTests : IAsyncLifetime
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
        options.Labels["version"] = "v1";
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
    public async Task Start_FirstRequest_CarriesNodeAndWildcardLds()
    {
        var first = await _server.Requests.Reader.ReadAsync();

        Assert.Equal(XdsTypeUrls.Listener, first.TypeUrl);
        Assert.Empty(first.ResourceNames);
        Assert.Empty(first.VersionInfo);
        Assert.Matches(@"^sidecar~[0-9.]+~checkout-[0-9a-f]{8}\.shop~shop\.svc\.cluster\.local$", first.Node.Id);
        Assert.Equal("shop", first.Node.Metadata.Fields["NAMESPACE"].StringValue);
        Assert.Equal("checkout", first.Node.Metadata.Fields["SERVICE_ACCOUNT"].StringValue);
        Assert.Equal("grpc", first.Node.Metadata.Fields["GENERATOR"].StringValue);
        Assert.Equal("v1", first.Node.Metadata.Fields["LABELS"].StructValue.Fields["version"].StringValue);
        Assert.Equal("checkout", first.Node.Metadata.Fields["LABELS"].StructValue.Fields["app"].StringValue);
        Assert.Equal("mesh-dotnet", first.Node.UserAgentName);
        Assert.NotNull(first.Node.Locality);
        Assert.Equal(["envoy.lb.does_not_support_overprovisioning"], first.Node.ClientFeatures);

        var cds = await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        Assert.Null(cds.Node);
        Assert.Empty(cds.ResourceNames);
    }

    [Fact]
    public async Task Responses_CompleteConfig_AcksEachAndPublishesSnapshot()
    {
        var snapshot = await SyncOrdersAsync();

        Assert.True(snapshot.TryGetService("orders", 80, true, out var service));
        Assert.Equal("10.0.0.1:8080", service!.Routes[0].Clusters[0].Cluster.Endpoints[0].Authority);
        Assert.True(_client.IsConnected);
        Assert.Equal("1", _client.AcceptedVersions[XdsTypeUrls.Listener]);
        Assert.Equal("4", _client.AcceptedVersions[XdsTypeUrls.ClusterLoadAssignment]);
    }

    [Fact]
    public async Task Response_UnsupportedCluster_NacksWithPreviousVersionAndKeepsSnapshot()
    {
        var before = await SyncOrdersAsync();

        await _server.SendAsync(Cds("5", Cluster("orders", policy: Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.Maglev)));
        var nack = await _server.NextRequestAsync(XdsTypeUrls.Cluster);

        Assert.Equal("cds-5", nack.ResponseNonce);
        Assert.Equal("2", nack.VersionInfo);
        Assert.Equal(3, nack.ErrorDetail.Code);
        Assert.Contains("Cluster outbound|80||orders.default.svc.cluster.local: lb_policy MAGLEV is not supported", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Empty(nack.ResourceNames); // same (wildcard) subscription as before
        Assert.Same(before, _client.Current);
        Assert.Equal("5", _client.LastNack!.RejectedVersion);
        Assert.Equal("2", _client.AcceptedVersions[XdsTypeUrls.Cluster]);
    }

    [Fact]
    public async Task Response_RouteTheClientCannotApply_NacksNamingTheFieldAndKeepsTheLastGoodRoutes()
    {
        var before = await SyncOrdersAsync();
        var routes = Routes("orders");

        // Istio's CORS override (not optional): applying the route without it would be a different route.
        routes.VirtualHosts[0].Routes[0].TypedPerFilterConfig["envoy.filters.http.cors"] = new Google.Protobuf.WellKnownTypes.Any { TypeUrl = "type.googleapis.com/envoy.config.route.v3.CorsPolicy" };
        await _server.SendAsync(Rds("7", routes));
        var nack = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);

        Assert.Equal("rds-7", nack.ResponseNonce);
        Assert.Equal("3", nack.VersionInfo);
        Assert.Contains(
            "RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0].typed_per_filter_config['envoy.filters.http.cors']: type type.googleapis.com/envoy.config.route.v3.CorsPolicy is not supported",
            nack.ErrorDetail.Message,
            StringComparison.Ordinal);
        Assert.Same(before, _client.Current);
        Assert.True(_client.Current.TryGetService("orders", 80, true, out var service));
        Assert.Null(service!.Routes[0].Features);
    }

    [Fact]
    public async Task ControlPlane_Restarts_SnapshotKeptAndClientResubscribesWithLastVersions()
    {
        var before = await SyncOrdersAsync();

        await _server.StopAsync();
        await Poll.UntilAsync(() => !_client.IsConnected && _client.LastConnectionError is not null, "client notices the lost control plane");
        Assert.Same(before, _client.Current);

        await _server.RestartAsync();
        var lds = await _server.NextRequestAsync(XdsTypeUrls.Listener, TimeSpan.FromSeconds(15));
        Assert.NotNull(lds.Node);
        Assert.Equal("1", lds.VersionInfo);
        var rds = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal([ClusterName("orders")], rds.ResourceNames);
        Assert.Equal("3", rds.VersionInfo);
        var eds = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal("4", eds.VersionInfo);
        Assert.Same(before, _client.Current);

        var changed = _client.GetChangeToken();
        await _server.SendAsync(Eds("6", Endpoints("orders", 80, ("10.0.0.2", 8080, HealthStatus.Healthy))));
        await Poll.UntilAsync(() => changed.HasChanged, "a new snapshot after reconnect");
        Assert.Equal("10.0.0.2", _client.Current.Clusters[ClusterName("orders")].Endpoints[0].Address);
    }

    [Fact]
    public void ReconnectDelay_GrowsExponentiallyUpToMaximumWithFullJitter()
    {
        var options = new ServiceMeshOptions();
        options.ControlPlane.Address = new Uri("http://127.0.0.1:1");
        options.ControlPlane.InitialReconnectDelay = TimeSpan.FromSeconds(1);
        options.ControlPlane.MaxReconnectDelay = TimeSpan.FromSeconds(10);
        using var channel = new ControlPlaneChannel(Options.Create(options));
        using var client = new XdsClient(Options.Create(options), channel, new FakeTimeProvider(), NullLogger<XdsClient>.Instance, "app", random: () => 1.0);

        Assert.Equal([1, 2, 4, 8, 10, 10], new[] { 1, 2, 3, 4, 5, 20 }.Select(a => client.ReconnectDelay(a).TotalSeconds));
        using var half = new XdsClient(Options.Create(options), channel, new FakeTimeProvider(), NullLogger<XdsClient>.Instance, "app", random: () => 0.5);
        Assert.Equal(TimeSpan.FromSeconds(2), half.ReconnectDelay(3));
    }

    private async Task<Discovery.MeshSnapshot> SyncOrdersAsync()
    {
        await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        await _server.SendAsync(Lds("1", Listener("orders")));
        var ldsAck = await _server.NextRequestAsync(XdsTypeUrls.Listener);
        Assert.Equal("1", ldsAck.VersionInfo);
        Assert.Equal("lds-1", ldsAck.ResponseNonce);
        Assert.Null(ldsAck.ErrorDetail);
        var rdsSubscribe = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal([ClusterName("orders")], rdsSubscribe.ResourceNames);

        await _server.SendAsync(Cds("2", Cluster("orders")));
        Assert.Equal("cds-2", (await _server.NextRequestAsync(XdsTypeUrls.Cluster)).ResponseNonce);
        var edsSubscribe = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal([ClusterName("orders")], edsSubscribe.ResourceNames);

        await _server.SendAsync(Rds("3", Routes("orders")));
        var rdsAck = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal("3", rdsAck.VersionInfo);
        Assert.False(_client.Current.IsSynced);

        await _server.SendAsync(Eds("4", Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))));
        var edsAck = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal("eds-4", edsAck.ResponseNonce);
        await _client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(10));
        return _client.Current;
    }
}
