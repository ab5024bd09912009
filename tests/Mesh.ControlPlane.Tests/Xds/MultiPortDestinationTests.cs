using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Route.V3;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>A route or mirror destination without <c>port</c> on a multi-port service: the request's port, as istiod.</summary>
public sealed class MultiPortDestinationTests
{
    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
          workloadSelector: {labels: {app: orders}}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders-next}
        spec:
          hosts: [orders-next]
          ports: [{number: 80, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}, {number: 9091, name: admin, protocol: HTTP}]
          workloadSelector: {labels: {app: orders-next}}
        ---
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: payments}
        spec:
          hosts: [payments]
          ports: [{number: 80, name: http, protocol: HTTP}, {number: 8443, name: https, protocol: HTTP}]
          workloadSelector: {labels: {app: payments}}
        """;

    private static string VirtualService(string destination, string match = "") => $"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {"{name: orders}"}
        spec:
          hosts: [orders]
          http:
          - {match}route:
            - destination: {destination}
            mirror: {destination}
        """;

    private static YamlLoadResult Load(string virtualService) => YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);

    private static Route Route(XdsSnapshot snapshot, uint port) =>
        Assert.Single(Assert.Single(snapshot.Routes[$"outbound|{port}||orders.default.svc.cluster.local"].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes);

    [Fact]
    public void Load_DestinationWithoutPortOnAMultiPortService_TakesTheRequestsPort_AsIstiod()
    {
        var result = Load(VirtualService("{host: orders-next}"));

        Assert.Empty(result.Errors);
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        Assert.Equal("outbound|80||orders-next.default.svc.cluster.local", Route(snapshot, 80).Route_.Cluster);
        Assert.Equal("outbound|9090||orders-next.default.svc.cluster.local", Route(snapshot, 9090).Route_.Cluster);
        Assert.Equal("outbound|9090||orders-next.default.svc.cluster.local", Assert.Single(Route(snapshot, 9090).Route_.RequestMirrorPolicies).Cluster);
    }

    [Fact]
    public void Load_DestinationWithoutAPortTheHostIsCalledOn_IsAnErrorNamingThePort()
    {
        var result = Load(VirtualService("{host: payments}"));

        // orders is called on 80 and 9090; payments has no 9090, so istiod would route there to a cluster that does not exist.
        var errors = result.Errors.Where(e => !e.IsWarning).ToArray();
        Assert.Equal(2, errors.Length); // the route destination and the mirror
        Assert.All(errors, e => Assert.Equal("vs.yaml", e.File));
        Assert.Contains("spec.http[0].route[0].destination: port.number is required: payments.default.svc.cluster.local has several ports (80, 8443), so a request takes its own port there, and orders.default.svc.cluster.local:9090 is not one of them", errors[0].Message, StringComparison.Ordinal);
        Assert.Contains("spec.http[0].mirror: port.number is required", errors[1].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_RouteMatchingOnlyAPortTheDestinationHas_IsAccepted()
    {
        var result = Load(VirtualService("{host: payments}", match: "match: [{port: 80}]\n    "));

        Assert.Empty(result.Errors);
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        Assert.Equal("outbound|80||payments.default.svc.cluster.local", Route(snapshot, 80).Route_.Cluster);
    }
}
