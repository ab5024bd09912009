using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using static Mesh.Client.Tests.Support.XdsResources;
using LbPolicy = Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy;

namespace Mesh.Client.Tests.Xds;

/// <summary>
/// The delta wire of <see cref="XdsClient"/> against a scripted delta server on real Kestrel: what the client sends
/// (subscriptions by difference, <c>initial_resource_versions</c>, ACK/NACK by nonce) and what it does with responses a
/// real control plane never sends (garbage, a resource it cannot apply).
/// </summary>
public sealed class DeltaXdsClientTests : IAsyncLifetime
{
    private TestDeltaControlPlane _server = null!;
    private XdsClient _client = null!;
    private ControlPlaneChannel _channel = null!;

    public async Task InitializeAsync()
    {
        _server = await TestDeltaControlPlane.StartAsync();
        var options = new ServiceMeshOptions { Service = "checkout", Namespace = "shop" };
        options.ControlPlane.Address = _server.Address;
        options.ControlPlane.Protocol = ControlPlaneProtocols.Delta;
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
    public async Task Start_FirstRequests_SubscribeTheWildcardWithTheNode_AndHoldNothing()
    {
        var lds = await _server.NextRequestAsync(XdsTypeUrls.Listener);
        var cds = await _server.NextRequestAsync(XdsTypeUrls.Cluster);

        Assert.Equal(["*"], lds.ResourceNamesSubscribe);
        Assert.Empty(lds.InitialResourceVersions);
        Assert.Empty(lds.ResponseNonce);
        Assert.Equal("grpc", lds.Node.Metadata.Fields["GENERATOR"].StringValue);
        Assert.Equal(["*"], cds.ResourceNamesSubscribe);
        Assert.Null(cds.Node);
        Assert.Equal(0, _server.SotwCalls);
    }

    [Fact]
    public async Task Responses_CompleteConfig_AckedByNonce_SnapshotPublished_ThenAChangeOfOneResourceApplies()
    {
        var snapshot = await SyncOrdersAsync();
        Assert.True(snapshot.TryGetService("orders", 80, true, out var service));
        Assert.Equal("10.0.0.1:8080", service!.Routes[0].Clusters[0].Cluster.Endpoints[0].Authority);
        Assert.Equal("4", _client.AcceptedVersions[XdsTypeUrls.ClusterLoadAssignment]);

        var changed = _client.GetChangeToken();
        var nonce = await _server.SendAsync(XdsTypeUrls.ClusterLoadAssignment, "5", [(ClusterName("orders"), "e2", Endpoints("orders", 80, ("10.0.0.2", 8080, HealthStatus.Healthy)))]);
        var ack = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);

        Assert.Equal(nonce, ack.ResponseNonce);
        Assert.Null(ack.ErrorDetail);
        Assert.Empty(ack.ResourceNamesSubscribe);
        await Poll.UntilAsync(() => changed.HasChanged, "a snapshot with the new endpoint");
        Assert.Equal("10.0.0.2", _client.Current.Clusters[ClusterName("orders")].Endpoints[0].Address);
    }

    [Fact]
    public async Task Response_OneBadClusterAmongGoodOnes_NackedWithErrorDetail_BadOneKeepsItsLastGood_TheRestApplies()
    {
        var before = await SyncOrdersAsync();
        var balancer = before.Clusters[ClusterName("orders")].Balancer.Name;

        var nonce = await _server.SendAsync(XdsTypeUrls.Cluster, "6", [(ClusterName("orders"), "c2", Cluster("orders", policy: LbPolicy.Maglev)), (ClusterName("payments"), "p1", Cluster("payments"))]);
        var nack = await _server.NextRequestAsync(XdsTypeUrls.Cluster);

        Assert.Equal(nonce, nack.ResponseNonce);
        Assert.Equal(3, nack.ErrorDetail.Code);
        Assert.Contains("Cluster outbound|80||orders.default.svc.cluster.local: lb_policy MAGLEV is not supported", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("payments", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Equal("6", _client.LastNack!.RejectedVersion);
        Assert.Equal("2", _client.AcceptedVersions[XdsTypeUrls.Cluster]);

        // The good cluster moved on: its endpoints are subscribed next to the ones of the cluster kept.
        var eds = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal([ClusterName("payments")], eds.ResourceNamesSubscribe);
        Assert.Empty(eds.ResourceNamesUnsubscribe);
        await _server.SendAsync(XdsTypeUrls.ClusterLoadAssignment, "7", [(ClusterName("payments"), "pe1", Endpoints("payments", 80, ("10.0.0.9", 8080, HealthStatus.Healthy)))]);
        await Poll.UntilAsync(() => _client.Current.Clusters.ContainsKey(ClusterName("payments")), "the good cluster in the snapshot");
        Assert.Equal(balancer, _client.Current.Clusters[ClusterName("orders")].Balancer.Name);
        Assert.True(_client.Current.TryGetService("orders", 80, true, out var service));
        Assert.Equal("10.0.0.1:8080", service!.Routes[0].Clusters[0].Cluster.Endpoints[0].Authority);
    }

    [Fact]
    public async Task Response_LargerThanGrpcsDefaultLimit_Taken()
    {
        // A wildcard response of a large mesh is more than gRPC's default 4 MB: over the limit the stream would end before
        // the response is read, on every reconnect, and the client would never sync.
        await SyncOrdersAsync();
        var large = Endpoints("orders", 80, ("10.0.0.2", 8080, HealthStatus.Healthy));
        large.Endpoints[0].LbEndpoints[0].Metadata = new Metadata { FilterMetadata = { ["padding"] = new Struct { Fields = { ["bytes"] = Value.ForString(new string('x', 5 * 1024 * 1024)) } } } };
        Assert.True(large.CalculateSize() > 4 * 1024 * 1024, $"the assignment is {large.CalculateSize()} bytes");

        var nonce = await _server.SendAsync(XdsTypeUrls.ClusterLoadAssignment, "5", [(ClusterName("orders"), "e-large", large)]);
        var ack = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment, TimeSpan.FromSeconds(60));

        // Read, decoded and accepted: an ACK of that nonce, no error (over the limit the stream ends with no answer).
        Assert.Equal(nonce, ack.ResponseNonce);
        Assert.Null(ack.ErrorDetail);
        Assert.Equal("5", _client.AcceptedVersions[XdsTypeUrls.ClusterLoadAssignment]);
    }

    [Fact]
    public async Task Response_Garbage_NackedNamingEveryResource_LastGoodConfigKeepsServing()
    {
        var before = await SyncOrdersAsync();
        var garbage = new DeltaDiscoveryResponse { TypeUrl = XdsTypeUrls.Cluster, SystemVersionInfo = "7", Nonce = "garbage-1" };
        garbage.Resources.Add(new Resource { Name = ClusterName("orders"), Version = "x1", Resource_ = new Any { TypeUrl = XdsTypeUrls.Cluster, Value = ByteString.CopyFrom(0xff, 0xff, 0xff, 0x07) } });
        garbage.Resources.Add(new Resource { Name = "wrong-type", Version = "x1", Resource_ = Any.Pack(Listener("orders")) });
        garbage.Resources.Add(new Resource { Name = "empty", Version = "x1" });
        garbage.Resources.Add(new Resource { Name = "renamed", Version = "x1", Resource_ = Any.Pack(Cluster("orders")) });
        await _server.SendAsync(garbage);

        var nack = await _server.NextRequestAsync(XdsTypeUrls.Cluster);

        Assert.Equal("garbage-1", nack.ResponseNonce);
        Assert.Contains($"Cluster resources[0] '{ClusterName("orders")}': cannot be decoded", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Contains($"Cluster resources[1] 'wrong-type': type {XdsTypeUrls.Listener} does not match the response type", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Contains("Cluster resources[2] 'empty': resource is required", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Contains($"Cluster resources[3] 'renamed': the resource inside is named '{ClusterName("orders")}'", nack.ErrorDetail.Message, StringComparison.Ordinal);
        Assert.Same(before, _client.Current);

        // The next good version of the same resource applies.
        var changed = _client.GetChangeToken();
        await _server.SendAsync(XdsTypeUrls.Cluster, "8", [(ClusterName("orders"), "c3", Cluster("orders", policy: LbPolicy.Random))]);
        var ack = await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        Assert.Null(ack.ErrorDetail);
        await Poll.UntilAsync(() => changed.HasChanged, "the good version applied");
        Assert.NotEqual(before.Clusters[ClusterName("orders")].Balancer.Name, _client.Current.Clusters[ClusterName("orders")].Balancer.Name);
    }

    [Fact]
    public async Task Reconnect_InitialResourceVersionsListWhatTheClientHolds_NotWhatItRejected()
    {
        var before = await SyncOrdersAsync();
        await _server.SendAsync(XdsTypeUrls.Cluster, "6", [(ClusterName("orders"), "c-bad", Cluster("orders", policy: LbPolicy.Maglev))]);
        Assert.NotNull((await _server.NextRequestAsync(XdsTypeUrls.Cluster)).ErrorDetail);

        await _server.StopAsync();
        await Poll.UntilAsync(() => !_client.IsConnected && _client.LastConnectionError is not null, "client notices the lost control plane");
        Assert.Same(before, _client.Current);
        await _server.RestartAsync();

        var lds = await _server.NextRequestAsync(XdsTypeUrls.Listener, TimeSpan.FromSeconds(15));
        Assert.NotNull(lds.Node);
        Assert.Equal(["*"], lds.ResourceNamesSubscribe);
        Assert.Equal(new Dictionary<string, string> { [$"{Fqdn("orders")}:80"] = "l1" }, lds.InitialResourceVersions);
        var cds = await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        Assert.Equal(["*"], cds.ResourceNamesSubscribe);
        Assert.Equal(new Dictionary<string, string> { [ClusterName("orders")] = "c1" }, cds.InitialResourceVersions);
        var rds = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal([ClusterName("orders")], rds.ResourceNamesSubscribe);
        Assert.Equal(new Dictionary<string, string> { [ClusterName("orders")] = "r1" }, rds.InitialResourceVersions);
        var eds = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal(new Dictionary<string, string> { [ClusterName("orders")] = "e1" }, eds.InitialResourceVersions);

        // Nothing changed, so a real control plane answers nothing: the stream counts as up, the snapshot stays.
        await Poll.UntilAsync(() => _client.IsConnected, "connected without a response");
        Assert.Same(before, _client.Current);
        Assert.Equal(2, _server.Streams);
    }

    [Fact]
    public async Task RemovedResources_ServiceGone_ItsRoutesAndEndpointsUnsubscribed()
    {
        await SyncOrdersAsync();

        var changed = _client.GetChangeToken();
        var nonce = await _server.SendAsync(XdsTypeUrls.Listener, "9", [], $"{Fqdn("orders")}:80");
        var ack = await _server.NextRequestAsync(XdsTypeUrls.Listener);
        Assert.Equal(nonce, ack.ResponseNonce);
        Assert.Null(ack.ErrorDetail);
        var rds = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal([ClusterName("orders")], rds.ResourceNamesUnsubscribe);
        Assert.Empty(rds.ResponseNonce);

        await Poll.UntilAsync(() => changed.HasChanged, "a snapshot without the service");
        Assert.False(_client.Current.TryGetService("orders", 80, true, out _));
        Assert.Empty(_client.Current.Services);
    }

    [Fact]
    public async Task ControlPlaneWithoutDelta_StreamFails_TheErrorNamesTheProtocolOption()
    {
        // A state-of-the-world-only server: DeltaAggregatedResources answers UNIMPLEMENTED.
        await using var sotwOnly = await TestControlPlane.StartAsync();
        var options = new ServiceMeshOptions { Service = "checkout", Namespace = "shop" };
        options.ControlPlane.Address = sotwOnly.Address;
        options.ControlPlane.Protocol = ControlPlaneProtocols.Delta;
        using var channel = new ControlPlaneChannel(Options.Create(options));
        using var client = new XdsClient(Options.Create(options), channel, TimeProvider.System, NullLogger<XdsClient>.Instance, "Checkout.Api");
        await client.StartAsync(default);

        await Poll.UntilAsync(() => client.LastConnectionError?.Contains("Mesh:ControlPlane:Protocol", StringComparison.Ordinal) == true, "the stream failure names the option");

        Assert.StartsWith("Unimplemented", client.LastConnectionError, StringComparison.Ordinal);
        Assert.False(client.Current.IsSynced);
        Assert.Equal(0, sotwOnly.Requests.Reader.Count);
        await client.StopAsync(default);
    }

    private async Task<Discovery.MeshSnapshot> SyncOrdersAsync()
    {
        await _server.NextRequestAsync(XdsTypeUrls.Cluster);
        var lds = await _server.SendAsync(XdsTypeUrls.Listener, "1", [($"{Fqdn("orders")}:80", "l1", Listener("orders"))]);
        var ldsAck = await _server.NextRequestAsync(XdsTypeUrls.Listener);
        Assert.Equal(lds, ldsAck.ResponseNonce);
        Assert.Null(ldsAck.ErrorDetail);
        Assert.Empty(ldsAck.ResourceNamesSubscribe);
        var rdsSubscribe = await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.Equal([ClusterName("orders")], rdsSubscribe.ResourceNamesSubscribe);
        Assert.Empty(rdsSubscribe.InitialResourceVersions);

        var cds = await _server.SendAsync(XdsTypeUrls.Cluster, "2", [(ClusterName("orders"), "c1", Cluster("orders"))]);
        Assert.Equal(cds, (await _server.NextRequestAsync(XdsTypeUrls.Cluster)).ResponseNonce);
        var edsSubscribe = await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        Assert.Equal([ClusterName("orders")], edsSubscribe.ResourceNamesSubscribe);

        await _server.SendAsync(XdsTypeUrls.RouteConfiguration, "3", [(ClusterName("orders"), "r1", Routes("orders"))]);
        await _server.NextRequestAsync(XdsTypeUrls.RouteConfiguration);
        Assert.False(_client.Current.IsSynced);

        await _server.SendAsync(XdsTypeUrls.ClusterLoadAssignment, "4", [(ClusterName("orders"), "e1", Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy)))]);
        await _server.NextRequestAsync(XdsTypeUrls.ClusterLoadAssignment);
        await _client.FirstSnapshot.WaitAsync(TimeSpan.FromSeconds(10));
        return _client.Current;
    }
}
