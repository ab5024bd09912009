using System.Collections.Immutable;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Xds.Envoy.Config.Route.V3;

namespace Mesh.Client.Xds;

/// <summary>A validated LDS listener: <c>host:port</c> and where its routes come from (RDS name or inline).</summary>
internal sealed record ListenerResource(string Name, string Host, int Port, string? RouteConfigName, RouteConfiguration? InlineRoutes);

/// <summary>A validated CDS cluster; <see cref="EdsServiceName"/> is null for a STATIC cluster with <see cref="StaticEndpoints"/>.</summary>
internal sealed record ClusterResource(
    string Name,
    string? EdsServiceName,
    LoadBalancingPolicy Policy,
    OutlierDetectionSettings? OutlierDetection,
    EndpointsResource? StaticEndpoints,
    UpstreamTlsSettings? Tls = null,
    ClusterLimits? Limits = null,
    LoadBalancing.RingHashSettings? RingHash = null);

/// <summary>A validated EDS assignment: the usable endpoints (localities without weight already left out).</summary>
internal sealed record EndpointsResource(string Name, ImmutableArray<EndpointSpec> Endpoints);

internal readonly record struct EndpointSpec(string Address, int Port, int Weight, bool IsHealthy, string Locality, int Priority = 0, int LocalityWeight = 1, Discovery.EndpointWorkload? Workload = null);
