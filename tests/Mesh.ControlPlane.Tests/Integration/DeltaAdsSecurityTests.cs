using Grpc.Core;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>
/// The incremental stream authenticates as the state-of-the-world one does (a workload SVID on the secure port, nobody on
/// the plaintext port, no stream past its certificate), and an inbound listener goes only to the identity it belongs to.
/// </summary>
public sealed class DeltaAdsSecurityTests
{
    private const string OrdersInbound = "xds.istio.io/grpc/lds/inbound/127.0.0.1:5001";

    private const string Config = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: orders}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-1}
        spec: {address: 127.0.0.1, ports: {http: 5001}, labels: {app: orders}, serviceAccount: orders}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny-admin}
        spec:
          selector: {matchLabels: {app: orders}}
          action: DENY
          rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
        """;

    [Fact]
    public async Task DeltaAggregatedResources_SecurePortWithoutClientCertificate_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        await using var ads = new DeltaAdsTestClient(cp.SecureChannel());

        await ads.SendAsync(TypeUrls.Cluster, node: AdsTestClient.Node());
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.StartsWith("ADS on the secure port (ControlPlane:SecureAddress) requires the workload's certificate", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeltaAggregatedResources_OwnInboundListener_ServedWithItsPolicy()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        await using var ads = await OpenAsync(cp, "orders");

        await ads.SendAsync(TypeUrls.Listener, [OrdersInbound], node: AdsTestClient.Node());
        var lds = await ads.NextAsync();

        var listener = Assert.Single(lds.Resources).Resource_.Unpack<Listener>();
        Assert.Equal(OrdersInbound, listener.Name);
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["ns[default]-policy[deny-admin]-rule[0]"], manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Keys);
    }

    [Fact]
    public async Task DeltaAggregatedResources_InboundListenerOfAnotherIdentity_ReportedAbsentNeverServed()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        await using var ads = await OpenAsync(cp, "frontend");

        // Asked by name with "*" and an outbound name: exactly as if the inbound listener did not exist.
        await ads.SendAsync(TypeUrls.Listener, ["*", OrdersInbound, "orders:80"], node: AdsTestClient.Node());
        var lds = await ads.NextAsync();

        Assert.DoesNotContain(lds.Resources, r => r.Name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal) || r.Resource_.Unpack<Listener>().Name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal));
        Assert.Contains(lds.Resources, r => r.Name == "orders:80");
        Assert.Equal([OrdersInbound], lds.RemovedResources);

        // Subscribing to it again, or in another spelling, gets the same answer.
        string[] spellings = [OrdersInbound, OrdersInbound.ToUpperInvariant(), OrdersInbound + " ", "xds.istio.io/grpc/lds/inbound/127.0.0.1:05001"];
        await ads.AckAsync(lds);
        await ads.SendAsync(TypeUrls.Listener, spellings);
        var again = await ads.NextAsync();
        Assert.Empty(again.Resources);
        Assert.Equal(spellings.Order(StringComparer.Ordinal), again.RemovedResources.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task DeltaAggregatedResources_PlaintextPort_InboundListenerNeverServed()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true, files: ("mesh.yaml", Config));
        await using var ads = new DeltaAdsTestClient(cp.PlaintextChannel());

        await ads.SendAsync(TypeUrls.Listener, ["*", OrdersInbound], node: AdsTestClient.Node());
        var lds = await ads.NextAsync();

        Assert.NotEmpty(lds.Resources);
        Assert.DoesNotContain(lds.Resources, r => r.Resource_.Unpack<Listener>().Name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal));
        Assert.Equal([OrdersInbound], lds.RemovedResources);
    }

    [Fact]
    public async Task DeltaAggregatedResources_ClientCertificateExpires_StreamEndsUnauthenticated()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cp = await SecureHost.StartAsync(null, null, false, services => services.AddSingleton<TimeProvider>(time), ("mesh.yaml", Config));
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "frontend"), ttlSeconds: 600);
        await using var ads = new DeltaAdsTestClient(cp.SecureChannel(leaf));
        await ads.SendAsync(TypeUrls.Cluster, node: AdsTestClient.Node());
        Assert.Single((await ads.NextAsync()).Resources);

        time.Advance(TimeSpan.FromMinutes(11));
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.StartsWith("the client certificate of spiffe://cluster.local/ns/default/sa/frontend expired at ", error.Status.Detail, StringComparison.Ordinal);
    }

    private static async Task<DeltaAdsTestClient> OpenAsync(SecureHost cp, string serviceAccount)
    {
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", serviceAccount));
        return new DeltaAdsTestClient(cp.SecureChannel(leaf));
    }
}
