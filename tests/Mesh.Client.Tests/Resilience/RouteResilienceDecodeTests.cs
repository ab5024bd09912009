using System.Net;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Resilience;

/// <summary>A route's timeout and retry policy from RDS: parsed once into the snapshot, or NACKed naming the field.</summary>
public sealed class RouteResilienceDecodeTests
{
    [Fact]
    public void Build_RouteTimeoutAndRetryPolicy_ParsedIntoTheRoute()
    {
        var routes = Routes("orders");
        var action = routes.VirtualHosts[0].Routes[0].Route_;
        action.Timeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(2));
        action.RetryPolicy = new RetryPolicy
        {
            RetryOn = "5xx, unavailable,connect-failure",
            NumRetries = 3,
            PerTryTimeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(500)),
            RetryBackOff = new RetryPolicy.Types.RetryBackOff { BaseInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(10)) },
        };

        var policy = BuildRoute(routes).Resilience;

        Assert.NotNull(policy);
        Assert.Equal(TimeSpan.FromSeconds(2), policy.Timeout);
        var retry = Assert.IsType<RouteRetryPolicy>(policy.Retry);
        Assert.Equal(RetryOn.ServerError | RetryOn.GrpcUnavailable | RetryOn.ConnectFailure, retry.RetryOn);
        Assert.Equal(3, retry.NumRetries);
        Assert.Equal(TimeSpan.FromMilliseconds(500), retry.PerTryTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(10), retry.BaseInterval);
        Assert.Equal(TimeSpan.FromMilliseconds(100), retry.MaxInterval); // Envoy: 10 × base when unset
    }

    [Fact]
    public void Build_RetryPolicyDefaults_AreEnvoys()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.RetryPolicy = new RetryPolicy { RetryOn = "gateway-error" };

        var retry = BuildRoute(routes).Resilience!.Retry!;

        Assert.Equal(1, retry.NumRetries);
        Assert.Null(retry.PerTryTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(25), retry.BaseInterval);
        Assert.Equal(TimeSpan.FromMilliseconds(250), retry.MaxInterval);
    }

    [Fact]
    public void Build_NoPolicyOrZeroTimeout_LeavesTheRouteToMeshResilience()
    {
        var plain = Routes("orders");
        Assert.Null(BuildRoute(plain).Resilience);

        // istiod sends timeout 0 (Envoy: disabled) whenever the VirtualService sets none: the app's TotalTimeout stays.
        var zero = Routes("orders");
        zero.VirtualHosts[0].Routes[0].Route_.Timeout = new Duration();
        Assert.Null(BuildRoute(zero).Resilience);
    }

    [Fact]
    public void Build_MaxStreamDuration_IsTheTimeoutWhenTimeoutIsUnset()
    {
        // What istiod sends proxyless (GENERATOR=grpc) clients in place of timeout.
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.MaxStreamDuration = new RouteAction.Types.MaxStreamDuration { MaxStreamDuration_ = Duration.FromTimeSpan(TimeSpan.FromSeconds(3)) };

        Assert.Equal(TimeSpan.FromSeconds(3), BuildRoute(routes).Resilience!.Timeout);
    }

    [Fact]
    public void Build_VirtualHostRetryPolicy_AppliesToRoutesWithoutOne_RoutePolicyWins()
    {
        var routes = Routes("orders");
        var host = routes.VirtualHosts[0];
        host.RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 4 };
        host.Routes.Insert(0, new Route
        {
            Match = new RouteMatch { Prefix = "/own" },
            Route_ = new RouteAction { Cluster = ClusterName("orders"), RetryPolicy = new RetryPolicy { RetryOn = "reset", NumRetries = 1 } },
        });

        var built = Build(routes).Services[0].Routes;

        Assert.Equal((RetryOn.Reset, 1), (built[0].Resilience!.Retry!.RetryOn, built[0].Resilience!.Retry!.NumRetries));
        Assert.Equal((RetryOn.ServerError, 4), (built[1].Resilience!.Retry!.RetryOn, built[1].Resilience!.Retry!.NumRetries));
        Assert.True(Build(routes).Services[0].HasRouteResilience);
    }

    [Theory]
    [InlineData("num_retries", "virtual_hosts[0].routes[0].route.retry_policy.num_retries 1000 is more than this client applies")]
    [InlineData("negative timeout", "virtual_hosts[0].routes[0].route.timeout must not be negative")]
    [InlineData("negative per_try_timeout", "virtual_hosts[0].routes[0].route.retry_policy.per_try_timeout must not be negative")]
    [InlineData("huge timeout", "virtual_hosts[0].routes[0].route.timeout must be a valid duration of at most 49 days")]
    [InlineData("unknown retry_on", "virtual_hosts[0].routes[0].route.retry_policy.retry_on '5xxx' is not a retry condition this client knows")]
    [InlineData("retriable-headers", "virtual_hosts[0].routes[0].route.retry_policy.retry_on 'retriable-headers' is not supported")]
    [InlineData("zero base_interval", "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.base_interval must be greater than 0")]
    [InlineData("missing base_interval", "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.base_interval is required")]
    [InlineData("max below base", "virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.max_interval 10 ms is less than base_interval 50 ms")]
    [InlineData("virtual host", "virtual_hosts[0].retry_policy.num_retries 11 is more than this client applies")]
    [InlineData("max_stream_duration", "virtual_hosts[0].routes[0].route.max_stream_duration.max_stream_duration must not be negative")]
    [InlineData("retriable_status_codes", "virtual_hosts[0].routes[0].route.retry_policy.retriable_status_codes[1] 5030 is not an HTTP status code")]
    public void Decode_PolicyTheClientCannotApply_IsNackedNamingTheField(string fault, string expected)
    {
        var routes = Routes("orders");
        var action = routes.VirtualHosts[0].Routes[0].Route_;
        var retry = new RetryPolicy { RetryOn = "5xx" };
        switch (fault)
        {
            case "num_retries": retry.NumRetries = 1000; action.RetryPolicy = retry; break;
            case "negative timeout": action.Timeout = new Duration { Seconds = -1 }; break;
            case "negative per_try_timeout": retry.PerTryTimeout = new Duration { Nanos = -5 }; action.RetryPolicy = retry; break;
            case "huge timeout": action.Timeout = new Duration { Seconds = 100L * 24 * 3600 }; break;
            case "unknown retry_on": retry.RetryOn = "gateway-error,5xxx"; action.RetryPolicy = retry; break;
            case "retriable-headers": retry.RetryOn = "retriable-headers"; action.RetryPolicy = retry; break;
            case "zero base_interval": retry.RetryBackOff = new() { BaseInterval = new Duration() }; action.RetryPolicy = retry; break;
            case "missing base_interval": retry.RetryBackOff = new() { MaxInterval = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) }; action.RetryPolicy = retry; break;
            case "max below base":
                retry.RetryBackOff = new() { BaseInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(50)), MaxInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(10)) };
                action.RetryPolicy = retry;
                break;
            case "virtual host": routes.VirtualHosts[0].RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 11 }; break;
            case "max_stream_duration": action.MaxStreamDuration = new() { MaxStreamDuration_ = new Duration { Seconds = -3 } }; break;
            case "retriable_status_codes": retry.RetryOn = "retriable-status-codes"; retry.RetriableStatusCodes.Add([503, 5030]); action.RetryPolicy = retry; break;
        }

        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors);

        Assert.Null(decoded);
        var error = Assert.Single(errors);
        Assert.StartsWith($"RouteConfiguration {ClusterName("orders")}: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Decode_EveryRetryOnTokenIstioAllows_ExceptRetriableHeaders_IsAccepted()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.RetryPolicy = new RetryPolicy
        {
            RetryOn = "5xx,gateway-error,reset,reset-before-request,connect-failure,retriable-4xx,refused-stream,retriable-status-codes,"
                + "envoy-ratelimited,http3-post-connect-failure,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
        };

        var retry = BuildRoute(routes).Resilience!.Retry!;

        Assert.Equal((RetryOn)((1 << 15) - 1), retry.RetryOn);
    }

    [Theory]
    [InlineData("5xx", 500, true)]
    [InlineData("5xx", 503, true)]
    [InlineData("5xx", 429, false)]
    [InlineData("gateway-error", 500, false)]
    [InlineData("gateway-error", 502, true)]
    [InlineData("gateway-error", 503, true)]
    [InlineData("gateway-error", 504, true)]
    [InlineData("retriable-4xx", 409, true)]
    [InlineData("connect-failure", 503, false)]
    [InlineData("unavailable", 503, false)]
    public void ShouldRetry_ByStatus(string retryOn, int status, bool expected)
    {
        var policy = Policy(retryOn);
        using var response = new HttpResponseMessage((HttpStatusCode)status);

        Assert.Equal(expected, policy.ShouldRetry(response, error: null, attemptTimedOut: false));
    }

    [Theory]
    [InlineData("retriable-status-codes", 503, true)]
    [InlineData("retriable-status-codes", 502, false)]
    [InlineData("connect-failure", 503, false)]
    public void ShouldRetry_RetriableStatusCodes_OnlyTheListedCodes(string retryOn, int status, bool expected)
    {
        // istiod's default policy: retry_on "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes", codes [503].
        var errors = new List<string>();
        var policy = RouteRetryPolicy.Decode(new RetryPolicy { RetryOn = retryOn, NumRetries = 2, RetriableStatusCodes = { 503 } }, "retry_policy", errors);
        Assert.Empty(errors);
        using var response = new HttpResponseMessage((HttpStatusCode)status);

        Assert.Equal(expected, policy!.ShouldRetry(response, error: null, attemptTimedOut: false));
    }

    [Theory]
    [InlineData("unavailable", "14", true)]
    [InlineData("cancelled", "1", true)]
    [InlineData("deadline-exceeded", "4", true)]
    [InlineData("resource-exhausted", "8", true)]
    [InlineData("internal", "13", true)]
    [InlineData("unavailable", "13", false)]
    [InlineData("5xx", "14", false)] // Envoy: 5xx never matches gRPC errors, which arrive as HTTP 200
    [InlineData("unavailable", "0", false)]
    public void ShouldRetry_ByGrpcStatusInResponseHeaders(string retryOn, string grpcStatus, bool expected)
    {
        var policy = Policy(retryOn);
        using var response = new HttpResponseMessage(HttpStatusCode.OK);
        response.Headers.TryAddWithoutValidation("grpc-status", grpcStatus);

        Assert.Equal(expected, policy.ShouldRetry(response, error: null, attemptTimedOut: false));
    }

    [Fact]
    public void ShouldRetry_ConnectionFailureAndTimeout_AsEnvoy()
    {
        var refused = new HttpRequestException(HttpRequestError.ConnectionError, "refused");
        var reset = new HttpRequestException(HttpRequestError.ResponseEnded, "reset");

        Assert.True(Policy("connect-failure").ShouldRetry(null, refused, false));
        Assert.False(Policy("connect-failure").ShouldRetry(null, reset, false));
        Assert.True(Policy("reset").ShouldRetry(null, reset, false));
        Assert.True(Policy("gateway-error").ShouldRetry(null, reset, false));
        Assert.False(Policy("unavailable").ShouldRetry(null, refused, false));

        // A per-try timeout is a local reset of the attempt.
        Assert.True(Policy("5xx").ShouldRetry(null, new TaskCanceledException(), true));
        Assert.True(Policy("reset").ShouldRetry(null, new TaskCanceledException(), true));
        Assert.False(Policy("connect-failure").ShouldRetry(null, new TaskCanceledException(), true));

        // Mesh errors (no route, no endpoint, refused identity) are answers, never retried.
        Assert.False(Policy("5xx,reset,connect-failure").ShouldRetry(null, new NoRouteException("orders", "/"), false));
    }

    [Fact]
    public void ShouldRetry_AllocatesNothing()
    {
        var policy = Policy("5xx,unavailable,envoy-ratelimited");
        using var grpc = new HttpResponseMessage(HttpStatusCode.OK);
        grpc.Headers.TryAddWithoutValidation("grpc-status", "14");
        using var ok = new HttpResponseMessage(HttpStatusCode.OK);
        policy.ShouldRetry(grpc, null, false);
        policy.ShouldRetry(ok, null, false);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            Assert.True(policy.ShouldRetry(grpc, null, false));
            Assert.False(policy.ShouldRetry(ok, null, false));
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Backoff_IsFullyJitteredExponential_CappedAtMaxInterval()
    {
        var routes = Routes("orders");
        routes.VirtualHosts[0].Routes[0].Route_.RetryPolicy = new RetryPolicy
        {
            RetryOn = "5xx",
            RetryBackOff = new() { BaseInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(100)), MaxInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(500)) },
        };
        var retry = BuildRoute(routes).Resilience!.Retry!;

        for (var i = 0; i < 200; i++)
        {
            Assert.InRange(retry.Backoff(1), TimeSpan.Zero, TimeSpan.FromMilliseconds(100));
            Assert.InRange(retry.Backoff(2), TimeSpan.Zero, TimeSpan.FromMilliseconds(300));
            Assert.InRange(retry.Backoff(5), TimeSpan.Zero, TimeSpan.FromMilliseconds(500));
            Assert.InRange(retry.Backoff(40), TimeSpan.Zero, TimeSpan.FromMilliseconds(500));
        }

        // Jittered: not always the same value.
        Assert.True(Enumerable.Range(0, 20).Select(_ => retry.Backoff(3)).Distinct().Count() > 1);

        // Long (valid) intervals saturate at the maximum instead of overflowing into a negative wait.
        var days = new RouteRetryPolicy(RetryOn.ServerError, 10, null, TimeSpan.FromDays(40), TimeSpan.FromDays(48));
        for (var n = 1; n <= 40; n++)
        {
            Assert.InRange(days.Backoff(n), TimeSpan.Zero, TimeSpan.FromDays(48));
        }
    }

    private static RouteRetryPolicy Policy(string retryOn)
    {
        var errors = new List<string>();
        var policy = RouteRetryPolicy.Decode(new RetryPolicy { RetryOn = retryOn, NumRetries = 2 }, "retry_policy", errors);
        Assert.Empty(errors);
        return policy!;
    }

    private static MeshRoute BuildRoute(RouteConfiguration routes) => Assert.Single(Build(routes).Services[0].Routes);

    private static MeshSnapshot Build(RouteConfiguration routes) => MeshSnapshotBuilder.Build(
        "test",
        Decode<ListenerResource>(XdsTypeUrls.Listener, Listener("orders")),
        Decode<RouteConfiguration>(XdsTypeUrls.RouteConfiguration, routes),
        Decode<ClusterResource>(XdsTypeUrls.Cluster, Cluster("orders")),
        Decode<EndpointsResource>(XdsTypeUrls.ClusterLoadAssignment, Endpoints("orders", 80, ("10.0.0.1", 8080, HealthStatus.Healthy))),
        MeshSnapshot.Empty,
        []);

    private static Dictionary<string, T> Decode<T>(string typeUrl, IMessage resource)
    {
        var errors = new List<string>();
        var decoded = XdsResourceDecoder.DecodeAll(typeUrl, [Any.Pack(resource)], errors);
        Assert.Empty(errors);
        return decoded!.ToDictionary(p => p.Key, p => (T)p.Value);
    }
}

/// <summary>The resilience handler's per-request look-up of the route's policy.</summary>
public sealed class RouteResilienceLookupTests
{
    [Fact]
    public void MatchRoute_ForThePolicy_AllocatesNothing()
    {
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(9000)]);
        var policy = new RouteResilience(TimeSpan.FromSeconds(1), retry: null);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute("/api/v2", null, true, [new Discovery.WeightedCluster(cluster, 1)], name: "v2") { Resilience = policy },
            new MeshRoute("/", null, true, [new Discovery.WeightedCluster(cluster, 1)], name: "default"));
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/api/v2/items");
        Assert.True(service.HasRouteResilience);
        Assert.Same(policy, Mesh.Client.Routing.MeshRouter.MatchRoute(service, request, request.RequestUri!)!.Resilience);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            Mesh.Client.Routing.MeshRouter.MatchRoute(service, request, request.RequestUri!);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Service_RoutesWithEqualPolicies_AreUniform_AnyDifferenceIsNot()
    {
        static RouteResilience Policy(string retryOn, int retries, int perTryMs, int timeoutMs = 0)
        {
            var action = new RouteAction
            {
                Timeout = timeoutMs > 0 ? Duration.FromTimeSpan(TimeSpan.FromMilliseconds(timeoutMs)) : null,
                RetryPolicy = new RetryPolicy { RetryOn = retryOn, NumRetries = (uint)retries, PerTryTimeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(perTryMs)) },
            };
            action.RetryPolicy.RetriableStatusCodes.Add(503);
            var errors = new List<string>();
            var policy = RouteResilience.Decode(action, hostPolicy: null, "route", errors)!;
            Assert.Empty(errors);
            return policy;
        }

        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(8080)]);
        MeshService Service(params RouteResilience?[] policies) => TestSnapshots.Service(
            "orders",
            80,
            [.. policies.Select((policy, i) => new MeshRoute($"/r{i}", null, true, [new Mesh.Client.Discovery.WeightedCluster(cluster, 1)], name: $"r{i}") { Resilience = policy })]);

        var uniform = Service(Policy("5xx,retriable-status-codes", 2, 100), Policy("5xx,retriable-status-codes", 2, 100));
        Assert.True(uniform.ResilienceIsUniform);
        Assert.Equal(2, uniform.UniformResilience!.Retry!.NumRetries);

        var none = Service(null, null);
        Assert.True(none.ResilienceIsUniform);
        Assert.Null(none.UniformResilience);

        Assert.False(Service(Policy("5xx", 2, 100), Policy("5xx", 2, 200)).ResilienceIsUniform);
        Assert.False(Service(Policy("5xx", 2, 100), Policy("5xx", 3, 100)).ResilienceIsUniform);
        Assert.False(Service(Policy("5xx", 2, 100), Policy("gateway-error", 2, 100)).ResilienceIsUniform);
        Assert.False(Service(Policy("5xx", 2, 100), Policy("5xx", 2, 100, timeoutMs: 900)).ResilienceIsUniform);
        Assert.False(Service(Policy("5xx", 2, 100), null).ResilienceIsUniform);
        Assert.False(Service(null, Policy("5xx", 2, 100)).ResilienceIsUniform);
    }
}
