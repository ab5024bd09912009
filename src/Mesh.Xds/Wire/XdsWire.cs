namespace Mesh.Xds.Wire;

/// <summary>
/// The xDS names both sides must spell alike: resource and typed-config type URLs, Istio's proxyless listener names,
/// well-known filter, transport-socket and load-balancing-policy names. Constants (usable in switch labels); a test
/// holds the type URLs to the descriptors of the generated messages.
/// </summary>
internal static class XdsWire
{
    public const string TypeUrlPrefix = "type.googleapis.com/";

    public const string ListenerType = TypeUrlPrefix + "envoy.config.listener.v3.Listener";
    public const string RouteConfigurationType = TypeUrlPrefix + "envoy.config.route.v3.RouteConfiguration";
    public const string ClusterType = TypeUrlPrefix + "envoy.config.cluster.v3.Cluster";
    public const string ClusterLoadAssignmentType = TypeUrlPrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment";

    public const string HttpConnectionManagerType = TypeUrlPrefix + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
    public const string RouterType = TypeUrlPrefix + "envoy.extensions.filters.http.router.v3.Router";
    public const string HttpFaultType = TypeUrlPrefix + "envoy.extensions.filters.http.fault.v3.HTTPFault";
    public const string FilterConfigType = TypeUrlPrefix + "envoy.config.route.v3.FilterConfig";
    public const string RoundRobinType = TypeUrlPrefix + "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin";
    public const string LeastRequestType = TypeUrlPrefix + "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest";
    public const string RandomType = TypeUrlPrefix + "envoy.extensions.load_balancing_policies.random.v3.Random";
    public const string UpstreamTlsContextType = TypeUrlPrefix + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

    /// <summary>The key of a cluster's <c>typed_extension_protocol_options</c> that carries its HTTP protocol options.</summary>
    public const string HttpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
    public const string HttpProtocolOptionsType = TypeUrlPrefix + HttpProtocolOptionsName;

    /// <summary>Server-side (gRFC A36) listener names are this prefix plus <c>&lt;ip&gt;:&lt;port&gt;</c> (Istio's proxyless convention).</summary>
    public const string InboundListenerPrefix = "xds.istio.io/grpc/lds/inbound/";

    /// <summary>
    /// The <c>&lt;ip&gt;:&lt;port&gt;</c> of a server-side listener name, an IPv6 address in brackets (<c>[fd00::1]:8080</c>):
    /// the one spelling the control plane names a listener by and a workload asks for it by.
    /// </summary>
    public static string InboundAuthority(string address, uint port)
    {
        ArgumentNullException.ThrowIfNull(address);
        // Only an address with a colon can be IPv6 (parsing every address of a large mesh costs more than the name).
        var host = address.Contains(':', StringComparison.Ordinal)
            && System.Net.IPAddress.TryParse(address, out var ip)
            && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6
            ? $"[{address}]"
            : address;
        return host + ":" + port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    public const string HttpConnectionManagerFilter = "envoy.filters.network.http_connection_manager";
    public const string RouterFilter = "envoy.filters.http.router";
    public const string RbacFilter = "envoy.filters.http.rbac";
    public const string FaultFilter = "envoy.filters.http.fault";
    public const string TlsTransportSocket = "envoy.transport_sockets.tls";
    public const string RoundRobinPolicy = "envoy.load_balancing_policies.round_robin";
    public const string LeastRequestPolicy = "envoy.load_balancing_policies.least_request";
    public const string RandomPolicy = "envoy.load_balancing_policies.random";
}
