using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;
using static Mesh.ControlPlane.Tests.Support.AdsFixtures;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>Incremental ADS (DeltaAggregatedResources) against a real control plane, over real gRPC streams.</summary>
public sealed class DeltaAdsIntegrationTests
{
    private const string PaymentsCluster = "outbound|50051||payments.default.svc.cluster.local";
    private const string OrdersListener = "orders.default.svc.cluster.local:80";
    private const string PaymentsListener = "payments.default.svc.cluster.local:50051";
    private const string Nowhere = "outbound|80||nowhere.default.svc.cluster.local";

    private const string NowhereService = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: nowhere}
        spec:
          hosts: [nowhere]
          ports: [{number: 80, name: http, protocol: HTTP}]
          endpoints: [{address: 127.0.0.3}]
        """;

    [Fact]
    public async Task DeltaAggregatedResources_LegacyWildcardCds_EveryClusterWithItsContentVersion()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        // Both lists empty on the first request of a type: the legacy wildcard.
        await ads.SendAsync(TypeUrls.Cluster, node: AdsTestClient.Node());
        var cds = await ads.NextAsync();

        Assert.Equal(TypeUrls.Cluster, cds.TypeUrl);
        Assert.Equal([PaymentsCluster, Cluster80], cds.Resources.Select(r => r.Name));
        Assert.All(cds.Resources, r =>
        {
            Assert.Equal(r.Name, r.Resource_.Unpack<Cluster>().Name);
            Assert.Equal(new XdsResource(r.Name, r.Resource_).Version, r.Version);
        });
        Assert.Empty(cds.RemovedResources);
        Assert.NotEmpty(cds.Nonce);
        // system_version_info is the snapshot the response was built from: the current one, or one a snapshot built
        // since the response (the start may publish another, with the same clusters and so no second response) replaced.
        var current = long.Parse((await DumpAsync(cp)).GetProperty("version").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(long.Parse(cds.SystemVersionInfo, System.Globalization.CultureInfo.InvariantCulture), 1, current);
    }

    [Fact]
    public async Task DeltaAggregatedResources_WildcardOnAnEmptyMesh_AnsweredEmptyOnceThenWhatAppears()
    {
        await using var cp = await ControlPlaneFixture.StartAsync();
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        // Nothing exists: the wildcard client is told so (an empty response), or it could not tell "empty" from "not yet".
        await ads.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node());
        var empty = await ads.NextAckedAsync();
        Assert.Equal(TypeUrls.Cluster, empty.TypeUrl);
        Assert.Empty(empty.Resources);
        Assert.Empty(empty.RemovedResources);

        // Once answered, an empty diff sends nothing: the next response is the service that appears.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService);
        var appeared = await ads.NextAsync();
        Assert.Equal([Nowhere], appeared.Resources.Select(r => r.Name));
    }

    [Fact]
    public async Task DeltaAggregatedResources_ExplicitWildcardLdsAndEdsByName_ServesThoseOnly()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        await ads.SendAsync(TypeUrls.Listener, ["*"], node: AdsTestClient.Node());
        var lds = await ads.NextAckedAsync();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80]);
        var eds = await ads.NextAckedAsync();

        Assert.Equal([OrdersListener, PaymentsListener], lds.Resources.Select(r => r.Resource_.Unpack<Listener>().Name));
        var cla = Assert.Single(eds.Resources).Resource_.Unpack<ClusterLoadAssignment>();
        Assert.Equal(Cluster80, cla.ClusterName);
        Assert.Equal(5001u, Assert.Single(Assert.Single(cla.Endpoints).LbEndpoints).Endpoint.Address.SocketAddress.PortValue);
        Assert.NotEqual(lds.Nonce, eds.Nonce);
        var client = await ClientAsync(cp, c => c.GetProperty("acked").EnumerateObject().Count() == 2);
        Assert.Equal(["*"], client.GetProperty("subscriptions").GetProperty(TypeUrls.Listener).EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(eds.SystemVersionInfo, client.GetProperty("acked").GetProperty(TypeUrls.ClusterLoadAssignment).GetString());
    }

    [Fact]
    public async Task DeltaAggregatedResources_NameThatNeverExisted_InRemovedResourcesThenSentWhenItAppears()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, Nowhere], node: AdsTestClient.Node());
        var eds = await ads.NextAckedAsync();

        // The spec's rule, where go-control-plane leaves the client to its 15 s timer.
        Assert.Equal([Cluster80], eds.Resources.Select(r => r.Name));
        Assert.Equal([Nowhere], eds.RemovedResources);

        // The server remembers the subscription: the resource is sent when it springs into existence, alone.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService);
        var appeared = await ads.NextAsync();
        Assert.Equal([Nowhere], appeared.Resources.Select(r => r.Name));
        Assert.Empty(appeared.RemovedResources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_EndpointChange_SendsExactlyTheChangedAssignment()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.Cluster, node: AdsTestClient.Node());
        Assert.Equal(2, (await ads.NextAckedAsync()).Resources.Count);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, PaymentsCluster]);
        Assert.Equal(2, (await ads.NextAckedAsync()).Resources.Count);

        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        await registry.RegisterAsync(new RegisterRequest { Workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } });

        // Clusters did not change, so nothing precedes the EDS response (a CDS push would come first); it carries only orders.
        var eds = await ads.NextAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, eds.TypeUrl);
        var changed = Assert.Single(eds.Resources);
        Assert.Equal(Cluster80, changed.Name);
        Assert.Equal([5001u, 5002u], changed.Resource_.Unpack<ClusterLoadAssignment>().Endpoints.SelectMany(l => l.LbEndpoints).Select(e => e.Endpoint.Address.SocketAddress.PortValue).Order());
        Assert.Empty(eds.RemovedResources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_ClusterDeleted_InRemovedResourcesOfCdsThenEds()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.Cluster, node: AdsTestClient.Node());
        await ads.NextAckedAsync();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [PaymentsCluster]);
        await ads.NextAckedAsync();

        File.Delete(Path.Combine(cp.ConfigDirectory, "payments.yaml"));

        var cds = await ads.NextAckedAsync();
        Assert.Equal(TypeUrls.Cluster, cds.TypeUrl);
        Assert.Empty(cds.Resources);
        Assert.Equal([PaymentsCluster], cds.RemovedResources);
        var eds = await ads.NextAckedAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, eds.TypeUrl);
        Assert.Empty(eds.Resources);
        Assert.Equal([PaymentsCluster], eds.RemovedResources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_ReconnectWithInitialResourceVersions_ResendsOnlyWhatIsOutdatedOrGone()
    {
        const string gone = "outbound|80||gone.default.svc.cluster.local";
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        Dictionary<string, string> versions;
        await using (var first = new DeltaAdsTestClient(cp.Channel))
        {
            await first.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node());
            versions = (await first.NextAckedAsync()).Resources.ToDictionary(r => r.Name, r => r.Version);
        }

        // The client kept orders at the current version, payments at an older one, and a cluster deleted meanwhile.
        await using (var second = new DeltaAdsTestClient(cp.Channel))
        {
            await second.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node(), initialVersions: new Dictionary<string, string>
            {
                [Cluster80] = versions[Cluster80],
                [PaymentsCluster] = "an-older-version",
                [gone] = "whatever",
            });
            var cds = await second.NextAsync();

            var resent = Assert.Single(cds.Resources);
            Assert.Equal(PaymentsCluster, resent.Name);
            Assert.Equal(versions[PaymentsCluster], resent.Version);
            Assert.Equal([gone], cds.RemovedResources);
        }

        // Everything current: no CDS response at all, so the first response is the EDS one asked for next.
        await using var third = new DeltaAdsTestClient(cp.Channel);
        await third.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node(), initialVersions: versions);
        await third.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80]);
        var next = await third.NextAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, next.TypeUrl);
    }

    [Fact]
    public async Task DeltaAggregatedResources_SubscriptionChangeWithStaleNonce_Honoured()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], node: AdsTestClient.Node());
        var first = await ads.NextAckedAsync();

        // istiod drops such a request whole; the spec says subscription changes apply whatever the nonce.
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [PaymentsCluster], nonce: first.Nonce);
        var second = await ads.NextAckedAsync();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, ["outbound|1||unknown.default.svc.cluster.local"], nonce: "never-sent-" + second.Nonce);
        var third = await ads.NextAsync();

        Assert.Equal([PaymentsCluster], second.Resources.Select(r => r.Name));
        Assert.Equal(["outbound|1||unknown.default.svc.cluster.local"], third.RemovedResources);
        Assert.Empty(third.Resources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_Nack_RecordedCountedAndNotResent()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], node: AdsTestClient.Node());
        var eds = await ads.NextAsync();

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, nonce: eds.Nonce, error: "xDS response validation errors: [bad\r\nendpoint]");

        // Requests are handled in order: a resend caused by the NACK would arrive before this CDS answer.
        await ads.SendAsync(TypeUrls.Cluster);
        Assert.Equal(TypeUrls.Cluster, (await ads.NextAsync()).TypeUrl);
        var client = await ClientAsync(cp, c => c.GetProperty("nacks").GetArrayLength() == 1);
        var nack = client.GetProperty("nacks")[0];
        Assert.Equal(TypeUrls.ClusterLoadAssignment, nack.GetProperty("typeUrl").GetString());
        Assert.Equal(eds.Nonce, nack.GetProperty("nonce").GetString());
        Assert.Equal(eds.SystemVersionInfo, nack.GetProperty("version").GetString());
        Assert.Equal("xDS response validation errors: [bad??endpoint]", nack.GetProperty("message").GetString());
        Assert.False(client.GetProperty("acked").TryGetProperty(TypeUrls.ClusterLoadAssignment, out _));
        await Poll.UntilAsync(async () => (await PrometheusText.ScrapeAsync(cp.Admin)).Count("pilot_total_xds_rejects", ("type", "eds")) == 1, "the delta NACK was not counted in pilot_total_xds_rejects");
    }

    [Fact]
    public async Task DeltaAggregatedResources_Metrics_ClientPushesAndConvergenceCountedAsForSotw()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        var ads = new DeltaAdsTestClient(cp.Channel);
        await using (ads)
        {
            var node = AdsTestClient.Node();
            node.UserAgentVersion = "9.8.7";
            await ads.SendAsync(TypeUrls.Cluster, node: node);
            await ads.NextAckedAsync();
            await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, PaymentsCluster]);
            await ads.NextAckedAsync();
            var before = await ScrapeUntilAsync(cp, s => s.Value("pilot_xds", ("version", "9.8.7")) == 1, "the delta client is not counted in pilot_xds");

            var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
            await registry.RegisterAsync(new RegisterRequest { Workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } });
            Assert.Equal(TypeUrls.ClusterLoadAssignment, (await ads.NextAckedAsync()).TypeUrl);

            var after = await ScrapeUntilAsync(cp, s => s.Count("pilot_proxy_convergence_time_count") == before.Count("pilot_proxy_convergence_time_count") + 1,
                "the ACKed change was never recorded in pilot_proxy_convergence_time");
            Assert.Equal(before.Count("pilot_xds_pushes", ("type", "eds")) + 1, after.Count("pilot_xds_pushes", ("type", "eds")));
            Assert.Equal(before.Count("pilot_xds_pushes", ("type", "cds")), after.Count("pilot_xds_pushes", ("type", "cds")));
        }

        await ScrapeUntilAsync(cp, s => s.Value("pilot_xds", ("version", "9.8.7")) == 0, "the closed delta stream is still counted in pilot_xds");
    }

    [Fact]
    public async Task DeltaAggregatedResources_PureUnsubscribe_NoResponseAndSubscriptionShrinks()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, PaymentsCluster], node: AdsTestClient.Node());
        await ads.NextAckedAsync();

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, unsubscribe: [PaymentsCluster, "never-subscribed"]);
        await ads.SendAsync(TypeUrls.Cluster, [Cluster80]);

        Assert.Equal(TypeUrls.Cluster, (await ads.NextAsync()).TypeUrl);
        var client = await ClientAsync(cp, _ => true);
        Assert.Equal([Cluster80], client.GetProperty("subscriptions").GetProperty(TypeUrls.ClusterLoadAssignment).EnumerateArray().Select(e => e.GetString()));
    }

    [Fact]
    public async Task DeltaAggregatedResources_WildcardPlusNames_UnsubscribingANameIsAnsweredAndWildcardIsRemovable()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        await ads.SendAsync(TypeUrls.Listener, ["*", "orders"], node: AdsTestClient.Node());
        var both = await ads.NextAckedAsync();
        Assert.Equal(["orders", OrdersListener, PaymentsListener], both.Resources.Select(r => r.Name).Order(StringComparer.Ordinal));

        // "*" and a name, then the name unsubscribed: the client cannot tell whether "*" covers it, so the server says
        // (xds_protocol "Unsubscribing from Resources"). The short spelling is not one of the wildcard's names: removed.
        await ads.SendAsync(TypeUrls.Listener, unsubscribe: ["orders"]);
        var removed = await ads.NextAckedAsync();
        Assert.Empty(removed.Resources);
        Assert.Equal(["orders"], removed.RemovedResources);

        // A subscribed name is sent even though the client has it at the current version; unsubscribed under "*", it
        // is still covered, so it comes back in resources.
        await ads.SendAsync(TypeUrls.Listener, [OrdersListener]);
        Assert.Equal([OrdersListener], (await ads.NextAckedAsync()).Resources.Select(r => r.Name));
        await ads.SendAsync(TypeUrls.Listener, unsubscribe: [OrdersListener]);
        var covered = await ads.NextAckedAsync();
        Assert.Equal([OrdersListener], covered.Resources.Select(r => r.Name));
        Assert.Empty(covered.RemovedResources);

        // "*" removed: a pure unsubscribe, no response; what follows is the answer to the next subscription alone.
        await ads.SendAsync(TypeUrls.Listener, unsubscribe: ["*"]);
        await ads.SendAsync(TypeUrls.Listener, [PaymentsListener]);
        var named = await ads.NextAckedAsync();
        Assert.Equal([PaymentsListener], named.Resources.Select(r => r.Name));
        Assert.Empty(named.RemovedResources);
        var client = await ClientAsync(cp, _ => true);
        Assert.Equal([PaymentsListener], client.GetProperty("subscriptions").GetProperty(TypeUrls.Listener).EnumerateArray().Select(e => e.GetString()));

        // No longer a wildcard client: a new service does not reach it, a change to what it names does.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService);
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "payments.yaml"), Payments.Replace("number: 50051", "number: 50052", StringComparison.Ordinal));
        var gone = await ads.NextAsync();
        Assert.Empty(gone.Resources);
        Assert.Equal([PaymentsListener], gone.RemovedResources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_WildcardClientAcrossChanges_HoldsExactlyWhatAFreshClientGets()
    {
        // A long-lived client is brought up to date by the changed names alone (XdsChanges); after every kind of change
        // it must hold exactly what a client connecting now gets: no resource missed, none left behind, no stale version.
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        var held = await SubscribeEverythingAsync(ads);

        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        var changes = new Func<Task>[]
        {
            // An endpoint change, a service removed, a service added, a port changed (listener targets move).
            async () => await registry.RegisterAsync(new RegisterRequest { Workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" } }),
            () => Task.Run(() => File.Delete(Path.Combine(cp.ConfigDirectory, "payments.yaml"))),
            () => File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService),
            () => File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService.Replace("number: 80", "number: 8080", StringComparison.Ordinal)),
        };
        foreach (var change in changes)
        {
            await change();

            // The first response proves the new snapshot exists, so a client connecting after it gets that snapshot.
            Apply(held, await ads.NextAckedAsync());
            await using var fresh = new DeltaAdsTestClient(cp.Channel);
            var expected = await SubscribeEverythingAsync(fresh);
            while (!Same(held, expected))
            {
                Apply(held, await ads.NextAckedAsync());
            }
        }

        static async Task<Dictionary<string, Dictionary<string, string>>> SubscribeEverythingAsync(DeltaAdsTestClient client)
        {
            var held = new Dictionary<string, Dictionary<string, string>>(StringComparer.Ordinal);
            await client.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node());
            Apply(held, await client.NextAckedAsync());
            await client.SendAsync(TypeUrls.ClusterLoadAssignment, ["*"]);
            Apply(held, await client.NextAckedAsync());

            // "*" plus another spelling of a listener: both subscriptions hold.
            await client.SendAsync(TypeUrls.Listener, ["*", "orders"]);
            Apply(held, await client.NextAckedAsync());
            return held;
        }

        static void Apply(Dictionary<string, Dictionary<string, string>> held, DeltaDiscoveryResponse response)
        {
            if (!held.TryGetValue(response.TypeUrl, out var versions))
            {
                held[response.TypeUrl] = versions = new Dictionary<string, string>(StringComparer.Ordinal);
            }

            foreach (var resource in response.Resources)
            {
                versions[resource.Name] = resource.Version;
            }

            foreach (var name in response.RemovedResources)
            {
                versions.Remove(name);
            }
        }

        static bool Same(Dictionary<string, Dictionary<string, string>> a, Dictionary<string, Dictionary<string, string>> b) =>
            a.Count == b.Count && a.All(t => b.TryGetValue(t.Key, out var other) && t.Value.Count == other.Count && t.Value.All(r => other.TryGetValue(r.Key, out var v) && v == r.Value));
    }

    [Fact]
    public async Task DeltaAggregatedResources_NewService_PushedInMakeBeforeBreakOrder()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        // Subscribed in the reverse order, each by the legacy wildcard.
        string[] subscribed = [TypeUrls.RouteConfiguration, TypeUrls.Listener, TypeUrls.ClusterLoadAssignment, TypeUrls.Cluster];
        await ads.SendAsync(subscribed[0], node: AdsTestClient.Node());
        foreach (var typeUrl in subscribed.Skip(1))
        {
            await ads.SendAsync(typeUrl);
        }

        foreach (var typeUrl in subscribed)
        {
            Assert.Equal(typeUrl, (await ads.NextAckedAsync()).TypeUrl);
        }

        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "nowhere.yaml"), NowhereService);
        var pushed = new List<DeltaDiscoveryResponse>();
        for (var i = 0; i < 4; i++)
        {
            pushed.Add(await ads.NextAckedAsync());
        }

        Assert.Equal([TypeUrls.Cluster, TypeUrls.ClusterLoadAssignment, TypeUrls.Listener, TypeUrls.RouteConfiguration], pushed.Select(r => r.TypeUrl));
        Assert.All(pushed, r => Assert.Contains("nowhere", Assert.Single(r.Resources).Name, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("")]
    [InlineData("gRPC Node Pure JS")]
    [InlineData("mesh-dotnet")]
    public async Task DeltaAggregatedResources_SameClientOnSotwAndDelta_ByteIdenticalResources(string userAgent)
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var sotw = cp.OpenAds();
        await using var delta = new DeltaAdsTestClient(cp.Channel);
        var node = AdsTestClient.Node();
        node.UserAgentName = userAgent;
        string[] listeners = ["orders", OrdersListener, "payments:50051"];

        var fromSotw = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        var fromDelta = new Dictionary<string, ByteString>(StringComparer.Ordinal);
        foreach (var typeUrl in TypeUrls.PushOrder)
        {
            string[] names = typeUrl == TypeUrls.Listener ? listeners : [];
            await sotw.SendAsync(typeUrl, names, fromSotw.Count == 0 ? node : null);
            var response = await sotw.NextAsync();
            await sotw.AckAsync(response, names);
            foreach (var any in response.Resources)
            {
                Assert.Equal(typeUrl, any.TypeUrl);
                fromSotw.Add(typeUrl + " " + NameOf(any), any.Value);
            }

            await delta.SendAsync(typeUrl, names, node: fromDelta.Count == 0 ? node : null);
            foreach (var resource in (await delta.NextAckedAsync()).Resources)
            {
                Assert.Equal(typeUrl, resource.Resource_.TypeUrl);
                Assert.Equal(resource.Name, NameOf(resource.Resource_));
                fromDelta.Add(typeUrl + " " + resource.Name, resource.Resource_.Value);
            }
        }

        Assert.Equal(9, fromSotw.Count);
        Assert.Equal(fromSotw.Keys.Order(StringComparer.Ordinal), fromDelta.Keys.Order(StringComparer.Ordinal));
        Assert.All(fromSotw, r => Assert.True(r.Value.Equals(fromDelta[r.Key]), $"{r.Key} differs between SotW and delta"));
        var clients = (await DumpAsync(cp)).GetProperty("clients");
        Assert.Equal(2, clients.GetArrayLength());
    }

    [Fact]
    public async Task DeltaAggregatedResources_TooManyNamesAccumulated_ResourceExhaustedNamingTheKey()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(["--ControlPlane:AdsMaxResourceNamesPerType=3"], ("orders.yaml", Orders));
        await using var ads = new DeltaAdsTestClient(cp.Channel);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, ["a", "b"], node: AdsTestClient.Node());
        await ads.NextAckedAsync();

        // Each request is under the limit; the subscription they add up to is not.
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, ["c", "d"]);
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Contains("the subscription of this delta ADS stream holds 4", error.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("at most 3 such names per type (ControlPlane:AdsMaxResourceNamesPerType)", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeltaAggregatedResources_MoreExistingResourcesThanTheNameLimit_WildcardAndReconnectServed()
    {
        // A mesh larger than the limit: a client subscribing to every assignment by name, and reconnecting with all it
        // has in initial_resource_versions, is served (names of existing resources are not what the limit bounds).
        await using var cp = await ControlPlaneFixture.StartAsync(["--ControlPlane:AdsMaxResourceNamesPerType=1"], ("orders.yaml", Orders), ("payments.yaml", Payments));
        Dictionary<string, string> versions;
        await using (var first = new DeltaAdsTestClient(cp.Channel))
        {
            await first.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node());
            versions = (await first.NextAckedAsync()).Resources.ToDictionary(r => r.Name, r => r.Version);
            await first.SendAsync(TypeUrls.ClusterLoadAssignment, versions.Keys);
            Assert.Equal(versions.Keys.Order(StringComparer.Ordinal), (await first.NextAckedAsync()).Resources.Select(r => r.Name).Order(StringComparer.Ordinal));
        }

        await using var second = new DeltaAdsTestClient(cp.Channel);
        await second.SendAsync(TypeUrls.Cluster, ["*"], node: AdsTestClient.Node(), initialVersions: versions);
        await second.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80, PaymentsCluster], initialVersions: new Dictionary<string, string>());
        var eds = await second.NextAckedAsync();
        Assert.Equal(TypeUrls.ClusterLoadAssignment, eds.TypeUrl);
        Assert.Null(second.Error);

        // Two names that do not exist are over the limit of one.
        await second.SendAsync(TypeUrls.ClusterLoadAssignment, ["made-up-1", "made-up-2"]);
        Assert.Equal(StatusCode.ResourceExhausted, (await second.ErrorAsync()).StatusCode);
    }

    [Fact]
    public async Task DeltaAggregatedResources_HugeResourceName_InvalidArgumentBeforeAnythingIsKept()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = new DeltaAdsTestClient(cp.Channel);

        // A delta stream keeps what it is subscribed to until unsubscribed: a megabyte name is refused, not stored.
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [new string('x', 1 << 20)], node: AdsTestClient.Node());
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
        Assert.Contains("resource_names_subscribe holds a type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment name of 1048576 characters; resource names are at most 1024", error.Status.Detail, StringComparison.Ordinal);
    }

    private static async Task<PrometheusText> ScrapeUntilAsync(ControlPlaneFixture cp, Func<PrometheusText, bool> condition, string failure)
    {
        PrometheusText? last = null;
        await Poll.UntilAsync(async () => condition(last = await PrometheusText.ScrapeAsync(cp.Admin)), failure);
        return last!;
    }

    private static string NameOf(Any any) => any.TypeUrl switch
    {
        TypeUrls.Cluster => any.Unpack<Cluster>().Name,
        TypeUrls.ClusterLoadAssignment => any.Unpack<ClusterLoadAssignment>().ClusterName,
        TypeUrls.Listener => any.Unpack<Listener>().Name,
        TypeUrls.RouteConfiguration => any.Unpack<RouteConfiguration>().Name,
        _ => throw new InvalidOperationException("unexpected type " + any.TypeUrl),
    };

    private static async Task<JsonElement> DumpAsync(ControlPlaneFixture cp)
    {
        using var response = await cp.Admin.GetAsync(new Uri("/debug/config_dump", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static async Task<JsonElement> ClientAsync(ControlPlaneFixture cp, Func<JsonElement, bool> condition)
    {
        JsonElement? found = null;
        await Poll.UntilAsync(
            async () =>
            {
                using var response = await cp.Admin.GetAsync(new Uri("/debug/clients", UriKind.Relative));
                response.EnsureSuccessStatusCode();
                var clients = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
                found = clients.GetArrayLength() == 1 && condition(clients[0]) ? clients[0] : null;
                return found is not null;
            },
            "the delta client never showed that state in /debug/clients");
        return found!.Value;
    }
}
