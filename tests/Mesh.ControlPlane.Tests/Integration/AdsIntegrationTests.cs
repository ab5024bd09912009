using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Grpc.Core;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Registry.V1;
using static Mesh.ControlPlane.Tests.Support.AdsFixtures;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Integration;

public class AdsIntegrationTests
{
    [Fact]
    public async Task StartAsync_EphemeralPorts_ReadyLineAndHealthzReady()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));

        var match = Regex.Match(cp.Host.ReadyLine, @"^Mesh control plane ready: xds=(\S+) admin=(\S+) secure=(\S+)$");
        Assert.True(match.Success, cp.Host.ReadyLine);
        Assert.NotNull(cp.Host.XdsAddress);
        Assert.Equal(cp.Host.XdsAddress.GetLeftPart(UriPartial.Authority), match.Groups[1].Value);
        Assert.NotEqual(0, cp.Host.XdsAddress.Port);
        Assert.NotEqual(0, cp.Host.AdminAddress.Port);
        var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("ready", await ready.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task StartAsync_UnknownKey_FailsNamingTheKey()
    {
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => ControlPlaneHost.StartAsync(["--ControlPlane:XdsAdress=http://127.0.0.1:0", "--ControlPlane:LeaseTtl=soon"]));

        Assert.Contains("ControlPlane:XdsAdress is not a known setting", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ControlPlane:LeaseTtl must be a TimeSpan", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_WildcardPlusAnotherSpelling_BothServedAsOnTheDeltaStream()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();
        await using var delta = new DeltaAdsTestClient(cp.Channel);

        // "*" and a name are both subscriptions: the short spelling is served next to every canonical listener, on either
        // variant (one rule, AdsClientView.Select).
        await ads.SendAsync(TypeUrls.Listener, ["*", "orders"], AdsTestClient.Node());
        var lds = await ads.NextAsync();
        await delta.SendAsync(TypeUrls.Listener, ["*", "orders"], node: AdsTestClient.Node());
        var deltaLds = await delta.NextAsync();

        Assert.Equal(["orders", "orders.default.svc.cluster.local:80", "payments.default.svc.cluster.local:50051"],
            lds.Resources.Select(r => r.Unpack<Listener>().Name).Order(StringComparer.Ordinal));
        Assert.Equal(lds.Resources.OrderBy(r => r.Unpack<Listener>().Name, StringComparer.Ordinal).Select(r => r.Value),
            deltaLds.Resources.OrderBy(r => r.Name, StringComparer.Ordinal).Select(r => r.Resource_.Value));
    }

    [Fact]
    public async Task StreamAggregatedResources_LdsByShortName_ThenRdsCdsEdsChain()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();

        await ads.SendAsync(TypeUrls.Listener, ["orders"], AdsTestClient.Node());
        var lds = await ads.NextAsync();
        Assert.Equal(TypeUrls.Listener, lds.TypeUrl);
        var listener = Assert.Single(lds.Resources).Unpack<Listener>();
        Assert.Equal("orders", listener.Name);
        var routeName = listener.ApiListener.ApiListener_.Unpack<HttpConnectionManager>().Rds.RouteConfigName;
        Assert.Equal(Cluster80, routeName);
        await ads.AckAsync(lds, ["orders"]);

        await ads.SendAsync(TypeUrls.RouteConfiguration, [routeName]);
        var rds = await ads.NextAsync();
        var route = Assert.Single(rds.Resources).Unpack<RouteConfiguration>();
        Assert.Contains("orders", route.VirtualHosts[0].Domains);
        await ads.AckAsync(rds, [routeName]);

        await ads.SendAsync(TypeUrls.Cluster, [Cluster80]);
        var cds = await ads.NextAsync();
        Assert.Equal(Cluster80, Assert.Single(cds.Resources).Unpack<Cluster>().Name);
        await ads.AckAsync(cds, [Cluster80]);

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80]);
        var eds = await ads.NextAsync();
        var cla = Assert.Single(eds.Resources).Unpack<ClusterLoadAssignment>();
        Assert.Equal(5001u, Assert.Single(Assert.Single(cla.Endpoints).LbEndpoints).Endpoint.Address.SocketAddress.PortValue);
        await ads.AckAsync(eds, [Cluster80]);

        Assert.Equal(4, new[] { lds.Nonce, rds.Nonce, cds.Nonce, eds.Nonce }.Distinct().Count());
        var client = await PollClientAsync(cp, c => c.GetProperty("acked").EnumerateObject().Count() == 4);
        Assert.Equal("sidecar~10.0.0.9~client-1.default~default.svc.cluster.local", client.GetProperty("id").GetString());
        Assert.Equal(eds.VersionInfo, client.GetProperty("acked").GetProperty(TypeUrls.ClusterLoadAssignment).GetString());
        Assert.Equal("orders", client.GetProperty("subscriptions").GetProperty(TypeUrls.Listener)[0].GetString());
    }

    [Fact]
    public async Task Register_NewWorkload_PushesEdsAndDeregisterRemovesIt()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], AdsTestClient.Node());
        var initial = await ads.NextAsync();
        Assert.Single(initial.Resources[0].Unpack<ClusterLoadAssignment>().Endpoints[0].LbEndpoints);
        await ads.AckAsync(initial, [Cluster80]);

        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        var workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" };
        var registered = await registry.RegisterAsync(new RegisterRequest { Workload = workload });
        Assert.Equal(["orders.default.svc.cluster.local"], registered.Services);
        Assert.Equal(TimeSpan.FromSeconds(10), registered.LeaseTtl.ToTimeSpan());
        Assert.Equal(registered.LeaseId, (await registry.RegisterAsync(new RegisterRequest { Workload = workload })).LeaseId);

        var pushed = await ads.NextAsync();
        var ports = pushed.Resources[0].Unpack<ClusterLoadAssignment>().Endpoints.SelectMany(l => l.LbEndpoints).Select(e => e.Endpoint.Address.SocketAddress.PortValue).Order();
        Assert.Equal([5001u, 5002u], ports);
        Assert.NotEqual(initial.VersionInfo, pushed.VersionInfo);
        await ads.AckAsync(pushed, [Cluster80]);

        var dump = await GetDumpAsync(cp);
        var endpoint = dump.GetProperty("services")[0].GetProperty("endpoints").EnumerateArray().Single(e => e.GetProperty("port").GetUInt32() == 5002);
        Assert.Equal("registration", endpoint.GetProperty("source").GetString());
        Assert.True(endpoint.TryGetProperty("leaseExpires", out _));

        await registry.DeregisterAsync(new DeregisterRequest { LeaseId = registered.LeaseId });
        var removed = await ads.NextAsync();
        Assert.Single(removed.Resources[0].Unpack<ClusterLoadAssignment>().Endpoints[0].LbEndpoints);

        var renew = await Assert.ThrowsAsync<RpcException>(() => registry.RenewAsync(new RenewRequest { LeaseId = registered.LeaseId }).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, renew.StatusCode);
    }

    [Fact]
    public async Task Register_NoLabels_IsInvalidArgument()
    {
        await using var cp = await ControlPlaneFixture.StartAsync();
        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);

        var ex = await Assert.ThrowsAsync<RpcException>(() => registry.RegisterAsync(new RegisterRequest { Workload = new WorkloadEntry { Address = "10.0.0.1" } }).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("labels", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_Nack_IsRecordedAndNotResent()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Listener, ["orders:80"], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        await ads.SendAsync(TypeUrls.Listener, ["orders:80"], nonce: lds.Nonce, version: lds.VersionInfo, error: "xDS response validation errors: [boom]");
        // Requests are handled in order: a resend caused by the NACK would arrive before this CDS answer.
        await ads.SendAsync(TypeUrls.Cluster, []);
        var next = await ads.NextAsync();
        Assert.Equal(TypeUrls.Cluster, next.TypeUrl);

        var client = await PollClientAsync(cp, c => c.GetProperty("nacks").GetArrayLength() == 1);
        var nack = client.GetProperty("nacks")[0];
        Assert.Equal(TypeUrls.Listener, nack.GetProperty("typeUrl").GetString());
        Assert.Equal(lds.Nonce, nack.GetProperty("nonce").GetString());
        Assert.Equal(lds.VersionInfo, nack.GetProperty("version").GetString());
        Assert.Equal("xDS response validation errors: [boom]", nack.GetProperty("message").GetString());
        Assert.False(client.GetProperty("acked").TryGetProperty(TypeUrls.Listener, out _));
    }

    [Fact]
    public async Task StreamAggregatedResources_NackWithControlCharactersAndHugeText_RecordedPrintableAndBounded()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Listener, ["orders:80"], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        await ads.SendAsync(TypeUrls.Listener, ["orders:80"], nonce: lds.Nonce, version: lds.VersionInfo, error: "bad\r\n2026-01-01 fake: log line" + new string('x', 100_000));

        var client = await PollClientAsync(cp, c => c.GetProperty("nacks").GetArrayLength() == 1);
        var message = client.GetProperty("nacks")[0].GetProperty("message").GetString()!;
        Assert.StartsWith("bad??2026-01-01 fake: log line", message, StringComparison.Ordinal);
        Assert.EndsWith("(99518 more characters)", message, StringComparison.Ordinal);
        Assert.True(message.Length < 600, $"{message.Length} characters kept");
    }

    [Fact]
    public async Task StreamAggregatedResources_StaleNonce_IsIgnored()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Listener, ["orders"], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        await ads.SendAsync(TypeUrls.Listener, ["orders", "payments"], nonce: "stale-" + lds.Nonce, version: lds.VersionInfo);
        await ads.SendAsync(TypeUrls.Cluster, []);
        Assert.Equal(TypeUrls.Cluster, (await ads.NextAsync()).TypeUrl);

        await ads.SendAsync(TypeUrls.Listener, ["orders", "payments"], nonce: lds.Nonce, version: lds.VersionInfo);
        var current = await ads.NextAsync();
        Assert.Equal(["orders", "payments"], current.Resources.Select(r => r.Unpack<Listener>().Name).Order());
    }

    [Fact]
    public async Task StreamAggregatedResources_Wildcard_ReturnsFullSets()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders), ("payments.yaml", Payments));
        await using var ads = cp.OpenAds();

        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var cds = await ads.NextAsync();
        Assert.Equal(["outbound|50051||payments.default.svc.cluster.local", Cluster80], cds.Resources.Select(r => r.Unpack<Cluster>().Name).Order(StringComparer.Ordinal));

        await ads.SendAsync(TypeUrls.Listener, ["*"]);
        var lds = await ads.NextAsync();
        Assert.Equal(["orders.default.svc.cluster.local:80", "payments.default.svc.cluster.local:50051"], lds.Resources.Select(r => r.Unpack<Listener>().Name).Order());
    }

    [Fact]
    public async Task ConfigFolder_ServiceAddedLater_PushesRememberedListenerAndBadEditKeepsIt()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Listener, ["payments:50051"], AdsTestClient.Node());
        var empty = await ads.NextAsync();
        Assert.Empty(empty.Resources);
        await ads.AckAsync(empty, ["payments:50051"]);

        // Editors often save through a temp file and a rename.
        var temp = Path.Combine(cp.ConfigDirectory, "payments.yaml.tmp");
        await File.WriteAllTextAsync(temp, Payments);
        File.Move(temp, Path.Combine(cp.ConfigDirectory, "payments.yaml"));
        var pushed = await ads.NextAsync();
        Assert.Equal("payments:50051", Assert.Single(pushed.Resources).Unpack<Listener>().Name);
        await ads.AckAsync(pushed, ["payments:50051"]);

        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "payments.yaml"), Payments.Replace("number: 50051", "number: 0", StringComparison.Ordinal));
        var dump = await PollDumpAsync(cp, d => d.GetProperty("configErrors").GetArrayLength() > 0);
        var error = dump.GetProperty("configErrors")[0];
        Assert.Equal("payments.yaml", error.GetProperty("file").GetString());
        Assert.Equal(8, error.GetProperty("line").GetInt32());
        Assert.Contains("spec.ports[0].number", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(2, dump.GetProperty("services").GetArrayLength());
    }

    [Fact]
    public async Task ConfigFolder_PeerAuthenticationDisableAddedThenRemoved_RepushesClusterWithoutThenWithTls()
    {
        const string disable = """
            apiVersion: security.istio.io/v1
            kind: PeerAuthentication
            metadata: {name: orders}
            spec:
              selector: {matchLabels: {app: orders}}
              mtls: {mode: DISABLE}
            """;
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Cluster, [Cluster80], AdsTestClient.Node());
        var initial = await ads.NextAsync();
        Assert.NotNull(Assert.Single(initial.Resources).Unpack<Cluster>().TransportSocket);
        await ads.AckAsync(initial, [Cluster80]);

        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "orders-peer.yaml"), disable);
        var plaintext = await ads.NextAsync();
        Assert.Null(Assert.Single(plaintext.Resources).Unpack<Cluster>().TransportSocket);
        await ads.AckAsync(plaintext, [Cluster80]);

        File.Delete(Path.Combine(cp.ConfigDirectory, "orders-peer.yaml"));
        var mtls = await ads.NextAsync();
        Assert.NotNull(Assert.Single(mtls.Resources).Unpack<Cluster>().TransportSocket);
    }

    [Fact]
    public async Task StopAsync_OpenAdsStream_EndsStreamAndStopsPromptly()
    {
        var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Listener, ["orders"], AdsTestClient.Node());
        await ads.NextAsync();

        var started = DateTime.UtcNow;
        await cp.Host.StopAsync().WaitAsync(TimeSpan.FromSeconds(15));

        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10), "shutdown waited for the ADS stream");
        await ads.DisposeAsync();
        await cp.DisposeAsync();
    }

    private static async Task<JsonElement> GetDumpAsync(ControlPlaneFixture cp)
    {
        using var response = await cp.Admin.GetAsync(new Uri("/debug/config_dump", UriKind.Relative));
        response.EnsureSuccessStatusCode();
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static async Task<JsonElement> PollDumpAsync(ControlPlaneFixture cp, Func<JsonElement, bool> condition)
    {
        var deadline = DateTime.UtcNow + AdsTestClient.Timeout;
        while (true)
        {
            var dump = await GetDumpAsync(cp);
            if (condition(dump))
            {
                return dump;
            }

            Assert.True(DateTime.UtcNow < deadline, "condition not met before deadline: " + dump);
            await Task.Yield();
        }
    }

    private static async Task<JsonElement> PollClientAsync(ControlPlaneFixture cp, Func<JsonElement, bool> condition)
    {
        var dump = await PollDumpAsync(cp, d => d.GetProperty("clients").GetArrayLength() == 1 && condition(d.GetProperty("clients")[0]));
        return dump.GetProperty("clients")[0];
    }
}
