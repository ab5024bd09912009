using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// DestinationRule resilience: <c>connectionPool</c>, <c>outlierDetection</c>, <c>retryBudget</c> and
/// <c>portLevelSettings</c>, validated as Istio does (validation.go) plus what the Mesh client cannot apply; every
/// field is applied, or refused with file:line and its path, or (where Istio itself treats it as advisory) warned.
/// </summary>
internal static partial class YamlConfigLoader
{
    /// <summary>The longest duration a Mesh client can arm (a cancellation timer: just under 2^32 ms).</summary>
    private static readonly TimeSpan MaxPolicyDuration = TimeSpan.FromDays(49);

    private static readonly string[] ConnectionPoolFields = ["tcp", "http"];
    private static readonly string[] TcpSettingsFields = ["maxConnections", "connectTimeout", "maxConnectionDuration", "idleTimeout"];
    private static readonly string[] HttpSettingsFields =
        ["http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries", "idleTimeout", "h2UpgradePolicy", "useClientProtocol"];

    private static readonly string[] OutlierDetectionFields =
        ["consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveErrors", "interval", "baseEjectionTime", "maxEjectionPercent", "minHealthPercent"];

    private static readonly string[] RetryBudgetFields = ["percent", "minRetryConcurrency"];
    private static readonly string[] PortTrafficPolicyFields = ["port", "loadBalancer", "connectionPool", "outlierDetection"];

    /// <summary>The resilience blocks and port-level settings of a traffic policy at <paramref name="path"/>.</summary>
    private static TrafficPolicyModel ParseTrafficPolicy(ResourceContext ctx, YamlMappingNode policy, string path, LoadBalancerKind? loadBalancer)
    {
        var resilience = new ResiliencePolicyModel(
            ParseConnectionPool(ctx, policy, $"{path}.connectionPool"),
            ParseOutlierDetection(ctx, policy, $"{path}.outlierDetection"),
            ParseRetryBudget(ctx, policy, $"{path}.retryBudget"));
        return new TrafficPolicyModel(loadBalancer, resilience, ParsePortLevelSettings(ctx, policy, $"{path}.portLevelSettings"));
    }

    private static ImmutableArray<PortTrafficPolicyModel> ParsePortLevelSettings(ResourceContext ctx, YamlMappingNode policy, string path)
    {
        var result = ImmutableArray.CreateBuilder<PortTrafficPolicyModel>();
        var node = ctx.Sequence(Child(policy, "portLevelSettings"), policy, path, required: false);
        if (node is not null && Child(policy, "tls") is { } tls)
        {
            // Istio does not carry the top-level tls into a port listed here (the port falls back to auto mTLS); the
            // Mesh control plane sets TLS per service, so it refuses what it could not translate faithfully.
            ctx.Error(tls, path.Replace(".portLevelSettings", ".tls", StringComparison.Ordinal), "cannot be combined with portLevelSettings yet (Istio drops it for the listed ports; Mesh sets TLS per service)");
        }

        for (var i = 0; node is not null && i < node.Children.Count; i++)
        {
            var entryPath = $"{path}[{i}]";
            if (ctx.Mapping(node.Children[i], node, entryPath, required: true) is not { } entry)
            {
                continue;
            }

            RejectUnsupportedFields(ctx, entry, entryPath, PortTrafficPolicyFields);
            var portNode = ctx.Mapping(Child(entry, "port"), entry, $"{entryPath}.port", required: true);
            uint? port = null;
            if (portNode is not null)
            {
                RejectUnsupportedFields(ctx, portNode, $"{entryPath}.port", ["number"]);
                port = ctx.Port(Child(portNode, "number"), portNode, $"{entryPath}.port.number", required: true);
            }

            if (port is { } number && result.Any(p => p.Port == number))
            {
                ctx.Error(portNode!, $"{entryPath}.port.number", $"port {number} is listed twice");
                continue;
            }

            var lb = ParseSimpleLoadBalancer(ctx, entry, $"{entryPath}.loadBalancer");
            var pool = ParseConnectionPool(ctx, entry, $"{entryPath}.connectionPool");
            var outlier = ParseOutlierDetection(ctx, entry, $"{entryPath}.outlierDetection");
            if (port is { } value)
            {
                result.Add(new PortTrafficPolicyModel(value, lb, pool, outlier));
            }
        }

        return result.ToImmutable();
    }

    private static ConnectionPoolModel? ParseConnectionPool(ResourceContext ctx, YamlMappingNode policy, string path)
    {
        var node = ctx.Mapping(Child(policy, "connectionPool"), policy, path, required: false);
        if (node is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, node, path, ConnectionPoolFields);
        var tcp = ctx.Mapping(Child(node, "tcp"), node, $"{path}.tcp", required: false);
        var http = ctx.Mapping(Child(node, "http"), node, $"{path}.http", required: false);
        if (tcp is null && http is null)
        {
            ctx.Error(node, path, "must set tcp or http (Istio: connection pool must have at least one field)");
            return null;
        }

        var model = new ConnectionPoolModel();
        if (tcp is not null)
        {
            RejectUnsupportedFields(ctx, tcp, $"{path}.tcp", TcpSettingsFields);
            model = model with
            {
                MaxConnections = PositiveOrUnset(ctx, tcp, "maxConnections", $"{path}.tcp"),
                ConnectTimeout = PolicyDuration(ctx, tcp, "connectTimeout", $"{path}.tcp"),
                MaxConnectionDuration = PolicyDuration(ctx, tcp, "maxConnectionDuration", $"{path}.tcp"),
                IdleTimeout = IsZeroDuration(Child(tcp, "idleTimeout")) ? TimeSpan.Zero : PolicyDuration(ctx, tcp, "idleTimeout", $"{path}.tcp"),
            };
        }

        if (http is not null)
        {
            var at = $"{path}.http";
            RejectUnsupportedFields(ctx, http, at, HttpSettingsFields);
            var perConnection = PositiveOrUnset(ctx, http, "maxRequestsPerConnection", at);
            if (perConnection > 1)
            {
                ctx.Error(Child(http, "maxRequestsPerConnection")!, $"{at}.maxRequestsPerConnection", $"{perConnection} is not supported: the Mesh client applies 0 (unlimited) or 1 (no keep-alive)");
            }

            model = model with
            {
                Http1MaxPendingRequests = PositiveOrUnset(ctx, http, "http1MaxPendingRequests", at),
                Http2MaxRequests = PositiveOrUnset(ctx, http, "http2MaxRequests", at),
                MaxRequestsPerConnection = perConnection,
                MaxRetries = PositiveOrUnset(ctx, http, "maxRetries", at),
                IdleTimeout = PolicyDuration(ctx, http, "idleTimeout", at) ?? model.IdleTimeout,
            };
            if (Child(http, "http1MaxPendingRequests") is { } pending && model.Http1MaxPendingRequests is not null && model.MaxConnections is null)
            {
                ctx.Error(pending, $"{at}.http1MaxPendingRequests", "needs tcp.maxConnections in the same connectionPool: the Mesh client counts as pending the requests beyond the connections");
            }

            var upgrade = ctx.String(Child(http, "h2UpgradePolicy"), $"{at}.h2UpgradePolicy");
            var useClientProtocol = ctx.String(Child(http, "useClientProtocol"), $"{at}.useClientProtocol");
            switch (upgrade?.ToUpperInvariant())
            {
                case null or "DEFAULT" or "DO_NOT_UPGRADE":
                    break;
                case "UPGRADE":
                    if (string.Equals(useClientProtocol, "true", StringComparison.OrdinalIgnoreCase))
                    {
                        ctx.Error(Child(http, "h2UpgradePolicy")!, $"{at}.h2UpgradePolicy", "UPGRADE must not be combined with useClientProtocol: true (Istio rule)");
                    }
                    else
                    {
                        ctx.Error(Child(http, "h2UpgradePolicy")!, $"{at}.h2UpgradePolicy", "UPGRADE is not supported: the Mesh client sends the HTTP version the app chose (DEFAULT or DO_NOT_UPGRADE)");
                    }

                    break;
                default:
                    ctx.Error(Child(http, "h2UpgradePolicy")!, $"{at}.h2UpgradePolicy", $"'{upgrade}' must be DEFAULT, DO_NOT_UPGRADE or UPGRADE");
                    break;
            }

            if (useClientProtocol is not null && !bool.TryParse(useClientProtocol, out _))
            {
                ctx.Error(Child(http, "useClientProtocol")!, $"{at}.useClientProtocol", $"'{useClientProtocol}' must be true or false");
            }
            else if (string.Equals(useClientProtocol, "false", StringComparison.OrdinalIgnoreCase))
            {
                ctx.Warn(Child(http, "useClientProtocol")!, $"{at}.useClientProtocol", "false has no effect: the Mesh client always sends the protocol the app chose, as useClientProtocol: true");
            }
        }

        return model;
    }

    private static OutlierDetectionModel? ParseOutlierDetection(ResourceContext ctx, YamlMappingNode policy, string path)
    {
        var node = ctx.Mapping(Child(policy, "outlierDetection"), policy, path, required: false);
        if (node is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, node, path, OutlierDetectionFields);
        if (Child(node, "consecutiveErrors") is { } deprecated && NonNegative(ctx, node, "consecutiveErrors", path) is not null)
        {
            // istiod stopped reading it in 1.7 (applyOutlierDetection ignores it; validation only warns).
            ctx.Warn(deprecated, $"{path}.consecutiveErrors", "is deprecated and not applied, as istiod ignores it since Istio 1.7; use consecutive5xxErrors or consecutiveGatewayErrors");
        }

        return new OutlierDetectionModel
        {
            Consecutive5xxErrors = NonNegative(ctx, node, "consecutive5xxErrors", path),
            ConsecutiveGatewayErrors = NonNegative(ctx, node, "consecutiveGatewayErrors", path),
            Interval = PolicyDuration(ctx, node, "interval", path),
            BaseEjectionTime = PolicyDuration(ctx, node, "baseEjectionTime", path),
            MaxEjectionPercent = (int)(Percent(ctx, node, "maxEjectionPercent", path) ?? 0),
            MinHealthPercent = (int)(Percent(ctx, node, "minHealthPercent", path) ?? 0),
        };
    }

    private static RetryBudgetModel? ParseRetryBudget(ResourceContext ctx, YamlMappingNode policy, string path)
    {
        var node = ctx.Mapping(Child(policy, "retryBudget"), policy, path, required: false);
        if (node is null)
        {
            return null;
        }

        RejectUnsupportedFields(ctx, node, path, RetryBudgetFields);
        double? percent = null;
        if (Child(node, "percent") is { } percentNode)
        {
            // Istio's Percent message is { value: double }; a bare number is accepted as well.
            var valueNode = percentNode is YamlMappingNode mapping ? Child(mapping, "value") : percentNode;
            var text = ctx.String(valueNode, $"{path}.percent");
            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || value is < 0 or > 100 || double.IsNaN(value))
            {
                ctx.Error(valueNode ?? percentNode, $"{path}.percent", $"must be a number from 0 to 100 (got '{text}')");
            }
            else
            {
                percent = value;
            }
        }

        return new RetryBudgetModel(percent, NonNegative(ctx, node, "minRetryConcurrency", path));
    }

    // Istio reads 0 as unset for these limits; negative values are errors, and anything above int32 does not fit the API.
    private static uint? PositiveOrUnset(ResourceContext ctx, YamlMappingNode node, string key, string path) =>
        NonNegative(ctx, node, key, path) is { } value and > 0 ? value : null;

    private static uint? NonNegative(ResourceContext ctx, YamlMappingNode node, string key, string path)
    {
        if (Child(node, key) is not { } valueNode)
        {
            return null;
        }

        var text = ctx.String(valueNode, $"{path}.{key}");
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value > int.MaxValue)
        {
            ctx.Error(valueNode, $"{path}.{key}", $"must be an integer from 0 to {int.MaxValue} (got '{text}')");
            return null;
        }

        return value;
    }

    private static uint? Percent(ResourceContext ctx, YamlMappingNode node, string key, string path)
    {
        var value = NonNegative(ctx, node, key, path);
        if (value > 100)
        {
            ctx.Error(Child(node, key)!, $"{path}.{key}", $"must be a percentage from 0 to 100 (got {value})");
            return null;
        }

        return value;
    }

    /// <summary>
    /// Istio's validation skips a tcp.idleTimeout of 0 ("the timeout is disabled entirely"), and istiod sends it as
    /// idle_timeout 0, which Envoy and Mesh clients read as no idle timeout.
    /// </summary>
    private static bool IsZeroDuration(YamlNode? node) =>
        node is YamlScalarNode { Value: { } text } && TryParseDuration(text, out var value) && value == TimeSpan.Zero;

    private static TimeSpan? PolicyDuration(ResourceContext ctx, YamlMappingNode node, string key, string path)
    {
        if (Child(node, key) is not { } valueNode)
        {
            return null;
        }

        var value = ParseRouteDuration(ctx, valueNode, $"{path}.{key}");
        if (value > MaxPolicyDuration)
        {
            ctx.Error(valueNode, $"{path}.{key}", $"must be at most {MaxPolicyDuration.TotalDays:0} days (the longest a Mesh client can arm a timer)");
            return null;
        }

        return value;
    }
}
