using System.Collections.Immutable;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Security;

namespace Mesh.Client.Discovery;

/// <summary>A CDS cluster with its EDS endpoints and the balancer built for them.</summary>
internal sealed class MeshCluster
{
    private int _panicNext = -1;

    public MeshCluster(
        string name,
        string serviceHost,
        LoadBalancingPolicy policy,
        ImmutableArray<MeshEndpoint> endpoints,
        OutlierDetectionSettings? outlierDetection = null,
        Func<int, int>? random = null,
        UpstreamTlsSettings? tls = null,
        ClusterLimits? limits = null,
        ClusterTraffic? traffic = null,
        RingHashSettings? ringHash = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(serviceHost);
        Name = name;
        ServiceHost = serviceHost;
        Policy = policy;
        Endpoints = endpoints.IsDefault ? [] : endpoints;
        Outlier = new OutlierDetector(outlierDetection ?? OutlierDetectionSettings.Default, Endpoints);
        Limits = limits ?? ClusterLimits.Default;
        Traffic = traffic ?? new ClusterTraffic();
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

    public OutlierDetectionSettings OutlierDetection => Outlier.Settings;

    /// <summary>Gets the cluster's outlier detection: ejections, the sweep and the panic threshold.</summary>
    public OutlierDetector Outlier { get; }

    public ClusterLimits Limits { get; }

    /// <summary>Gets the requests and retries in flight, carried across snapshots for the same cluster name.</summary>
    public ClusterTraffic Traffic { get; }

    public ILoadBalancer Balancer { get; }

    /// <summary>
    /// Picks an endpoint for one attempt: runs the outlier sweep when due; below the panic threshold balances over every
    /// endpoint whatever its health (Envoy's panic mode); otherwise asks the balancer. With panic mode off (threshold 0)
    /// a cluster with no endpoint in rotation yields null, as Envoy answers "no healthy upstream".
    /// </summary>
    public MeshEndpoint? PickEndpoint(long now, long timestampFrequency, MeshEndpoint? avoid)
    {
        Outlier.Sweep(now, timestampFrequency);
        if (Outlier.IsPanicking)
        {
            return PanicPick(avoid);
        }

        var endpoint = Balancer.Pick(now, avoid);
        return endpoint is null || endpoint.IsAvailable(now) || Outlier.Settings.PanicThresholdPercent > 0 ? endpoint : null;
    }

    /// <summary>
    /// Like <see cref="PickEndpoint(long, long, MeshEndpoint?)"/> for a request whose route hashed it (RDS <c>hash_policy</c>):
    /// a consistent-hash balancer picks by <paramref name="hash"/>, the others ignore it.
    /// </summary>
    public MeshEndpoint? PickEndpoint(long now, long timestampFrequency, MeshEndpoint? avoid, ulong hash)
    {
        Outlier.Sweep(now, timestampFrequency);
        if (Outlier.IsPanicking)
        {
            return PanicPick(avoid);
        }

        var endpoint = Balancer.Pick(now, avoid, hash);
        return endpoint is null || endpoint.IsAvailable(now) || Outlier.Settings.PanicThresholdPercent > 0 ? endpoint : null;
    }

    private MeshEndpoint? PanicPick(MeshEndpoint? avoid)
    {
        var endpoints = Endpoints;
        if (endpoints.Length == 0)
        {
            return null;
        }

        var start = (int)((uint)Interlocked.Increment(ref _panicNext) % (uint)endpoints.Length);
        var candidate = endpoints[start];
        return ReferenceEquals(candidate, avoid) && endpoints.Length > 1 ? endpoints[(start + 1) % endpoints.Length] : candidate;
    }

    public override string ToString() => Name;
}
