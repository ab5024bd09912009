using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Type.V3;
using static Mesh.Client.Tests.Support.XdsResources;
using CoreHttpOptions = Mesh.Xds.Envoy.Config.Core.V3.HttpProtocolOptions;
using UpstreamHttpOptions = Mesh.Xds.Envoy.Extensions.Upstreams.Http.V3.HttpProtocolOptions;

namespace Mesh.Client.Tests.Xds;

public sealed class ClusterPolicyDecoderTests
{
    [Fact]
    public void Decode_ClusterAsIstiodTranslatesADestinationRule_AppliesEveryField()
    {
        var cluster = Cluster("orders");
        cluster.ConnectTimeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(250));
        cluster.OutlierDetection = new OutlierDetection
        {
            Consecutive5Xx = 3,
            EnforcingConsecutive5Xx = 100,
            ConsecutiveGatewayFailure = 2,
            EnforcingConsecutiveGatewayFailure = 100,
            Interval = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)),
            BaseEjectionTime = Duration.FromTimeSpan(TimeSpan.FromSeconds(2)),
            MaxEjectionPercent = 50,
            EnforcingSuccessRate = 0,
        };
        cluster.CommonLbConfig = new Cluster.Types.CommonLbConfig { HealthyPanicThreshold = new Percent { Value = 30 } };
        cluster.CircuitBreakers = new CircuitBreakers();
        cluster.CircuitBreakers.Thresholds.Add(new CircuitBreakers.Types.Thresholds
        {
            MaxConnections = 4,
            MaxPendingRequests = uint.MaxValue,
            MaxRequests = 100,
            MaxRetries = 7,
            RetryBudget = new CircuitBreakers.Types.Thresholds.Types.RetryBudget { BudgetPercent = new Percent { Value = 25 }, MinRetryConcurrency = 5 },
        });
        cluster.TypedExtensionProtocolOptions.Add("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", Any.Pack(new UpstreamHttpOptions
        {
            CommonHttpProtocolOptions = new CoreHttpOptions { IdleTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(9)), MaxRequestsPerConnection = 1 },
            UseDownstreamProtocolConfig = new(),
        }));
        var errors = new List<string>();

        var decoded = Decode(cluster, errors);

        Assert.Empty(errors);
        var outlier = decoded!.OutlierDetection!;
        Assert.Equal(3, outlier.Consecutive5xx);
        Assert.Equal(2, outlier.ConsecutiveGatewayFailure);
        Assert.Equal(TimeSpan.FromSeconds(1), outlier.Interval);
        Assert.Equal(TimeSpan.FromSeconds(2), outlier.BaseEjectionTime);
        Assert.Equal(50, outlier.MaxEjectionPercent);
        Assert.Equal(30, outlier.PanicThresholdPercent);
        var limits = decoded.Limits!;
        Assert.Equal(100, limits.MaxRequests);
        Assert.Equal(7, limits.MaxRetries);
        Assert.True(limits.HasRetryBudget);
        Assert.Equal(25, limits.RetryBudgetPercent);
        Assert.Equal(5, limits.MinRetryConcurrency);
        Assert.True(limits.OneRequestPerConnection);
        Assert.Equal(new Mesh.Client.Discovery.PoolSettings(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(9), null, 4), limits.Pool);
    }

    [Fact]
    public void Decode_IdleTimeoutZero_DisablesTheIdleTimeout_AsEnvoy()
    {
        // What the control plane sends for a DestinationRule tcp.idleTimeout: 0s (Istio: "disabled").
        var cluster = Cluster("orders");
        cluster.TypedExtensionProtocolOptions.Add("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", Any.Pack(new UpstreamHttpOptions
        {
            CommonHttpProtocolOptions = new CoreHttpOptions { IdleTimeout = Duration.FromTimeSpan(TimeSpan.Zero) },
            UseDownstreamProtocolConfig = new(),
        }));
        var errors = new List<string>();

        var decoded = Decode(cluster, errors);

        Assert.Empty(errors);
        Assert.Equal(Timeout.InfiniteTimeSpan, decoded!.Limits!.Pool!.IdleTimeout);
    }

    [Fact]
    public void Decode_PendingRequests_BoundRequestsInFlightBeyondTheConnections()
    {
        var cluster = Cluster("orders");
        var thresholds = Thresholds(cluster);
        thresholds.MaxConnections = 1;
        thresholds.MaxPendingRequests = 1;
        thresholds.MaxRequests = 100;

        var limits = Decode(cluster, [])!.Limits!;

        Assert.Equal(2, limits.MaxRequests);
        Assert.Contains("http1MaxPendingRequests", limits.MaxRequestsName, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_OutlierDetectionWithoutFields_HasEnvoyDefaults()
    {
        var cluster = Cluster("orders");
        cluster.OutlierDetection = new OutlierDetection();

        var outlier = Decode(cluster, [])!.OutlierDetection!;

        Assert.Equal(5, outlier.Consecutive5xx);
        Assert.Equal(0, outlier.ConsecutiveGatewayFailure); // Envoy enforces gateway failures at 0 % by default
        Assert.Equal(10, outlier.MaxEjectionPercent);
        Assert.Equal(TimeSpan.FromSeconds(300), outlier.MaxEjectionTime);
    }

    public static TheoryData<string> Unsupported => [.. Cases.Keys];

    private static readonly Dictionary<string, Action<Cluster>> Cases = new()
    {
        { "outlier_detection.enforcing_success_rate 100 is not supported", c => c.OutlierDetection = new OutlierDetection { EnforcingSuccessRate = 100 } },
        { "outlier_detection.enforcing_failure_percentage 100 is not supported", c => c.OutlierDetection = new OutlierDetection { EnforcingFailurePercentage = 100 } },
        { "outlier_detection.split_external_local_origin_errors is not supported", c => c.OutlierDetection = new OutlierDetection { SplitExternalLocalOriginErrors = true } },
        { "outlier_detection.enforcing_consecutive_5xx 50 is not supported (0 or 100)", c => c.OutlierDetection = new OutlierDetection { EnforcingConsecutive5Xx = 50 } },
        { "outlier_detection.max_ejection_percent 101 must not exceed 100", c => c.OutlierDetection = new OutlierDetection { MaxEjectionPercent = 101 } },
        { "outlier_detection.interval must be greater than 0", c => c.OutlierDetection = new OutlierDetection { Interval = new Duration() } },
        { "outlier_detection.max_ejection_time_jitter is not supported", c => c.OutlierDetection = new OutlierDetection { MaxEjectionTimeJitter = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) } },
        { "common_lb_config.healthy_panic_threshold 150 must be between 0 and 100", c => c.CommonLbConfig = new Cluster.Types.CommonLbConfig { HealthyPanicThreshold = new Percent { Value = 150 } } },
        { "circuit_breakers.thresholds[0].max_pending_requests 10 needs max_connections", c => Thresholds(c).MaxPendingRequests = 10 },
        { "circuit_breakers.thresholds[0].max_requests 0 would reject every request", c => Thresholds(c).MaxRequests = 0 },
        { "circuit_breakers.thresholds[0].retry_budget.budget_interval is not supported", c => Thresholds(c).RetryBudget = new() { BudgetInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) } },
        { "circuit_breakers.thresholds[0].retry_budget.budget_percent 120 must be between 0 and 100", c => Thresholds(c).RetryBudget = new() { BudgetPercent = new Percent { Value = 120 } } },
        { "typed_extension_protocol_options[\"envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions\"]", c => c.TypedExtensionProtocolOptions.Add("envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions", new Any { TypeUrl = "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions" }) },
        { "common_http_protocol_options.max_requests_per_connection 5 is not supported", c => c.TypedExtensionProtocolOptions.Add("envoy.extensions.upstreams.http.v3.HttpProtocolOptions", Any.Pack(new UpstreamHttpOptions { CommonHttpProtocolOptions = new CoreHttpOptions { MaxRequestsPerConnection = 5 } })) },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public void Decode_FieldThisClientCannotApply_IsNackedByName(string expected)
    {
        var cluster = Cluster("orders");
        Cases[expected](cluster);
        var errors = new List<string>();

        Assert.Null(Decode(cluster, errors));
        var error = Assert.Single(errors);
        Assert.StartsWith("Cluster outbound|80||orders.default.svc.cluster.local: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    private static CircuitBreakers.Types.Thresholds Thresholds(Cluster cluster)
    {
        cluster.CircuitBreakers = new CircuitBreakers();
        var thresholds = new CircuitBreakers.Types.Thresholds();
        cluster.CircuitBreakers.Thresholds.Add(thresholds);
        return thresholds;
    }

    private static ClusterResource? Decode(Cluster cluster, List<string> errors) =>
        XdsResourceDecoder.DecodeAll(XdsTypeUrls.Cluster, [Any.Pack(cluster)], errors)?.Values.Cast<ClusterResource>().Single();
}
