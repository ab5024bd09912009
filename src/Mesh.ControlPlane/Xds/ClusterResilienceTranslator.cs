using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
using UpstreamHttpProtocolOptions = Mesh.Xds.Envoy.Extensions.Upstreams.Http.V3.HttpProtocolOptions;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Writes a DestinationRule's <c>connectionPool</c>, <c>outlierDetection</c> and <c>retryBudget</c> into a cluster the
/// way istiod does (<c>cluster_traffic_policy.go</c>): <c>circuit_breakers.thresholds[0]</c> with 2^32−1 for every
/// limit left unset, <c>connect_timeout</c>, the HTTP protocol options, <c>outlier_detection</c> with success-rate
/// ejection off, and <c>minHealthPercent</c> as the panic threshold.
/// </summary>
internal static class ClusterResilienceTranslator
{
    public static Cluster Apply(Cluster cluster, ResiliencePolicyModel policy)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(policy);
        if (policy.ConnectionPool is not null || policy.RetryBudget is not null)
        {
            ApplyThresholds(cluster, policy.ConnectionPool, policy.RetryBudget);
        }

        if (policy.ConnectionPool is { } pool)
        {
            ApplyConnectionOptions(cluster, pool);
        }

        if (policy.OutlierDetection is { } outlier)
        {
            ApplyOutlierDetection(cluster, outlier);
        }

        return cluster;
    }

    private static void ApplyThresholds(Cluster cluster, ConnectionPoolModel? pool, RetryBudgetModel? budget)
    {
        var thresholds = new CircuitBreakers.Types.Thresholds
        {
            Priority = RoutingPriority.Default,
            MaxConnections = pool?.MaxConnections ?? uint.MaxValue,
            MaxPendingRequests = pool?.Http1MaxPendingRequests ?? uint.MaxValue,
            MaxRequests = pool?.Http2MaxRequests ?? uint.MaxValue,
            MaxRetries = pool?.MaxRetries ?? uint.MaxValue,
        };
        if (budget is not null)
        {
            thresholds.RetryBudget = new CircuitBreakers.Types.Thresholds.Types.RetryBudget
            {
                BudgetPercent = new Percent { Value = budget.Percent ?? 20 },
                MinRetryConcurrency = budget.MinRetryConcurrency ?? 3,
            };
        }

        cluster.CircuitBreakers = new CircuitBreakers { Thresholds = { thresholds } };
    }

    private static void ApplyConnectionOptions(Cluster cluster, ConnectionPoolModel pool)
    {
        if (pool.ConnectTimeout is { } connect)
        {
            cluster.ConnectTimeout = Duration.FromTimeSpan(connect);
        }

        if (pool.IdleTimeout is null && pool.MaxConnectionDuration is null && pool.MaxRequestsPerConnection is null)
        {
            return;
        }

        var common = new HttpProtocolOptions();
        if (pool.IdleTimeout is { } idle)
        {
            common.IdleTimeout = Duration.FromTimeSpan(idle);
        }

        if (pool.MaxConnectionDuration is { } lifetime)
        {
            common.MaxConnectionDuration = Duration.FromTimeSpan(lifetime);
        }

        if (pool.MaxRequestsPerConnection is { } perConnection)
        {
            common.MaxRequestsPerConnection = perConnection;
        }

        cluster.TypedExtensionProtocolOptions[XdsWire.HttpProtocolOptionsName] = Any.Pack(new UpstreamHttpProtocolOptions
        {
            CommonHttpProtocolOptions = common,
            UseDownstreamProtocolConfig = new UpstreamHttpProtocolOptions.Types.UseDownstreamHttpConfig(),
        });
    }

    private static void ApplyOutlierDetection(Cluster cluster, OutlierDetectionModel outlier)
    {
        // istiod: success-rate ejection off; a consecutive threshold of 0 turns its detector off (enforcing 0).
        var od = new OutlierDetection { EnforcingSuccessRate = 0 };
        if (outlier.Consecutive5xxErrors is { } fiveXx)
        {
            od.Consecutive5Xx = fiveXx;
            od.EnforcingConsecutive5Xx = fiveXx > 0 ? 100u : 0u;
        }

        if (outlier.ConsecutiveGatewayErrors is { } gateway)
        {
            od.ConsecutiveGatewayFailure = gateway;
            od.EnforcingConsecutiveGatewayFailure = gateway > 0 ? 100u : 0u;
        }

        if (outlier.Interval is { } interval)
        {
            od.Interval = Duration.FromTimeSpan(interval);
        }

        if (outlier.BaseEjectionTime is { } baseTime)
        {
            od.BaseEjectionTime = Duration.FromTimeSpan(baseTime);
        }

        if (outlier.MaxEjectionPercent > 0)
        {
            od.MaxEjectionPercent = (uint)outlier.MaxEjectionPercent;
        }

        cluster.OutlierDetection = od;

        // istiod always sets the panic threshold with outlier detection, so 0 (the default) turns panic mode off.
        cluster.CommonLbConfig = new Cluster.Types.CommonLbConfig { HealthyPanicThreshold = new Percent { Value = outlier.MinHealthPercent } };
    }
}
