using Mesh.Xds.Wire;

namespace Mesh.ControlPlane.Xds;

/// <summary>The resource types the ADS server serves (spelled once, in <see cref="XdsWire"/>) and their push order.</summary>
internal static class TypeUrls
{
    public const string Prefix = XdsWire.TypeUrlPrefix;

    public const string Listener = XdsWire.ListenerType;
    public const string RouteConfiguration = XdsWire.RouteConfigurationType;
    public const string Cluster = XdsWire.ClusterType;
    public const string ClusterLoadAssignment = XdsWire.ClusterLoadAssignmentType;

    /// <summary>Make-before-break push order: CDS → EDS → LDS → RDS.</summary>
    public static readonly string[] PushOrder = [Cluster, ClusterLoadAssignment, Listener, RouteConfiguration];

    public static bool IsKnown(string typeUrl) => PushOrder.Contains(typeUrl, StringComparer.Ordinal);

    /// <summary>LDS and CDS responses must list every subscribed resource (SotW).</summary>
    public static bool RequiresFullSet(string typeUrl) => typeUrl == Listener || typeUrl == Cluster;
}
