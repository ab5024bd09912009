using System.Collections.Immutable;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Security;

namespace Mesh.Client.Discovery;

/// <summary>A CDS cluster with its EDS endpoints and the balancer built for them.</summary>
internal sealed class MeshCluster
{
    public MeshCluster(
        string name,
        string serviceHost,
        LoadBalancingPolicy policy,
        ImmutableArray<MeshEndpoint> endpoints,
        OutlierDetectionSettings? outlierDetection = null,
        Func<int, int>? random = null,
        UpstreamTlsSettings? tls = null,
        RingHashSettings? ringHash = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(serviceHost);
        Name = name;
        ServiceHost = serviceHost;
        Policy = policy;
        Endpoints = endpoints.IsDefault ? [] : endpoints;
        OutlierDetection = outlierDetection ?? OutlierDetectionSettings.Default;
        Balancer = LoadBalancerFactory.Create(policy, Endpoints, random, ringHash);
        Tls = tls;
    }

    /// <summary>Gets the mTLS settings (expected server identities) from the cluster's transport socket; null means plaintext.</summary>
    public UpstreamTlsSettings? Tls { get; }

    /// <summary>Gets the xDS cluster name, <c>outbound|port||fqdn</c>.</summary>
    public string Name { get; }

    /// <summary>Gets the logical service host this cluster serves; exceptions and telemetry name it.</summary>
    public string ServiceHost { get; }

    public LoadBalancingPolicy Policy { get; }

    public ImmutableArray<MeshEndpoint> Endpoints { get; }

    public OutlierDetectionSettings OutlierDetection { get; }

    public ILoadBalancer Balancer { get; }

    public override string ToString() => Name;
}
