using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>queryParams, authority and scheme as route matchers; sourceLabels/sourceNamespace and port as per-client selection.</summary>
public sealed class SourceScopedRoutesTests
{
    private const string Services = """
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
        metadata: {name: payments}
        spec:
          hosts: [payments]
          ports: [{number: 8080, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: payments}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
        """;

    private const string VirtualService = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - name: beta-callers
            match:
            - sourceLabels: {track: beta}
              sourceNamespace: shop
            route:
            - destination: {host: orders, subset: v2}
          - name: query
            match:
            - queryParams:
                version: {exact: v2}
                debug: {}
              authority: {prefix: orders}
              scheme: {exact: http}
              method: {exact: GET}
            route:
            - destination: {host: orders, subset: v2}
          - name: other-port
            match:
            - port: 8080
            route:
            - destination: {host: orders, subset: v2}
          - route:
            - destination: {host: orders, subset: v1}
        """;

    private static readonly ClientSource Beta = new("shop", new Dictionary<string, string> { ["app"] = "checkout", ["track"] = "beta" });

    private static XdsSnapshot Translate(string virtualService)
    {
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);
        Assert.False(result.HasErrors, string.Join("; ", result.Errors));
        return XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
    }

    private static List<Route> Routes(IReadOnlyDictionary<string, XdsResource> routes, string name = Cluster80) =>
        [.. Assert.Single(routes[name].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes];

    [Fact]
    public void Translate_QueryAuthorityScheme_AreStandardRouteMatchers()
    {
        var routes = Routes(Translate(VirtualService).Routes);
        var query = Assert.Single(routes, r => r.Name == "query").Match;

        Assert.Equal([":method", ":authority", ":scheme"], query.Headers.Select(h => h.Name).ToArray());
        Assert.Equal("orders", query.Headers[1].StringMatch.Prefix);
        Assert.Equal("http", query.Headers[2].StringMatch.Exact);
        Assert.Equal(["debug", "version"], query.QueryParameters.Select(q => q.Name).ToArray());
        Assert.True(query.QueryParameters[0].PresentMatch);
        Assert.Equal("v2", query.QueryParameters[1].StringMatch.Exact);
    }

    [Fact]
    public void Translate_SharedRoutes_LeaveOutSourceScopedAndOtherPortMatches()
    {
        var snapshot = Translate(VirtualService);

        // As istiod for a proxy that no selector selects: the beta-callers route and the port-8080 route are not there.
        Assert.Equal(["query", ""], Routes(snapshot.Routes).Select(r => r.Name).ToArray());
        Assert.Equal(["query", ""], Routes(snapshot.StandardClientRoutes).Select(r => r.Name).ToArray());
    }

    [Fact]
    public void Translate_StandardGrpcClients_DoNotGetQueryParameterRoutes()
    {
        var snapshot = Translate(VirtualService);

        // gRFC A28: an RPC has no query, so such a route is skipped; grpc-js-xds would ignore only the condition.
        var grpc = Routes(snapshot.StandardGrpcRoutes);
        Assert.Equal([""], grpc.Select(r => r.Name).ToArray());
        Assert.Equal(V1, grpc[0].Route_.Cluster);
        Assert.Equal(2u, grpc[0].Route_.RetryPolicy.NumRetries);
    }

    [Fact]
    public void RoutesFor_SelectedCaller_GetsTheSourceScopedRouteFirst()
    {
        var snapshot = Translate(VirtualService);

        foreach (var kind in new[] { RouteClientKind.Mesh, RouteClientKind.Standard, RouteClientKind.StandardGrpc })
        {
            var routes = Routes(snapshot.RoutesFor(kind, Beta));
            Assert.Equal("beta-callers", routes[0].Name);
            Assert.Equal(V2, routes[0].Route_.Cluster);
        }

        // The selected block has no request condition: a catch-all for this caller, so (as istiod) nothing follows it.
        Assert.Equal(["beta-callers"], Routes(snapshot.RoutesFor(RouteClientKind.Mesh, Beta)).Select(r => r.Name).ToArray());
        Assert.Equal(["beta-callers"], Routes(snapshot.RoutesFor(RouteClientKind.StandardGrpc, Beta)).Select(r => r.Name).ToArray());
    }

    [Theory]
    [InlineData("shop", "alpha", "another track")]
    [InlineData("default", "beta", "attacker claims the labels from another namespace")]
    [InlineData("shop", "BETA", "label values are case-sensitive")]
    [InlineData("shop", null, "no labels")]
    public void RoutesFor_CallerTheSelectorDoesNotSelect_GetsTheSharedResources(string ns, string? track, string because)
    {
        var snapshot = Translate(VirtualService);
        var labels = new Dictionary<string, string> { ["app"] = "checkout" };
        if (track is not null)
        {
            labels["track"] = track;
        }

        var routes = snapshot.RoutesFor(RouteClientKind.Mesh, new ClientSource(ns, labels));

        Assert.True(ReferenceEquals(snapshot.Routes, routes), because);
        Assert.Equal(0, snapshot.SourceScopedRoutes!.VariantCount);
    }

    [Fact]
    public void RoutesFor_TwoCallersSelectedAlike_ShareOneSerializedVariant()
    {
        var snapshot = Translate(VirtualService);
        var other = new ClientSource("shop", new Dictionary<string, string> { ["app"] = "cart", ["track"] = "beta", ["pod"] = "cart-7f9" });

        var first = snapshot.RoutesFor(RouteClientKind.Mesh, Beta);
        var second = snapshot.RoutesFor(RouteClientKind.Mesh, other);

        Assert.Same(first, second);
        Assert.Same(first[Cluster80], second[Cluster80]);
        Assert.Equal(1, snapshot.SourceScopedRoutes!.VariantCount);

        // Services without source-scoped routes keep the shared resource objects.
        var payments = "outbound|8080||payments.default.svc.cluster.local";
        Assert.Same(snapshot.Routes[payments], first[payments]);
    }

    [Fact]
    public void Translate_WithoutSourceSelectors_HasNoScopedRoutes()
    {
        var snapshot = Translate(VirtualService.Replace("    - sourceLabels: {track: beta}\n      sourceNamespace: shop\n", "    - headers: {x-beta: {exact: \"1\"}}\n", StringComparison.Ordinal));

        Assert.Null(snapshot.SourceScopedRoutes);
        Assert.Same(snapshot.Routes, snapshot.RoutesFor(RouteClientKind.Mesh, Beta));
    }

    [Fact]
    public void RoutesFor_OnlySourceScopedRoutesAndCallerNotSelected_GetsTheServicesDefaultRoute()
    {
        var snapshot = Translate("""
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: orders}
            spec:
              hosts: [orders]
              http:
              - match:
                - sourceNamespace: shop
                route:
                - destination: {host: orders, subset: v2}
            """);

        // istiod: no route of the VirtualService is left for this proxy, so the service keeps its default route.
        var shared = Assert.Single(Routes(snapshot.Routes));
        Assert.Equal(Cluster80, shared.Route_.Cluster);
        var scoped = Assert.Single(Routes(snapshot.RoutesFor(RouteClientKind.Mesh, new ClientSource("shop", new Dictionary<string, string>()))));
        Assert.Equal(V2, scoped.Route_.Cluster);
        Assert.Equal("/", scoped.Match.Prefix);
    }

    [Theory]
    [InlineData("[\".\"]")]
    [InlineData("[default]")]
    public void RoutesFor_VirtualServiceExportedToItsNamespace_AppliesThereOnly_OthersKeepTheDefaultRoute(string exportTo)
    {
        // vs.yaml is in namespace default. istiod leaves a VirtualService out of the routes of other namespaces' proxies.
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", VirtualService + $"\n  exportTo: {exportTo}")]);
        Assert.False(result.HasErrors, string.Join("; ", result.Errors));
        var warning = Assert.Single(result.Errors);
        Assert.Contains("spec.exportTo: route beta-callers: a match with a sourceNamespace other than default selects no caller", warning.Message, StringComparison.Ordinal);
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);

        var own = new ClientSource("default", new Dictionary<string, string> { ["app"] = "checkout", ["track"] = "beta" });
        foreach (var kind in new[] { RouteClientKind.Mesh, RouteClientKind.Standard })
        {
            var routes = Routes(snapshot.RoutesFor(kind, own));
            Assert.Equal(["query", ""], routes.Select(r => r.Name).ToArray());
            Assert.Equal(V1, routes[1].Route_.Cluster);
        }

        // The shop caller (and any caller of an unknown namespace) does not see it: the service's default route.
        Assert.Equal(Cluster80, Assert.Single(Routes(snapshot.RoutesFor(RouteClientKind.Mesh, Beta))).Route_.Cluster);
        Assert.Equal(Cluster80, Assert.Single(Routes(snapshot.Routes)).Route_.Cluster);
    }

    private static string ExportedHere(string ns, string subset) => $$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders-{{subset}}, namespace: {{ns}}}
        spec:
          hosts: [{{Fqdn}}]
          exportTo: ["."]
          http:
          - name: {{ns}}-route
            route:
            - destination: {host: {{Fqdn}}, subset: {{subset}}}
        """;

    [Fact]
    public void RoutesFor_TwoVirtualServicesOfOneHostEachExportedToItsNamespace_EachCallerGetsItsOwn_AsIstio()
    {
        // Istio allows them (no caller sees both); each namespace's callers get their own, other callers the default route.
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("shop.yaml", ExportedHere("shop", "v2")), ("default.yaml", ExportedHere("default", "v1"))]);
        Assert.Empty(result.Errors);
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);

        foreach (var kind in new[] { RouteClientKind.Mesh, RouteClientKind.Standard })
        {
            var shop = Assert.Single(Routes(snapshot.RoutesFor(kind, new ClientSource("shop", new Dictionary<string, string>()))));
            Assert.Equal(("shop-route", V2), (shop.Name, shop.Route_.Cluster));
            var own = Assert.Single(Routes(snapshot.RoutesFor(kind, new ClientSource("default", new Dictionary<string, string>()))));
            Assert.Equal(("default-route", V1), (own.Name, own.Route_.Cluster));
            Assert.Equal(Cluster80, Assert.Single(Routes(snapshot.RoutesFor(kind, new ClientSource("billing", new Dictionary<string, string>())))).Route_.Cluster);
        }
    }

    [Fact]
    public void Load_TwoVirtualServicesOfOneHost_OneSeenEverywhere_IsStillAnError()
    {
        var everywhere = ExportedHere("shop", "v2").Replace("  exportTo: [\".\"]\n", string.Empty, StringComparison.Ordinal);

        var result = YamlConfigLoader.Load([("services.yaml", Services), ("default.yaml", ExportedHere("default", "v1")), ("shop.yaml", everywhere)]);

        var error = Assert.Single(result.Errors);
        Assert.Contains($"VirtualService shop/orders-v2: spec.hosts[0]: host {Fqdn} already has VirtualService default/orders-v1 (default.yaml:1); merge them into one (two VirtualServices for one host are allowed only in different namespaces, each with exportTo: [\".\"])", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ClientSource_WithCertifiedIdentity_TakesTheNamespaceFromTheCertificateNotTheMetadata()
    {
        var node = new Node { Id = "sidecar~10.0.0.1~checkout-1.shop~shop.svc.cluster.local", Metadata = new Struct() };
        node.Metadata.Fields["NAMESPACE"] = Value.ForString("shop");
        var labels = new Struct();
        labels.Fields["track"] = Value.ForString("beta");
        labels.Fields["replicas"] = Value.ForNumber(3);
        node.Metadata.Fields["LABELS"] = Value.ForStruct(labels);

        var certified = ClientSource.FromNode(node, "spiffe://cluster.local/ns/default/sa/checkout");
        var plaintext = ClientSource.FromNode(node, identity: null);

        // A certificate that is not a workload's (another trust domain's path shape) never lets the metadata speak instead.
        var odd = ClientSource.FromNode(node, "spiffe://cluster.local/some/other/path");

        Assert.Equal("default", certified.Namespace);
        Assert.Equal(string.Empty, odd.Namespace);
        Assert.Equal("shop", plaintext.Namespace);
        Assert.Equal(new Dictionary<string, string> { ["track"] = "beta" }, plaintext.Labels);
    }
}
