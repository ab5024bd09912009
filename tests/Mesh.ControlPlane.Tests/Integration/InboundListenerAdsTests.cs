using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;

namespace Mesh.ControlPlane.Tests.Integration;

public sealed class InboundListenerAdsTests
{
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
        kind: PeerAuthentication
        metadata: {name: default, namespace: istio-system}
        spec: {mtls: {mode: STRICT}}
        ---
        apiVersion: security.istio.io/v1
        kind: AuthorizationPolicy
        metadata: {name: deny-admin}
        spec:
          action: DENY
          rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
        """;

    [Fact]
    public async Task StreamAggregatedResources_InboundListenerName_ReturnsStrictListenerWithDenyFilter()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("mesh.yaml", Config));
        await using var ads = cp.OpenAds();
        const string name = "xds.istio.io/grpc/lds/inbound/127.0.0.1:5001";

        await ads.SendAsync(TypeUrls.Listener, [name], AdsTestClient.Node());
        var lds = await ads.NextAsync();

        var listener = Assert.Single(lds.Resources).Unpack<Listener>();
        Assert.Equal(name, listener.Name);
        var chain = Assert.Single(listener.FilterChains);
        Assert.NotNull(chain.TransportSocket);
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["envoy.filters.http.rbac", "envoy.filters.http.router"], manager.HttpFilters.Select(f => f.Name));
    }
}
