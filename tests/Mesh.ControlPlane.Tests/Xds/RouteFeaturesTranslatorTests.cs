using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>Fault, mirror, rewrite, header mutations, redirect and direct response as standard xDS, and what a standard gRPC client gets.</summary>
public class RouteFeaturesTranslatorTests
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
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          subsets:
          - name: v2
            labels: {version: v2}
        """;

    private const string Features = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - name: faulty
            match:
            - uri: {prefix: /api}
            - uri: {prefix: /v1}
            fault:
              delay: {fixedDelay: 250ms, percentage: {value: 10}}
              abort: {httpStatus: 503}
            mirror: {host: orders, subset: v2}
            rewrite: {uri: /v2/api, authority: orders-v2.internal}
            headers:
              request: {set: {x-a: "1"}, add: {x-c: "3"}, remove: [x-secret]}
              response: {set: {x-served-by: mesh}, remove: [server]}
            route:
            - destination: {host: orders}
          - name: moved
            match:
            - uri: {prefix: /old}
            redirect: {uri: /new, authority: new.example, port: 8443, scheme: https, redirectCode: 307}
          - name: maintenance
            match:
            - uri: {prefix: /admin}
            directResponse: {status: 503, body: {string: "down"}}
          - name: regex
            match:
            - uri: {prefix: /demo.Echo/}
            fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}}
            mirrors:
            - destination: {host: orders, subset: v2}
              percentage: {value: 25}
            rewrite:
              uriRegexRewrite: {match: "^/demo.Echo/(.*)$", rewrite: "/demo.Echo2/\\1"}
            route:
            - destination: {host: orders}
          - route:
            - destination: {host: orders}
        """;

    private static XdsSnapshot Translate(string virtualService)
    {
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);
        Assert.False(result.HasErrors, string.Join("\n", result.Errors.Select(e => e.Message)));
        return XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
    }

    private static List<Route> Routes(IReadOnlyDictionary<string, XdsResource> routes) =>
        [.. Assert.Single(routes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes];

    private static FractionalPercent PerMillion(uint numerator) => new() { Numerator = numerator, Denominator = FractionalPercent.Types.DenominatorType.Million };

    [Fact]
    public void Translate_Features_AreStandardXdsOnEveryMatchOfTheRoute()
    {
        var routes = Routes(Translate(Features).Routes);

        Assert.Equal(6, routes.Count);
        foreach (var route in routes.Take(2))
        {
            var fault = route.TypedPerFilterConfig[XdsWire.FaultFilter].Unpack<HTTPFault>();
            Assert.Equal(Duration.FromTimeSpan(TimeSpan.FromMilliseconds(250)), fault.Delay.FixedDelay);
            Assert.Equal(PerMillion(100_000), fault.Delay.Percentage);
            Assert.Equal(503u, fault.Abort.HttpStatus);

            // grpc-js NACKs an abort without a percentage; Istio's "unset" is 0 %.
            Assert.Equal(PerMillion(0), fault.Abort.Percentage);

            var mirror = Assert.Single(route.Route_.RequestMirrorPolicies);
            Assert.Equal($"outbound|80|v2|{Fqdn}", mirror.Cluster);
            Assert.Equal(PerMillion(1_000_000), mirror.RuntimeFraction.DefaultValue);
            Assert.True(mirror.DisableShadowHostSuffixAppend);
            Assert.Equal("/v2/api", route.Route_.PrefixRewrite);
            Assert.Equal("orders-v2.internal", route.Route_.HostRewriteLiteral);
            Assert.Equal(
                [("x-a", "1", HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExistsOrAdd), ("x-c", "3", HeaderValueOption.Types.HeaderAppendAction.AppendIfExistsOrAdd)],
                route.RequestHeadersToAdd.Select(h => (h.Header.Key, h.Header.Value, h.AppendAction)).ToArray());
            Assert.Equal(["x-secret"], route.RequestHeadersToRemove.ToArray());
            Assert.Equal("x-served-by", Assert.Single(route.ResponseHeadersToAdd).Header.Key);
            Assert.Equal(["server"], route.ResponseHeadersToRemove.ToArray());
        }

        var redirect = routes[2].Redirect;
        Assert.Equal(("/new", "new.example", 8443u, "https", RedirectAction.Types.RedirectResponseCode.TemporaryRedirect),
            (redirect.PathRedirect, redirect.HostRedirect, redirect.PortRedirect, redirect.SchemeRedirect, redirect.ResponseCode));
        Assert.Equal(503u, routes[3].DirectResponse.Status);
        Assert.Equal("down", routes[3].DirectResponse.Body.InlineBytes.ToStringUtf8());

        var grpc = routes[4];
        var grpcFault = grpc.TypedPerFilterConfig[XdsWire.FaultFilter].Unpack<HTTPFault>();
        Assert.Equal(14u, grpcFault.Abort.GrpcStatus);
        Assert.Equal(PerMillion(5_000), grpcFault.Abort.Percentage);
        Assert.Null(grpcFault.Delay);
        Assert.Equal(PerMillion(250_000), Assert.Single(grpc.Route_.RequestMirrorPolicies).RuntimeFraction.DefaultValue);
        Assert.Equal(("^/demo.Echo/(.*)$", "/demo.Echo2/\\1"), (grpc.Route_.RegexRewrite.Pattern.Regex, grpc.Route_.RegexRewrite.Substitution));

        // A route without features carries none of them.
        Assert.Empty(routes[5].TypedPerFilterConfig);
        Assert.Empty(routes[5].Route_.RequestMirrorPolicies);
    }

    [Theory]
    [InlineData("port: 80", 0u)]
    [InlineData("port: 80, scheme: http", 0u)]
    [InlineData("port: 443, scheme: https", 0u)]
    [InlineData("port: 443", 443u)]
    [InlineData("port: 80, scheme: https", 80u)]
    [InlineData("port: 8443, scheme: https", 8443u)]
    public void Translate_RedirectToTheSchemesDefaultPort_SendsNoPortRedirect_AsIstiod(string fields, uint expected)
    {
        // istiod leaves :80 for http and :443 for https out; Envoy would otherwise write it into the Location.
        var routes = Routes(Translate(Features.Replace("port: 8443, scheme: https", fields, StringComparison.Ordinal)).Routes);

        Assert.Equal(expected, routes[2].Redirect.PortRedirect);
    }

    [Fact]
    public void Translate_RedirectPrefixRewrite_IsRedirectActionPrefixRewrite_AsIstiod()
    {
        var routes = Routes(Translate(Features.Replace("redirect: {uri: /new,", "redirect: {prefixRewrite: /new,", StringComparison.Ordinal)).Routes);

        var redirect = routes[2].Redirect;
        Assert.Equal(RedirectAction.PathRewriteSpecifierOneofCase.PrefixRewrite, redirect.PathRewriteSpecifierCase);
        Assert.Equal("/new", redirect.PrefixRewrite);
    }

    [Fact]
    public void Translate_StandardGrpcClients_GetAFaultAbortWhereTheRouteRedirectsOrAnswersDirectly()
    {
        var snapshot = Translate(Features);
        var full = Routes(snapshot.StandardClientRoutes);
        var grpc = Routes(snapshot.StandardGrpcRoutes);

        Assert.Equal(full.Count, grpc.Count);
        Assert.DoesNotContain(grpc, r => r.ActionCase is Route.ActionOneofCase.Redirect or Route.ActionOneofCase.DirectResponse);
        foreach (var (index, status) in new[] { (2, 307u), (3, 503u) })
        {
            // Same match and place, so the request never falls through to a later route.
            Assert.Equal(full[index].Match, grpc[index].Match);
            Assert.Equal(Cluster80, grpc[index].Route_.Cluster);
            var abort = grpc[index].TypedPerFilterConfig[XdsWire.FaultFilter].Unpack<HTTPFault>().Abort;
            Assert.Equal(status, abort.HttpStatus);
            Assert.Equal(PerMillion(1_000_000), abort.Percentage);

            // As a direct response in istiod, the stand-in route gets no default retries.
            Assert.Null(grpc[index].Route_.RetryPolicy);
        }

        Assert.Equal(full[0], grpc[0]);
        Assert.Equal(full[4], grpc[4]);
    }

    [Fact]
    public void Translate_NoRedirectOrDirectResponse_GrpcClientsShareTheRoutes()
    {
        var snapshot = Translate(Features[..Features.IndexOf("  - name: moved", StringComparison.Ordinal)]);

        Assert.Same(snapshot.StandardClientRoutes, snapshot.StandardGrpcRoutes);
    }

    [Fact]
    public void BuildListener_HasTheFaultFilterBeforeTheRouter()
    {
        var listener = XdsTranslator.BuildListener("orders:80", Cluster80);

        var manager = listener.ApiListener.ApiListener_.Unpack<HttpConnectionManager>();
        Assert.Equal([XdsWire.FaultFilter, XdsWire.RouterFilter], manager.HttpFilters.Select(f => f.Name).ToArray());
        Assert.Equal(XdsWire.HttpFaultType, manager.HttpFilters[0].TypedConfig.TypeUrl);
    }

    [Theory]
    [InlineData("mesh-dotnet", "grpc", false)]
    [InlineData("envoy", null, false)]
    [InlineData("gRPC Node Pure JS", null, true)]
    [InlineData("gRPC Go", "grpc", true)]
    [InlineData("", "grpc", true)]
    [InlineData("", null, false)]
    public void IsStandardGrpcClient_TellsClientsApartByNode(string userAgent, string? generator, bool expected)
    {
        var node = new Node { Id = "x", UserAgentName = userAgent, Metadata = new Struct() };
        if (generator is not null)
        {
            node.Metadata.Fields["GENERATOR"] = Value.ForString(generator);
        }

        Assert.Equal(expected, AdsNode.IsStandardGrpcClient(node));
    }
}
