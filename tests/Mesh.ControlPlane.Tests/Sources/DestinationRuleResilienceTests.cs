using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Wire;
using UpstreamHttpProtocolOptions = Mesh.Xds.Envoy.Extensions.Upstreams.Http.V3.HttpProtocolOptions;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>DestinationRule connectionPool, outlierDetection, retryBudget and portLevelSettings: parsed, validated and translated as istiod does.</summary>
public sealed class DestinationRuleResilienceTests
{
    private const string Cluster90 = "outbound|90||orders.default.svc.cluster.local";
    private const string CanaryCluster80 = "outbound|80|canary|orders.default.svc.cluster.local";

    private const string Service = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - {number: 80, name: http, protocol: HTTP}
          - {number: 90, name: admin, protocol: HTTP}
          endpoints:
          - {address: 127.0.0.1, labels: {version: v1}}
        """;

    private const string Rule = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: orders
        spec:
          host: orders
          trafficPolicy:
            connectionPool:
              tcp: {maxConnections: 10, connectTimeout: 250ms, maxConnectionDuration: 10m}
              http: {http1MaxPendingRequests: 5, http2MaxRequests: 100, maxRequestsPerConnection: 1, maxRetries: 3, idleTimeout: 30s}
            outlierDetection:
              consecutive5xxErrors: 3
              consecutiveGatewayErrors: 2
              interval: 1s
              baseEjectionTime: 2s
              maxEjectionPercent: 50
              minHealthPercent: 30
            retryBudget: {percent: {value: 25}, minRetryConcurrency: 5}
            portLevelSettings:
            - port: {number: 90}
              outlierDetection: {consecutive5xxErrors: 7}
          subsets:
          - name: canary
            labels: {version: v1}
            trafficPolicy:
              outlierDetection: {consecutive5xxErrors: 1}
        """;

    [Fact]
    public void Translate_TopLevelPolicy_IsWrittenAsIstiodWritesIt()
    {
        var cluster = Translate(Rule)[Cluster80];

        var od = cluster.OutlierDetection;
        Assert.Equal(3u, od.Consecutive5Xx);
        Assert.Equal(100u, od.EnforcingConsecutive5Xx);
        Assert.Equal(2u, od.ConsecutiveGatewayFailure);
        Assert.Equal(100u, od.EnforcingConsecutiveGatewayFailure);
        Assert.Equal(0u, od.EnforcingSuccessRate);
        Assert.Equal(TimeSpan.FromSeconds(1), od.Interval.ToTimeSpan());
        Assert.Equal(TimeSpan.FromSeconds(2), od.BaseEjectionTime.ToTimeSpan());
        Assert.Equal(50u, od.MaxEjectionPercent);
        Assert.Equal(30, cluster.CommonLbConfig.HealthyPanicThreshold.Value);

        var thresholds = Assert.Single(cluster.CircuitBreakers.Thresholds);
        Assert.Equal(10u, thresholds.MaxConnections);
        Assert.Equal(5u, thresholds.MaxPendingRequests);
        Assert.Equal(100u, thresholds.MaxRequests);
        Assert.Equal(3u, thresholds.MaxRetries);
        Assert.Equal(25, thresholds.RetryBudget.BudgetPercent.Value);
        Assert.Equal(5u, thresholds.RetryBudget.MinRetryConcurrency);
        Assert.Equal(TimeSpan.FromMilliseconds(250), cluster.ConnectTimeout.ToTimeSpan());

        var http = cluster.TypedExtensionProtocolOptions[XdsWire.HttpProtocolOptionsName].Unpack<UpstreamHttpProtocolOptions>();
        Assert.Equal(TimeSpan.FromSeconds(30), http.CommonHttpProtocolOptions.IdleTimeout.ToTimeSpan());
        Assert.Equal(TimeSpan.FromMinutes(10), http.CommonHttpProtocolOptions.MaxConnectionDuration.ToTimeSpan());
        Assert.Equal(1u, http.CommonHttpProtocolOptions.MaxRequestsPerConnection);
    }

    [Fact]
    public void Translate_PortLevelSettings_ReplaceTheBlocksWithoutInheriting()
    {
        var cluster = Translate(Rule)[Cluster90];

        Assert.Equal(7u, cluster.OutlierDetection.Consecutive5Xx);
        Assert.Null(cluster.OutlierDetection.Interval); // not inherited from the top level
        Assert.Equal(0, cluster.CommonLbConfig.HealthyPanicThreshold.Value);
        Assert.Null(cluster.CircuitBreakers); // neither the pool nor the retry budget carries over
        Assert.Equal(TimeSpan.FromSeconds(5), cluster.ConnectTimeout.ToTimeSpan());
    }

    [Fact]
    public void Translate_SubsetBlock_ReplacesTheTopLevelBlockOnly()
    {
        var cluster = Translate(Rule)[CanaryCluster80];

        Assert.Equal(1u, cluster.OutlierDetection.Consecutive5Xx);
        Assert.Null(cluster.OutlierDetection.Interval); // the subset's block replaces the whole top-level block
        Assert.Equal(100u, Assert.Single(cluster.CircuitBreakers.Thresholds).MaxRequests); // the pool is the top level's
        Assert.Equal(25, cluster.CircuitBreakers.Thresholds[0].RetryBudget.BudgetPercent.Value);
    }

    [Fact]
    public void Translate_NoDestinationRule_SendsNoResilienceFields()
    {
        var cluster = Translate(null)[Cluster80];

        Assert.Null(cluster.OutlierDetection);
        Assert.Null(cluster.CircuitBreakers);
        Assert.Null(cluster.CommonLbConfig);
        Assert.Empty(cluster.TypedExtensionProtocolOptions);
    }

    [Fact]
    public void Translate_ZeroMeansUnsetAsInIstio()
    {
        var cluster = Translate(Minimal("""
            connectionPool: {http: {http2MaxRequests: 0}}
            outlierDetection: {consecutive5xxErrors: 0, maxEjectionPercent: 0}
            """))[Cluster80];

        Assert.Equal(uint.MaxValue, cluster.CircuitBreakers.Thresholds[0].MaxRequests);
        Assert.Equal(0u, cluster.OutlierDetection.Consecutive5Xx);
        Assert.Equal(0u, cluster.OutlierDetection.EnforcingConsecutive5Xx); // 0 turns the detector off
        Assert.Null(cluster.OutlierDetection.MaxEjectionPercent); // 0 is unset: Envoy's 10 %
    }

    [Fact]
    public void Translate_TcpIdleTimeoutZero_IsAccepted_AndSentAsZero_WhichDisablesIt()
    {
        // Istio's validation skips a tcp.idleTimeout of 0s ("disabled entirely"); istiod sends it as idle_timeout 0.
        var result = YamlConfigLoader.Load([("services.yaml", Service), ("rule.yaml", Minimal("connectionPool: {tcp: {idleTimeout: 0s}}"))]);
        Assert.Empty(result.Errors);

        var cluster = Translate(Minimal("connectionPool: {tcp: {idleTimeout: 0s}}"))[Cluster80];

        var http = cluster.TypedExtensionProtocolOptions[XdsWire.HttpProtocolOptionsName].Unpack<UpstreamHttpProtocolOptions>();
        Assert.NotNull(http.CommonHttpProtocolOptions.IdleTimeout);
        Assert.Equal(TimeSpan.Zero, http.CommonHttpProtocolOptions.IdleTimeout.ToTimeSpan());
    }

    [Theory]
    [InlineData("outlierDetection: {interval: 0s}", "spec.trafficPolicy.outlierDetection.interval: must be at least 1ms")]
    [InlineData("outlierDetection: {baseEjectionTime: 100000h}", "spec.trafficPolicy.outlierDetection.baseEjectionTime: must be at most 49 days")]
    [InlineData("outlierDetection: {interval: soon}", "spec.trafficPolicy.outlierDetection.interval: must be a duration")]
    [InlineData("outlierDetection: {minHealthPercent: 101}", "spec.trafficPolicy.outlierDetection.minHealthPercent: must be a percentage from 0 to 100 (got 101)")]
    [InlineData("outlierDetection: {maxEjectionPercent: -1}", "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be an integer from 0 to 2147483647 (got '-1')")]
    [InlineData("outlierDetection: {consecutive5xxErrors: 99999999999}", "spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be an integer from 0 to 2147483647")]
    [InlineData("outlierDetection: {splitExternalLocalOriginErrors: true}", "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors: is not supported yet")]
    [InlineData("connectionPool: {}", "spec.trafficPolicy.connectionPool: must set tcp or http")]
    [InlineData("connectionPool: {http: {maxRequestsPerConnection: 5}}", "spec.trafficPolicy.connectionPool.http.maxRequestsPerConnection: 5 is not supported")]
    [InlineData("connectionPool: {http: {http1MaxPendingRequests: 5}}", "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests: needs tcp.maxConnections")]
    [InlineData("connectionPool: {http: {h2UpgradePolicy: UPGRADE}}", "spec.trafficPolicy.connectionPool.http.h2UpgradePolicy: UPGRADE is not supported")]
    [InlineData("connectionPool: {http: {maxConcurrentStreams: 10}}", "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams: is not supported yet")]
    [InlineData("connectionPool: {tcp: {connectTimeout: 0.1ms}}", "spec.trafficPolicy.connectionPool.tcp.connectTimeout: must be at least 1ms")]
    [InlineData("connectionPool: {http: {idleTimeout: 0s}}", "spec.trafficPolicy.connectionPool.http.idleTimeout: must be at least 1ms")]
    [InlineData("retryBudget: {percent: {value: 120}}", "spec.trafficPolicy.retryBudget.percent: must be a number from 0 to 100 (got '120')")]
    [InlineData("retryBudget: {budgetInterval: 1s}", "spec.trafficPolicy.retryBudget.budgetInterval: is not supported yet")]
    [InlineData("portLevelSettings: [{port: {number: 80}}, {port: {number: 80}}]", "spec.trafficPolicy.portLevelSettings[1].port.number: port 80 is listed twice")]
    [InlineData("portLevelSettings: [{port: {number: 80}, tls: {mode: DISABLE}}]", "spec.trafficPolicy.portLevelSettings[0].tls: is not supported yet")]
    [InlineData("tls: {mode: DISABLE}\nportLevelSettings: [{port: {number: 80}}]", "spec.trafficPolicy.tls: cannot be combined with portLevelSettings yet")]
    public void Load_BadResiliencePolicy_IsErrorAtFileLineAndPath(string policy, string expected)
    {
        var result = YamlConfigLoader.Load([("services.yaml", Service), ("rule.yaml", Minimal(policy))]);

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("rule.yaml", error.File);
        Assert.True(error.Line >= 7, $"line {error.Line} does not point into the traffic policy");
        Assert.Contains($"DestinationRule default/orders: {expected}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ApplyYaml_AbsurdOutlierDetection_KeepsTheLastGoodPolicy()
    {
        var store = new ConfigStore(Microsoft.Extensions.Logging.Abstractions.NullLogger<ConfigStore>.Instance);
        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("services.yaml", Service), ("rule.yaml", Minimal("outlierDetection: {consecutive5xxErrors: 3}"))])));
        var good = store.Current;

        Assert.False(store.ApplyYaml(YamlConfigLoader.Load([("services.yaml", Service), ("rule.yaml", Minimal("outlierDetection: {consecutive5xxErrors: 3, interval: 99999999h}"))])));

        Assert.Same(good, store.Current);
        Assert.Equal(3u, store.Current.Config.DestinationRules.Single().Traffic.Resilience.OutlierDetection!.Consecutive5xxErrors);
        var error = Assert.Single(store.Errors);
        Assert.Equal(("rule.yaml", 8), (error.File, error.Line));
        Assert.Contains("spec.trafficPolicy.outlierDetection.interval", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_DeprecatedConsecutiveErrors_WarnsAndIsIgnored_AsIstiodIgnoresItSince17()
    {
        var result = YamlConfigLoader.Load([("services.yaml", Service), ("rule.yaml", Minimal("outlierDetection: {consecutiveErrors: 4}"))]);

        Assert.False(result.HasErrors);
        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal(("rule.yaml", 8), (warning.File, warning.Line));
        Assert.Contains("outlierDetection.consecutiveErrors: is deprecated and not applied", warning.Message, StringComparison.Ordinal);

        // The block stays (outlier detection on, Envoy's defaults), with neither streak set from the deprecated field.
        var outlier = result.Config.DestinationRules.Single().Traffic.Resilience.OutlierDetection!;
        Assert.Null(outlier.ConsecutiveGatewayErrors);
        Assert.Null(outlier.Consecutive5xxErrors);
    }

    private static string Minimal(string policy) => $"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: orders
        spec:
          host: orders
          trafficPolicy:
        {string.Join('\n', policy.Split('\n').Select(line => "    " + line))}
        """;

    private static Dictionary<string, Cluster> Translate(string? rule)
    {
        var files = new List<(string, string)> { ("services.yaml", Service) };
        if (rule is not null)
        {
            files.Add(("rule.yaml", rule));
        }

        var result = YamlConfigLoader.Load(files);
        Assert.False(result.HasErrors, string.Join('\n', result.Errors));
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        return snapshot.Clusters.ToDictionary(c => c.Key, c => c.Value.Resource.Unpack<Cluster>());
    }
}
