using Grpc.Core;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>Inbound listeners (a workload's PeerAuthentication and RBAC) go only to the workload whose address they describe.</summary>
public sealed class InboundListenerAdsTests
{
    private const string OrdersInbound = "xds.istio.io/grpc/lds/inbound/127.0.0.1:5001";
    private const string RegisteredInbound = "xds.istio.io/grpc/lds/inbound/127.0.0.1:5002";

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
        kind: ServiceEntry
        metadata: {name: frontend}
        spec:
          hosts: [frontend]
          ports: [{number: 80, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: frontend}}
        ---
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: orders-1}
        spec: {address: 127.0.0.1, ports: {http: 5001}, labels: {app: orders}, serviceAccount: orders}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: istio-system}
        spec: {mtls: {mode: STRICT}}
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
    public async Task StreamAggregatedResources_OwnInboundListener_ReturnsStrictListenerWithDenyFilter()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        await using var ads = await OpenAdsAsync(cp, "orders");

        await ads.SendAsync(TypeUrls.Listener, [OrdersInbound], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        var listener = Assert.Single(lds.Resources).Unpack<Listener>();
        Assert.Equal(OrdersInbound, listener.Name);
        var chain = Assert.Single(listener.FilterChains);
        Assert.NotNull(chain.TransportSocket);
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["envoy.filters.http.rbac", "envoy.filters.http.router"], manager.HttpFilters.Select(f => f.Name));
        Assert.Equal(["ns[default]-policy[deny-admin]-rule[0]"], manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Keys);
    }

    [Fact]
    public async Task StreamAggregatedResources_InboundListenerOfAnotherIdentity_NotServedButOutboundIs()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        await using var ads = await OpenAdsAsync(cp, "frontend");

        // Asked by name with an outbound listener: only the outbound one comes back, as if the inbound name did not exist.
        await ads.SendAsync(TypeUrls.Listener, [OrdersInbound, "orders:80"], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        Assert.Equal(["orders:80"], lds.Resources.Select(r => r.Unpack<Listener>().Name));
    }

    [Fact]
    public async Task StreamAggregatedResources_InboundListenerOnPlaintextPort_NeverServed()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true, files: ("mesh.yaml", Config));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.PlaintextChannel()).StreamAggregatedResources());

        await ads.SendAsync(TypeUrls.Listener, [OrdersInbound, "orders:80"], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        Assert.Equal(["orders:80"], lds.Resources.Select(r => r.Unpack<Listener>().Name));
    }

    [Fact]
    public async Task StreamAggregatedResources_WildcardOnPlaintextPort_OutboundOnly()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true, files: ("mesh.yaml", Config));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.PlaintextChannel()).StreamAggregatedResources());

        await ads.SendAsync(TypeUrls.Listener, ["*", OrdersInbound], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        Assert.NotEmpty(lds.Resources);
        Assert.DoesNotContain(lds.Resources, r => r.Unpack<Listener>().Name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Register_AnotherIdentityTakesOverRegisteredAddress_RefusedAndInboundStaysTheOwners()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        var (_, orders) = await cp.IssueAsync(cp.Token("default", "orders"));
        var (_, frontend) = await cp.IssueAsync(cp.Token("default", "frontend"));
        await new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(orders)).RegisterAsync(Registration("orders", 5002));

        // The attack of issue 7: frontend registers orders' address:port with its own labels, so the listener would be built
        // from app=frontend and orders' DENY rule would disappear.
        var ex = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(frontend)).RegisterAsync(Registration("frontend", 5002)).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Contains("address 127.0.0.1:5002 is held by spiffe://cluster.local/ns/default/sa/orders", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("spiffe://cluster.local/ns/default/sa/frontend may not register it", ex.Status.Detail, StringComparison.Ordinal);
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(orders)).StreamAggregatedResources());
        await ads.SendAsync(TypeUrls.Listener, [RegisteredInbound], AdsTestClient.Node());

        // The registration reaches a snapshot after the debounce: the first answer may predate it, the next push has it.
        var lds = await ads.NextAsync();
        while (lds.Resources.Count == 0)
        {
            lds = await ads.NextAsync();
        }

        var listener = Assert.Single(lds.Resources).Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["ns[default]-policy[deny-admin]-rule[0]"], manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Keys);
    }

    [Fact]
    public async Task Register_AddressOfWorkloadEntryWithServiceAccount_RefusedNamingTheEntry()
    {
        await using var cp = await SecureHost.StartAsync(files: ("mesh.yaml", Config));
        var (_, frontend) = await cp.IssueAsync(cp.Token("default", "frontend"));

        var ex = await Assert.ThrowsAsync<RpcException>(() => new WorkloadRegistry.WorkloadRegistryClient(cp.SecureChannel(frontend)).RegisterAsync(Registration("frontend", 5001)).ResponseAsync);

        Assert.Equal(StatusCode.PermissionDenied, ex.StatusCode);
        Assert.Equal(
            "address 127.0.0.1:5001 is declared for spiffe://cluster.local/ns/default/sa/orders (WorkloadEntry default/orders-1 spec.serviceAccount); spiffe://cluster.local/ns/default/sa/frontend may not register it",
            ex.Status.Detail);
    }

    private static async Task<AdsTestClient> OpenAdsAsync(SecureHost cp, string serviceAccount)
    {
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", serviceAccount));
        return new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(leaf)).StreamAggregatedResources());
    }

    internal static RegisterRequest Registration(string serviceAccount, uint port) => new()
    {
        Workload = new WorkloadEntry
        {
            Namespace = "default",
            Address = "127.0.0.1",
            Ports = { ["http"] = port },
            Labels = { ["app"] = serviceAccount },
            ServiceAccount = serviceAccount,
        },
    };
}
