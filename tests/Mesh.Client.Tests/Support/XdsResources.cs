using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.Client.Tests.Support;

/// <summary>Builds Istio-shaped xDS resources for a service <c>name.default.svc.cluster.local:port</c>.</summary>
internal static class XdsResources
{
    public static string Fqdn(string name) => $"{name}.default.svc.cluster.local";

    public static string ClusterName(string name, int port = 80) => $"outbound|{port}||{Fqdn(name)}";

    public static Listener Listener(string name, int port = 80)
    {
        var hcm = new HttpConnectionManager
        {
            Rds = new Rds { ConfigSource = new ConfigSource { Ads = new AggregatedConfigSource() }, RouteConfigName = ClusterName(name, port) },
        };
        hcm.HttpFilters.Add(new HttpFilter { Name = "envoy.filters.http.router", TypedConfig = Any.Pack(new Router()) });
        return new Listener { Name = $"{Fqdn(name)}:{port}", ApiListener = new ApiListener { ApiListener_ = Any.Pack(hcm) } };
    }

    public static RouteConfiguration Routes(string name, int port = 80, string? cluster = null)
    {
        var host = new VirtualHost { Name = $"{Fqdn(name)}:{port}" };
        host.Domains.Add([Fqdn(name), $"{Fqdn(name)}:{port}", name, $"{name}:{port}", $"{name}.default", $"{name}.default:{port}"]);
        host.Routes.Add(new Route { Match = new RouteMatch { Prefix = "/" }, Route_ = new RouteAction { Cluster = cluster ?? ClusterName(name, port) } });
        var routes = new RouteConfiguration { Name = ClusterName(name, port) };
        routes.VirtualHosts.Add(host);
        return routes;
    }

    public static Cluster Cluster(string name, int port = 80, Cluster.Types.LbPolicy policy = Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.LbPolicy.RoundRobin) => new()
    {
        Name = ClusterName(name, port),
        Type = Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Types.DiscoveryType.Eds,
        EdsClusterConfig = new Cluster.Types.EdsClusterConfig { EdsConfig = new ConfigSource { Ads = new AggregatedConfigSource() }, ServiceName = ClusterName(name, port) },
        LbPolicy = policy,
    };

    public static ClusterLoadAssignment Endpoints(string name, int port = 80, params (string Address, int Port, HealthStatus Health)[] endpoints)
    {
        var locality = new LocalityLbEndpoints { Locality = new Locality { Region = "r1" }, LoadBalancingWeight = 1 };
        foreach (var (address, endpointPort, health) in endpoints)
        {
            locality.LbEndpoints.Add(new LbEndpoint
            {
                Endpoint = new Endpoint { Address = new Address { SocketAddress = new SocketAddress { Address = address, PortValue = (uint)endpointPort } } },
                HealthStatus = health,
            });
        }

        var assignment = new ClusterLoadAssignment { ClusterName = ClusterName(name, port) };
        assignment.Endpoints.Add(locality);
        return assignment;
    }

    public static DiscoveryResponse Response(string typeUrl, string version, string nonce, params IMessage[] resources)
    {
        var response = new DiscoveryResponse { TypeUrl = typeUrl, VersionInfo = version, Nonce = nonce };
        response.Resources.Add(resources.Select(Any.Pack));
        return response;
    }

    public static DiscoveryResponse Lds(string version, params IMessage[] resources) => Response(XdsTypeUrls.Listener, version, "lds-" + version, resources);

    public static DiscoveryResponse Rds(string version, params IMessage[] resources) => Response(XdsTypeUrls.RouteConfiguration, version, "rds-" + version, resources);

    public static DiscoveryResponse Cds(string version, params IMessage[] resources) => Response(XdsTypeUrls.Cluster, version, "cds-" + version, resources);

    public static DiscoveryResponse Eds(string version, params IMessage[] resources) => Response(XdsTypeUrls.ClusterLoadAssignment, version, "eds-" + version, resources);
}
