using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>
/// DestinationRule <c>trafficPolicy.connectionPool</c> as written; null members are unset (Istio reads 0 as unset
/// too, so 0 never reaches this model).
/// </summary>
internal sealed record ConnectionPoolModel
{
    public uint? MaxConnections { get; init; }

    public TimeSpan? ConnectTimeout { get; init; }

    public TimeSpan? MaxConnectionDuration { get; init; }

    /// <summary>Gets <c>http.idleTimeout</c>, else <c>tcp.idleTimeout</c> (istiod's order).</summary>
    public TimeSpan? IdleTimeout { get; init; }

    public uint? Http1MaxPendingRequests { get; init; }

    public uint? Http2MaxRequests { get; init; }

    public uint? MaxRequestsPerConnection { get; init; }

    public uint? MaxRetries { get; init; }
}

/// <summary>DestinationRule <c>trafficPolicy.outlierDetection</c> as written; null members are unset.</summary>
internal sealed record OutlierDetectionModel
{
    public uint? Consecutive5xxErrors { get; init; }

    public uint? ConsecutiveGatewayErrors { get; init; }

    public TimeSpan? Interval { get; init; }

    public TimeSpan? BaseEjectionTime { get; init; }

    /// <summary>Gets <c>maxEjectionPercent</c>; 0 means unset (Envoy's 10 %), as in istiod.</summary>
    public int MaxEjectionPercent { get; init; }

    /// <summary>Gets <c>minHealthPercent</c>, sent as the panic threshold; 0 (the default) disables panic mode.</summary>
    public int MinHealthPercent { get; init; }
}

/// <summary>DestinationRule <c>trafficPolicy.retryBudget</c>; null members take Envoy's defaults (20 %, 3).</summary>
internal sealed record RetryBudgetModel(double? Percent, uint? MinRetryConcurrency);

/// <summary>The resilience blocks of one traffic policy (top level, subset, or a port-level entry).</summary>
internal sealed record ResiliencePolicyModel(ConnectionPoolModel? ConnectionPool, OutlierDetectionModel? OutlierDetection, RetryBudgetModel? RetryBudget)
{
    public static readonly ResiliencePolicyModel None = new(null, null, null);
}

/// <summary>
/// One <c>portLevelSettings[]</c> entry: for its port it replaces the load balancer, connection pool and outlier
/// detection whole, unset ones included (Istio: port-level settings do not inherit).
/// </summary>
internal sealed record PortTrafficPolicyModel(uint Port, LoadBalancerKind? LoadBalancer, ConnectionPoolModel? ConnectionPool, OutlierDetectionModel? OutlierDetection);

/// <summary>What a DestinationRule or subset traffic policy sets besides TLS, for the translator to merge as istiod does.</summary>
internal sealed record TrafficPolicyModel(
    LoadBalancerKind? LoadBalancer,
    ResiliencePolicyModel Resilience,
    ImmutableArray<PortTrafficPolicyModel> PortLevelSettings)
{
    public static readonly TrafficPolicyModel None = new(null, ResiliencePolicyModel.None, []);

    /// <summary>
    /// The policy for <paramref name="port"/> of a subset cluster (or the host's, when <paramref name="subset"/> is
    /// null), merged as istiod's <c>MergeTrafficPolicy</c>: a matching top-level port entry replaces the load balancer,
    /// pool and outlier blocks and drops the retry budget; a subset's blocks replace the result's when set; a
    /// matching subset port entry replaces the three blocks again, unset ones included.
    /// </summary>
    public static (LoadBalancerKind? LoadBalancer, ResiliencePolicyModel Resilience) Merge(TrafficPolicyModel top, TrafficPolicyModel? subset, uint port)
    {
        ArgumentNullException.ThrowIfNull(top);
        var (lb, resilience) = ForPort(top, port);
        if (subset is null)
        {
            return (lb, resilience);
        }

        lb = subset.LoadBalancer ?? lb;
        resilience = new ResiliencePolicyModel(
            subset.Resilience.ConnectionPool ?? resilience.ConnectionPool,
            subset.Resilience.OutlierDetection ?? resilience.OutlierDetection,
            subset.Resilience.RetryBudget ?? resilience.RetryBudget);
        if (subset.PortLevelSettings.FirstOrDefault(p => p.Port == port) is { } entry)
        {
            lb = entry.LoadBalancer;
            resilience = resilience with { ConnectionPool = entry.ConnectionPool, OutlierDetection = entry.OutlierDetection };
        }

        return (lb, resilience);
    }

    private static (LoadBalancerKind?, ResiliencePolicyModel) ForPort(TrafficPolicyModel policy, uint port)
    {
        var entry = policy.PortLevelSettings.FirstOrDefault(p => p.Port == port);
        return entry is null
            ? (policy.LoadBalancer, policy.Resilience)
            : (entry.LoadBalancer, new ResiliencePolicyModel(entry.ConnectionPool, entry.OutlierDetection, RetryBudget: null));
    }
}
