using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Wire;
using UpstreamHttpProtocolOptions = Mesh.Xds.Envoy.Extensions.Upstreams.Http.V3.HttpProtocolOptions;

namespace Mesh.Client.Xds;

/// <summary>
/// Decodes what a CDS cluster sets of its resilience: <c>outlier_detection</c>,
/// <c>common_lb_config.healthy_panic_threshold</c>, <c>circuit_breakers</c> (with <c>retry_budget</c>),
/// <c>connect_timeout</c> and the HTTP protocol options. A field this client would not apply is an error naming it
/// (the cluster is NACKed), never dropped.
/// </summary>
internal static class ClusterPolicyDecoder
{
    public static OutlierDetectionSettings? DecodeOutlierDetection(Cluster cluster, string where, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(errors);
        var panic = DecodePanicThreshold(cluster.CommonLbConfig, where, errors);
        if (cluster.OutlierDetection is not { } od)
        {
            return panic is { } onlyPanic ? OutlierDetectionSettings.Default with { PanicThresholdPercent = onlyPanic } : null;
        }

        const string path = "outlier_detection";
        var settings = OutlierDetectionSettings.EnvoyDefaults;
        var fiveXx = Enforced(od.Consecutive5Xx, od.EnforcingConsecutive5Xx, 5, 100, $"{path}.consecutive_5xx", $"{path}.enforcing_consecutive_5xx", where, errors);
        var gateway = Enforced(od.ConsecutiveGatewayFailure, od.EnforcingConsecutiveGatewayFailure, 5, 0, $"{path}.consecutive_gateway_failure", $"{path}.enforcing_consecutive_gateway_failure", where, errors);
        settings = settings with { Consecutive5xx = fiveXx, ConsecutiveGatewayFailure = gateway };

        if (Positive(od.Interval, $"{path}.interval", where, errors) is { } interval)
        {
            settings = settings with { Interval = interval };
        }

        if (Positive(od.BaseEjectionTime, $"{path}.base_ejection_time", where, errors) is { } baseTime)
        {
            settings = settings with { BaseEjectionTime = baseTime };
        }

        if (Positive(od.MaxEjectionTime, $"{path}.max_ejection_time", where, errors) is { } maxTime)
        {
            settings = settings with { MaxEjectionTime = maxTime };
        }

        if (od.MaxEjectionPercent is { } percent)
        {
            if (percent > 100)
            {
                errors.Add($"{where}: {path}.max_ejection_percent {percent} must not exceed 100");
            }
            else
            {
                settings = settings with { MaxEjectionPercent = (int)percent };
            }
        }

        if (od.AlwaysEjectOneHost == true)
        {
            settings = settings with { AlwaysEjectOneHost = true };
        }

        // Success-rate and failure-percentage ejection are not implemented: a cluster may carry them only switched off
        // (Istio always sends enforcing_success_rate 0). Unset enforcing_success_rate is taken as off as well.
        if (od.EnforcingSuccessRate is > 0)
        {
            errors.Add($"{where}: {path}.enforcing_success_rate {od.EnforcingSuccessRate} is not supported (success-rate ejection is not implemented; send 0)");
        }

        if (od.EnforcingFailurePercentage is > 0)
        {
            errors.Add($"{where}: {path}.enforcing_failure_percentage {od.EnforcingFailurePercentage} is not supported (failure-percentage ejection is not implemented; send 0)");
        }

        if (od.EnforcingFailurePercentageLocalOrigin is > 0)
        {
            errors.Add($"{where}: {path}.enforcing_failure_percentage_local_origin is not supported (failure-percentage ejection is not implemented; send 0)");
        }

        if (od.SplitExternalLocalOriginErrors)
        {
            errors.Add($"{where}: {path}.split_external_local_origin_errors is not supported (local-origin failures count as 503/504, as Envoy does without the split)");
        }

        if (od.ConsecutiveLocalOriginFailure is not null || od.EnforcingConsecutiveLocalOriginFailure is not null || od.EnforcingLocalOriginSuccessRate is not null)
        {
            errors.Add($"{where}: {path}.consecutive_local_origin_failure (and its enforcing fields) is not supported (needs split_external_local_origin_errors)");
        }

        if (od.MaxEjectionTimeJitter is { } jitter && jitter.ToTimeSpan() != TimeSpan.Zero)
        {
            errors.Add($"{where}: {path}.max_ejection_time_jitter is not supported");
        }

        return settings with { PanicThresholdPercent = panic ?? settings.PanicThresholdPercent };
    }

    public static ClusterLimits? DecodeLimits(Cluster cluster, string where, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(errors);
        var limits = ClusterLimits.Default;
        var changed = false;
        if (cluster.CircuitBreakers is { } breakers)
        {
            var defaults = 0;
            for (var i = 0; i < breakers.Thresholds.Count; i++)
            {
                var t = breakers.Thresholds[i];
                var path = $"circuit_breakers.thresholds[{i}]";
                if (t.Priority != Mesh.Xds.Envoy.Config.Core.V3.RoutingPriority.Default)
                {
                    // Only routes marked HIGH priority use these, and no route of this client is.
                    continue;
                }

                if (++defaults > 1)
                {
                    errors.Add($"{where}: {path}: more than one thresholds entry for priority DEFAULT");
                    continue;
                }

                changed = true;
                limits = limits with
                {
                    MaxRequests = Limit(t.MaxRequests, $"{path}.max_requests", where, errors) ?? int.MaxValue,
                    MaxRetries = Limit(t.MaxRetries, $"{path}.max_retries", where, errors) ?? int.MaxValue,
                };
                if (Limit(t.MaxConnections, $"{path}.max_connections", where, errors) is { } connections)
                {
                    limits = limits with { Pool = (limits.Pool ?? new PoolSettings(null, null, null, null)) with { MaxConnections = connections } };
                }

                if (t.MaxPendingRequests is { } pending && pending <= int.MaxValue)
                {
                    // A request beyond the connections waits for one (pending, as HTTP/1.1 in Envoy): the pending bound
                    // is a bound on requests in flight. Without a connection limit there is nothing to wait for here.
                    if (limits.Pool?.MaxConnections is not { } connectionLimit)
                    {
                        errors.Add($"{where}: {path}.max_pending_requests {pending} needs max_connections (this client counts as pending the requests beyond the connections)");
                    }
                    else if (connectionLimit + (long)pending < limits.MaxRequests)
                    {
                        limits = limits with
                        {
                            MaxRequests = (int)Math.Min(int.MaxValue, connectionLimit + (long)pending),
                            MaxRequestsName = $"max_connections + max_pending_requests ({connectionLimit} + {pending}, DestinationRule connectionPool.tcp.maxConnections + http.http1MaxPendingRequests)",
                        };
                    }
                }

                if (t.MaxConnectionPools is not null)
                {
                    errors.Add($"{where}: {path}.max_connection_pools is not supported");
                }

                if (t.RetryBudget is { } budget)
                {
                    var percent = budget.BudgetPercent?.Value ?? 20;
                    if (percent is < 0 or > 100 || double.IsNaN(percent))
                    {
                        errors.Add($"{where}: {path}.retry_budget.budget_percent {percent} must be between 0 and 100");
                    }

                    if (budget.BudgetInterval is { } window && window.ToTimeSpan() != TimeSpan.Zero)
                    {
                        errors.Add($"{where}: {path}.retry_budget.budget_interval is not supported (only requests in flight count)");
                    }

                    var min = budget.MinRetryConcurrency ?? 3;
                    limits = limits with
                    {
                        HasRetryBudget = true,
                        RetryBudgetPercent = percent,
                        MinRetryConcurrency = (int)Math.Min(min, int.MaxValue),
                    };
                }
            }
        }

        if (cluster.ConnectTimeout is not null
            && RouteResilience.DecodeDuration(cluster.ConnectTimeout, "connect_timeout", errors) is { } connect)
        {
            changed = true;
            limits = limits with { Pool = (limits.Pool ?? new PoolSettings(null, null, null, null)) with { ConnectTimeout = connect } };
        }

        foreach (var (key, value) in cluster.TypedExtensionProtocolOptions)
        {
            var path = $"typed_extension_protocol_options[\"{key}\"]";
            if (!string.Equals(key, XdsWire.HttpProtocolOptionsName, StringComparison.Ordinal)
                || !string.Equals(value.TypeUrl, XdsWire.HttpProtocolOptionsType, StringComparison.Ordinal))
            {
                errors.Add($"{where}: {path} ({value.TypeUrl}) is not supported (only {XdsWire.HttpProtocolOptionsName})");
                continue;
            }

            UpstreamHttpProtocolOptions options;
            try
            {
                options = value.Unpack<UpstreamHttpProtocolOptions>();
            }
            catch (Google.Protobuf.InvalidProtocolBufferException e)
            {
                errors.Add($"{where}: {path} cannot be decoded: {e.Message}");
                continue;
            }

            changed = true;
            limits = DecodeHttpOptions(options, limits, $"{path}.common_http_protocol_options", where, errors);
        }

        return changed ? limits : null;
    }

    private static ClusterLimits DecodeHttpOptions(UpstreamHttpProtocolOptions options, ClusterLimits limits, string path, string where, List<string> errors)
    {
        if (options.CommonHttpProtocolOptions is not { } common)
        {
            return limits;
        }

        var pool = limits.Pool ?? new PoolSettings(null, null, null, null);
        if (common.IdleTimeout is { } idle)
        {
            // Envoy: 0 disables the idle timeout.
            var value = RouteResilience.DecodeDuration(idle, $"{path}.idle_timeout", errors);
            pool = pool with { IdleTimeout = value ?? Timeout.InfiniteTimeSpan };
        }

        if (common.MaxConnectionDuration is { } lifetime)
        {
            var value = RouteResilience.DecodeDuration(lifetime, $"{path}.max_connection_duration", errors);
            pool = pool with { MaxConnectionDuration = value ?? Timeout.InfiniteTimeSpan };
        }

        if (common.MaxStreamDuration is not null)
        {
            errors.Add($"{where}: {path}.max_stream_duration is not supported on a cluster (set the route's timeout)");
        }

        switch (common.MaxRequestsPerConnection)
        {
            case null or 0:
                break;
            case 1:
                limits = limits with { OneRequestPerConnection = true };
                break;
            default:
                errors.Add($"{where}: {path}.max_requests_per_connection {common.MaxRequestsPerConnection} is not supported (this client applies 0, unlimited, or 1, no keep-alive)");
                break;
        }

        return limits with { Pool = pool };
    }

    private static double? DecodePanicThreshold(Cluster.Types.CommonLbConfig? config, string where, List<string> errors)
    {
        if (config?.HealthyPanicThreshold is not { } threshold)
        {
            return null;
        }

        if (threshold.Value is < 0 or > 100 || double.IsNaN(threshold.Value))
        {
            errors.Add($"{where}: common_lb_config.healthy_panic_threshold {threshold.Value} must be between 0 and 100");
            return null;
        }

        return threshold.Value;
    }

    // Istio sends an enforcing of 0 or 100; a share in between would eject a random part of the time, which this
    // client does not do.
    private static int Enforced(uint? threshold, uint? enforcing, int defaultThreshold, int defaultEnforcing, string path, string enforcingPath, string where, List<string> errors)
    {
        var share = enforcing ?? (uint)defaultEnforcing;
        if (share is not (0 or 100))
        {
            errors.Add($"{where}: {enforcingPath} {share} is not supported (0 or 100)");
            return 0;
        }

        var value = threshold ?? (uint)defaultThreshold;
        if (value > int.MaxValue)
        {
            errors.Add($"{where}: {path} {value} is too large");
            return 0;
        }

        return share == 0 ? 0 : (int)value;
    }

    private static TimeSpan? Positive(Duration? duration, string path, string where, List<string> errors)
    {
        if (duration is null)
        {
            return null;
        }

        var before = errors.Count;
        var value = RouteResilience.DecodeDuration(duration, path, errors);
        if (value is null && errors.Count == before)
        {
            errors.Add($"{path} must be greater than 0");
        }

        // RouteResilience names only the path; prefix the cluster for the NACK.
        for (var i = before; i < errors.Count; i++)
        {
            errors[i] = $"{where}: {errors[i]}";
        }

        return value;
    }

    // Envoy's thresholds are uint32; 4294967295 (Istio's "unset") and anything above int.MaxValue mean no limit here.
    private static int? Limit(uint? value, string path, string where, List<string> errors)
    {
        if (value is null || value.Value > int.MaxValue)
        {
            return null;
        }

        if (value.Value == 0 && !path.EndsWith("max_retries", StringComparison.Ordinal))
        {
            errors.Add($"{where}: {path} 0 would reject every request");
            return null;
        }

        return (int)value.Value;
    }
}
