using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>Istio's Sidecar egress scoping: which Sidecar applies to a client, and which services and ports it then sees.</summary>
public sealed class EgressScopesTests
{
    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders, namespace: shop}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
          resolution: STATIC
          endpoints: [{address: 10.0.0.1}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: cart, namespace: shop}
        spec:
          hosts: [cart]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: 10.0.0.2}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: ledger, namespace: finance}
        spec:
          hosts: [ledger]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: 10.0.0.3}]
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: audit, namespace: finance}
        spec:
          hosts: [audit]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          endpoints: [{address: 10.0.0.4}]
        """;

    private const string Orders = "orders.shop.svc.cluster.local";
    private const string Cart = "cart.shop.svc.cluster.local";
    private const string Ledger = "ledger.finance.svc.cluster.local";
    private const string Audit = "audit.finance.svc.cluster.local";

    private static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>();

    private static EgressScopes Scopes(params string[] documents)
    {
        var result = YamlConfigLoader.Load([("mesh.yaml", string.Join("\n---\n", [Services, .. documents]))]);
        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        ImmutableArray<ResolvedService> services = [.. result.Config.ServiceEntries.Select(e => new ResolvedService(e, e.Hosts[0], LoadBalancerKind.RoundRobin, []))];
        return EgressScopes.Build(result.Config.Sidecars, services, result.Config.VirtualServices, rootNamespace: "istio-system");
    }

    private static string Sidecar(string ns, string egress, string? selector = null, string name = "default") => $$"""
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {name: {{name}}, namespace: {{ns}}}
        spec:
        {{(selector is null ? string.Empty : $"  workloadSelector: {{labels: {selector}}}\n")}}  egress:
        {{egress}}
        """;

    private static string[] Visible(EgressScope? scope) =>
        [.. new[] { Orders, Cart, Ledger, Audit }.Where(h => scope is null || scope.Allows(h, 80))];

    [Fact]
    public void For_NoSidecar_EverythingVisible()
    {
        var scopes = Scopes();

        Assert.Null(scopes.For("shop", NoLabels));
        Assert.True(scopes.IsEmpty);
    }

    [Fact]
    public void For_NamespaceWideDotStar_OnlyOwnNamespace()
    {
        var scope = Scopes(Sidecar("shop", """  - hosts: ["./*"]""")).For("shop", NoLabels);

        Assert.Equal([Orders, Cart], Visible(scope));
        Assert.Equal("shop/default", scope!.Sidecar);
    }

    [Fact]
    public void For_RootNamespaceDefault_DotMeansEachClientsOwnNamespace()
    {
        var scopes = Scopes(Sidecar("istio-system", """  - hosts: ["./*"]"""));

        Assert.Equal([Orders, Cart], Visible(scopes.For("shop", NoLabels)));
        Assert.Equal([Ledger, Audit], Visible(scopes.For("finance", NoLabels)));
    }

    [Fact]
    public void For_NamespaceOwnSidecar_WinsOverRootDefault()
    {
        var scopes = Scopes(
            Sidecar("istio-system", """  - hosts: ["./*"]"""),
            Sidecar("finance", """  - hosts: ["shop/orders.shop.svc.cluster.local"]"""));

        Assert.Equal([Orders], Visible(scopes.For("finance", NoLabels)));
        Assert.Equal([Orders, Cart], Visible(scopes.For("shop", NoLabels)));
    }

    [Fact]
    public void For_WorkloadSelector_OnlyForMatchingLabels_ElseNamespaceWide()
    {
        var scopes = Scopes(
            Sidecar("shop", """  - hosts: ["./*"]"""),
            Sidecar("shop", """  - hosts: ["finance/*"]""", selector: "{app: web}", name: "web"));

        Assert.Equal([Ledger, Audit], Visible(scopes.For("shop", new Dictionary<string, string> { ["app"] = "web", ["version"] = "v1" })));
        Assert.Equal([Orders, Cart], Visible(scopes.For("shop", new Dictionary<string, string> { ["app"] = "web2" })));

        // A selector in another namespace never applies here, whatever labels the client claims.
        Assert.Null(scopes.For("finance", new Dictionary<string, string> { ["app"] = "web" }));
    }

    [Fact]
    public void For_TildeAndWildcardSuffix()
    {
        var scopes = Scopes(Sidecar("shop", """
              - hosts: ["~/*", "*/*.finance.svc.cluster.local"]
            """));

        Assert.Equal([Ledger, Audit], Visible(scopes.For("shop", NoLabels)));
    }

    [Fact]
    public void For_EgressPort_OnlyThatPortOfTheService()
    {
        var scope = Scopes(Sidecar("shop", """
              - port: {number: 9090, protocol: GRPC, name: grpc}
                hosts: ["./orders.shop.svc.cluster.local"]
            """)).For("shop", NoLabels)!;

        Assert.True(scope.Allows(Orders, 9090));
        Assert.False(scope.Allows(Orders, 80));
        Assert.True(scope.AllowsResourceName($"outbound|9090||{Orders}"));
        Assert.True(scope.AllowsResourceName($"outbound|9090|v1|{Orders}"));
        Assert.False(scope.AllowsResourceName($"outbound|80||{Orders}"));
        Assert.False(scope.AllowsResourceName($"outbound|9090||{Cart}"));
    }

    [Fact]
    public void For_VirtualServiceInScope_ItsDestinationsAreInScopeToo()
    {
        var scope = Scopes(
            Sidecar("shop", """  - hosts: ["./*"]"""),
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: cart, namespace: shop}
            spec:
              hosts: [cart]
              http:
              - route: [{destination: {host: ledger.finance.svc.cluster.local}}]
                mirror: {host: audit.finance.svc.cluster.local, port: {number: 80}}
            """).For("shop", NoLabels);

        Assert.Equal([Orders, Cart, Ledger, Audit], Visible(scope));
    }

    [Fact]
    public void For_VirtualServiceFromAnotherNamespaceRoutingAVisibleHost_ItsDestinationsAreInScope()
    {
        // The route configuration of cart carries this VirtualService whatever namespace it was written in.
        var scope = Scopes(
            Sidecar("shop", """  - hosts: ["./*"]"""),
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: cart-to-ledger, namespace: finance}
            spec:
              hosts: [cart.shop.svc.cluster.local]
              http:
              - route: [{destination: {host: ledger.finance.svc.cluster.local}}]
            """).For("shop", NoLabels);

        Assert.Equal([Orders, Cart, Ledger], Visible(scope));
    }

    [Fact]
    public void For_VirtualServiceExportedToItsNamespaceOnly_AddsItsDestinationsForThatNamespaceOnly()
    {
        // Istio: exportTo ["."] hides the VirtualService from other namespaces, so their Sidecar scope does not take in its
        // destinations (their route for cart is the default one).
        var scopes = Scopes(
            Sidecar("istio-system", """  - hosts: ["*/cart.shop.svc.cluster.local"]"""),
            """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: cart-to-ledger, namespace: finance}
            spec:
              hosts: [cart.shop.svc.cluster.local]
              exportTo: ["."]
              http:
              - route: [{destination: {host: ledger.finance.svc.cluster.local}}]
            """);

        Assert.Equal([Cart, Ledger], Visible(scopes.For("finance", NoLabels)));
        Assert.Equal([Cart], Visible(scopes.For("shop", NoLabels)));
    }

    [Fact]
    public void AllowsResourceName_NotAnOutboundName_Allowed()
    {
        var scope = Scopes(Sidecar("shop", """  - hosts: ["./*"]""")).For("shop", NoLabels)!;

        Assert.True(scope.AllowsResourceName("xds.istio.io/grpc/lds/inbound/10.0.0.1:8080"));
        Assert.False(scope.AllowsResourceName($"outbound|80||{Ledger}"));
        Assert.False(scope.AllowsResourceName($"outbound|80||{Ledger.ToUpperInvariant()}"));
    }

    [Fact]
    public void For_MoreClaimedNamespacesThanTheCacheHolds_EachStillScopedCorrectly()
    {
        var scopes = Scopes(Sidecar("istio-system", """  - hosts: ["./*"]"""));

        for (var i = 0; i < EgressScopes.MaxCachedScopes + 50; i++)
        {
            Assert.Empty(Visible(scopes.For($"ns{i}", NoLabels)));
        }

        Assert.Equal([Orders, Cart], Visible(scopes.For("shop", NoLabels)));
    }
}
