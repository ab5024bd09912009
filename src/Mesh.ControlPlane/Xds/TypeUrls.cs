using Google.Protobuf.Reflection;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;

namespace Mesh.ControlPlane.Xds;

internal static class TypeUrls
{
    public const string Prefix = "type.googleapis.com/";

    public static readonly string Listener = Of(Mesh.Xds.Envoy.Config.Listener.V3.Listener.Descriptor);
    public static readonly string RouteConfiguration = Of(Mesh.Xds.Envoy.Config.Route.V3.RouteConfiguration.Descriptor);
    public static readonly string Cluster = Of(Mesh.Xds.Envoy.Config.Cluster.V3.Cluster.Descriptor);
    public static readonly string ClusterLoadAssignment = Of(Mesh.Xds.Envoy.Config.Endpoint.V3.ClusterLoadAssignment.Descriptor);

    /// <summary>Make-before-break push order: CDS → EDS → LDS → RDS.</summary>
    public static readonly string[] PushOrder = [Cluster, ClusterLoadAssignment, Listener, RouteConfiguration];

    public static string Of(MessageDescriptor descriptor) => Prefix + descriptor.FullName;

    public static bool IsKnown(string typeUrl) => PushOrder.Contains(typeUrl, StringComparer.Ordinal);

    /// <summary>LDS and CDS responses must list every subscribed resource (SotW).</summary>
    public static bool RequiresFullSet(string typeUrl) => typeUrl == Listener || typeUrl == Cluster;
}
