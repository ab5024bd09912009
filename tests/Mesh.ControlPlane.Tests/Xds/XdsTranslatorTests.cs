using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.LeastRequest.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.RoundRobin.V3;
using static Mesh.ControlPlane.Tests.TestModels;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

public class XdsTranslatorTests
{
    private static readonly Dictionary<string, string> OrdersLabels = new() { ["app"] = "orders" };

    [Fact]
    public void Translate_ServiceEntry_EmitsEdsClusterWithAdsAndRoundRobin()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service()]), 7);

        var cluster = snapshot.Clusters[Cluster80].Resource.Unpack<Cluster>();
        Assert.Equal(Cluster80, cluster.Name);
        Assert.Equal(Cluster.Types.DiscoveryType.Eds, cluster.Type);
        Assert.NotNull(cluster.EdsClusterConfig.EdsConfig.Ads);
        Assert.Equal(Cluster80, cluster.EdsClusterConfig.ServiceName);
        Assert.Equal(TimeSpan.FromSeconds(5), cluster.ConnectTimeout.ToTimeSpan());
        Assert.Equal(Cluster.Types.LbPolicy.RoundRobin, cluster.LbPolicy);
        Assert.Null(cluster.LoadBalancingPolicy);
        Assert.Equal("7", snapshot.VersionInfo);
        Assert.Equal(TypeUrls.Cluster, snapshot.Clusters[Cluster80].Resource.TypeUrl);
    }

    [Fact]
    public void Translate_LeastRequestRule_EmitsLoadBalancingPolicyWithRoundRobinFallback()
    {
        var rule = new DestinationRuleModel("default", "orders", "orders.default.svc.cluster.local", LoadBalancerKind.LeastRequest);
        var snapshot = XdsTranslator.Translate(Snapshot([Service()], rules: [rule]), 1);

        var cluster = snapshot.Clusters[Cluster80].Resource.Unpack<Cluster>();
        Assert.Equal(Cluster.Types.LbPolicy.RoundRobin, cluster.LbPolicy);
        var policies = cluster.LoadBalancingPolicy.Policies;
        Assert.Equal(2, policies.Count);
        Assert.Equal("envoy.load_balancing_policies.least_request", policies[0].TypedExtensionConfig.Name);
        Assert.Equal(2u, policies[0].TypedExtensionConfig.TypedConfig.Unpack<LeastRequest>().ChoiceCount);
        Assert.Equal("envoy.load_balancing_policies.round_robin", policies[1].TypedExtensionConfig.Name);
        Assert.True(policies[1].TypedExtensionConfig.TypedConfig.Is(RoundRobin.Descriptor));
    }

    [Fact]
    public void Translate_StaticAndSelectedWorkloads_GroupsByLocalityWithWeights()
    {
        var service = Service(selector: OrdersLabels, ns: "default");
        var workloads = new[]
        {
            Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }, locality: "eu/west-1/a", weight: 3),
            Workload("10.0.0.2", new Dictionary<string, uint> { ["http"] = 5002 }),
            Workload("10.0.0.3", new Dictionary<string, uint> { ["http"] = 5003 }, labels: new Dictionary<string, string> { ["app"] = "other" }),
            Workload("10.0.0.4", new Dictionary<string, uint> { ["http"] = 5004 }, ns: "shop"),
        };
        var snapshot = XdsTranslator.Translate(Snapshot([service], workloads), 1);

        var cla = snapshot.Endpoints[Cluster80].Resource.Unpack<ClusterLoadAssignment>();
        Assert.Equal(Cluster80, cla.ClusterName);
        Assert.Equal(2, cla.Endpoints.Count);
        var unset = cla.Endpoints[0];
        Assert.Equal(new Locality(), unset.Locality);
        Assert.Equal(1u, unset.LoadBalancingWeight);
        Assert.Equal(0u, unset.Priority);
        var endpoint = Assert.Single(unset.LbEndpoints);
        Assert.Equal("10.0.0.2", endpoint.Endpoint.Address.SocketAddress.Address);
        Assert.Equal(5002u, endpoint.Endpoint.Address.SocketAddress.PortValue);
        Assert.Equal(HealthStatus.Healthy, endpoint.HealthStatus);
        Assert.Equal(1u, endpoint.LoadBalancingWeight);

        var zoned = cla.Endpoints[1];
        Assert.Equal(new Locality { Region = "eu", Zone = "west-1", SubZone = "a" }, zoned.Locality);
        Assert.Equal(3u, zoned.LoadBalancingWeight); // istiod: the sum of its endpoints' weights
        Assert.Equal(3u, Assert.Single(zoned.LbEndpoints).LoadBalancingWeight);
    }

    [Fact]
    public void Translate_SameAddressAndPortTwice_EmitsOneEndpoint()
    {
        var service = Service(selector: OrdersLabels, endpoints: [Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 })]);
        var registered = Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }, source: EndpointSources.Registration);
        var snapshot = XdsTranslator.Translate(Snapshot([service], registrations: [registered]), 1);

        var cla = snapshot.Endpoints[Cluster80].Resource.Unpack<ClusterLoadAssignment>();
        Assert.Single(Assert.Single(cla.Endpoints).LbEndpoints);
    }

    [Theory]
    [InlineData(new[] { "http" }, new uint[] { 9001 }, null, 9001u)]
    [InlineData(new[] { "admin" }, new uint[] { 9002 }, null, 9002u)]
    [InlineData(new[] { "admin", "metrics" }, new uint[] { 9003, 9004 }, 8080u, 8080u)]
    [InlineData(new[] { "admin", "metrics" }, new uint[] { 9003, 9004 }, null, 80u)]
    [InlineData(new string[0], new uint[0], null, 80u)]
    public void EndpointPort_Rules_PickNamedThenSingleThenTargetThenNumber(string[] names, uint[] ports, uint? targetPort, uint expected)
    {
        var workload = Workload("10.0.0.1", names.Zip(ports).ToDictionary(p => p.First, p => p.Second));
        Assert.Equal(expected, XdsTranslator.EndpointPort(new ServicePort(80, "http", "HTTP", targetPort), workload));
    }

    [Fact]
    public void Translate_KubernetesHost_RouteDomainsCoverEveryAlias()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(host: "orders.shop.svc.cluster.local", ns: "shop")]), 1);

        var route = snapshot.Routes["outbound|80||orders.shop.svc.cluster.local"].Resource.Unpack<RouteConfiguration>();
        var host = Assert.Single(route.VirtualHosts);
        Assert.Equal("orders.shop.svc.cluster.local:80", host.Name);
        Assert.Equal(
            ["orders", "orders:80", "orders.shop", "orders.shop:80", "orders.shop.svc", "orders.shop.svc:80", "orders.shop.svc.cluster.local", "orders.shop.svc.cluster.local:80"],
            host.Domains);
        var r = Assert.Single(host.Routes);
        Assert.Equal(string.Empty, r.Match.Prefix);
        Assert.Equal(RouteMatch.PathSpecifierOneofCase.Prefix, r.Match.PathSpecifierCase);
        Assert.Equal("outbound|80||orders.shop.svc.cluster.local", r.Route_.Cluster);
    }

    [Fact]
    public void Translate_ExternalHost_RouteDomainsAreHostAndHostPort()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(host: "api.example.com", ports: [new ServicePort(443, "https", "HTTPS", null)])]), 1);

        var route = snapshot.Routes["outbound|443||api.example.com"].Resource.Unpack<RouteConfiguration>();
        Assert.Equal(["api.example.com", "api.example.com:443"], Assert.Single(route.VirtualHosts).Domains);
    }

    [Fact]
    public void Listener_RequestedName_KeepsNameAndPointsAtRds()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service()]), 1);
        var target = snapshot.ResolveListener("orders", "default");
        Assert.NotNull(target);

        var resource = snapshot.Listener("orders", target);
        var listener = resource.Resource.Unpack<Listener>();
        Assert.Equal("orders", listener.Name);
        var hcm = listener.ApiListener.ApiListener_.Unpack<HttpConnectionManager>();
        Assert.NotNull(hcm.Rds.ConfigSource.Ads);
        Assert.Equal(Cluster80, hcm.Rds.RouteConfigName);
        Assert.Equal(2, hcm.HttpFilters.Count);
        var filter = hcm.HttpFilters[^1];
        Assert.Equal("envoy.filters.http.router", filter.Name);
        Assert.True(filter.TypedConfig.Is(Router.Descriptor));
    }

    [Theory]
    [InlineData("orders", "default", "orders.default.svc.cluster.local")]
    [InlineData("orders:80", "default", "orders.default.svc.cluster.local")]
    [InlineData("orders.default", "shop", "orders.default.svc.cluster.local")]
    [InlineData("orders.default.svc:80", "shop", "orders.default.svc.cluster.local")]
    [InlineData("orders.default.svc.cluster.local:80", "shop", "orders.default.svc.cluster.local")]
    [InlineData("orders", "shop", "orders.shop.svc.cluster.local")]
    [InlineData("orders:81", "default", null)]
    [InlineData("payments", "default", null)]
    public void ResolveListener_Aliases_ResolveAgainstClientNamespace(string name, string clientNamespace, string? expectedHost)
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(), Service(host: "orders.shop.svc.cluster.local", ns: "shop")]), 1);

        Assert.Equal(expectedHost, snapshot.ResolveListener(name, clientNamespace)?.Host);
    }

    [Fact]
    public void ResolveListener_NoPortOnMultiPortService_Port80ElseTheLowestAsTheMeshClientPicks()
    {
        var service = Service(ports: [new ServicePort(80, "http", "HTTP", null), new ServicePort(9090, "grpc", "GRPC", null)]);
        var snapshot = XdsTranslator.Translate(Snapshot([service]), 1);

        Assert.Equal(80u, snapshot.ResolveListener("orders", "default")?.Port.Number);
        Assert.Equal(9090u, snapshot.ResolveListener("orders:9090", "default")?.Port.Number);
        var without80 = XdsTranslator.Translate(Snapshot([Service(ports: [new ServicePort(9091, "b", "GRPC", null), new ServicePort(9090, "a", "GRPC", null)])]), 1);
        Assert.Equal(9090u, without80.ResolveListener("orders", "default")?.Port.Number);
        Assert.Equal(["orders.default.svc.cluster.local:80", "orders.default.svc.cluster.local:9090"], snapshot.ListenerTargets.Keys.Order(StringComparer.Ordinal));
    }
}
