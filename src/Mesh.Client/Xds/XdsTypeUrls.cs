namespace Mesh.Client.Xds;

/// <summary>The xDS v3 resource type URLs the client subscribes to, and the typed configs it understands.</summary>
internal static class XdsTypeUrls
{
    public const string Listener = "type.googleapis.com/envoy.config.listener.v3.Listener";
    public const string RouteConfiguration = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    public const string Cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    public const string ClusterLoadAssignment = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

    public const string HttpConnectionManager = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    public const string Router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
    public const string RoundRobinPolicy = "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
    public const string UpstreamTlsContext = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
    public const string LeastRequestPolicy = "type.googleapis.com/envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";

    /// <summary>Gets the short kind used in NACK messages, e.g. <c>Cluster</c>.</summary>
    public static string KindOf(string typeUrl) => typeUrl[(typeUrl.LastIndexOf('.') + 1)..];
}
