using Mesh.Xds.Wire;

namespace Mesh.Client.Xds;

/// <summary>The xDS v3 resource type URLs the client subscribes to, and the typed configs it understands (spelled once, in <see cref="XdsWire"/>).</summary>
internal static class XdsTypeUrls
{
    public const string Listener = XdsWire.ListenerType;
    public const string RouteConfiguration = XdsWire.RouteConfigurationType;
    public const string Cluster = XdsWire.ClusterType;
    public const string ClusterLoadAssignment = XdsWire.ClusterLoadAssignmentType;

    public const string HttpConnectionManager = XdsWire.HttpConnectionManagerType;
    public const string Router = XdsWire.RouterType;
    public const string RoundRobinPolicy = XdsWire.RoundRobinType;
    public const string UpstreamTlsContext = XdsWire.UpstreamTlsContextType;
    public const string LeastRequestPolicy = XdsWire.LeastRequestType;
    public const string RandomPolicy = XdsWire.RandomType;

    /// <summary>Gets the short kind used in NACK messages, e.g. <c>Cluster</c>.</summary>
    public static string KindOf(string typeUrl) => typeUrl[(typeUrl.LastIndexOf('.') + 1)..];
}
