using System.Diagnostics.Metrics;
using System.Net;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;
using RetryPolicy = Mesh.Xds.Envoy.Config.Route.V3.RetryPolicy;
using RouteAction = Mesh.Xds.Envoy.Config.Route.V3.RouteAction;
using Mesh.Client.Tests.Support;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// reporter="source": IHttpClientFactory clients against real Kestrel backends on 127.0.0.1, a MeterListener on the
/// provider's meter. One increment per request the caller sent, whatever the retries; Istio's labels; Envoy's flags.
/// </summary>
public sealed class SourceReporterTests : IAsyncLifetime
{
    private const string Fqdn = "orders.default.svc.cluster.local";
    private TestBackend _backend = null!;

    public async Task InitializeAsync() => _backend = await TestBackend.StartAsync("orders-0");

    public async Task DisposeAsync() => await _backend.DisposeAsync();

    [Fact]
    public async Task Success_EachRequestCountedOnce_WithIstiosLabels()
    {
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port))), options =>
        {
            options.Service = "frontend";
            options.Labels["version"] = "v1";
        });
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 7; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        Assert.Equal(7, metrics.Requests.Count);
        Assert.All(metrics.Requests, m => Assert.Equal(1, m.Value));
        Assert.Equal(7, metrics.Of(MeshMetrics.RequestDurationName).Count);
        Assert.Equal(7, metrics.Of(MeshMetrics.RequestBytesName).Count);
        Assert.Equal(7, metrics.Of(MeshMetrics.ResponseBytesName).Count);
        var expected = new Dictionary<string, string>
        {
            ["reporter"] = "source",
            ["source_workload"] = "frontend",
            ["source_workload_namespace"] = "default",
            ["source_principal"] = "unknown", // plaintext control plane: no workload certificate
            ["source_app"] = "frontend",
            ["source_version"] = "v1",
            ["source_canonical_service"] = "frontend",
            ["source_canonical_revision"] = "v1",
            ["source_cluster"] = "Kubernetes",
            ["destination_workload"] = "unknown",
            ["destination_workload_namespace"] = "default",
            ["destination_principal"] = "unknown",
            ["destination_app"] = "unknown",
            ["destination_version"] = "unknown",
            ["destination_service"] = Fqdn,
            ["destination_service_name"] = "orders",
            ["destination_service_namespace"] = "default",
            ["destination_canonical_service"] = "unknown",
            ["destination_canonical_revision"] = "latest",
            ["destination_cluster"] = "Kubernetes",
            ["request_protocol"] = "http",
            ["response_code"] = "200",
            ["grpc_response_status"] = string.Empty, // as Istio for HTTP: absent in Prometheus
            ["response_flags"] = "-",
            ["connection_security_policy"] = "unknown",
        };
        Assert.Equal(expected.OrderBy(p => p.Key), metrics.Requests[0].Labels.OrderBy(p => p.Key));
    }

    [Fact]
    public async Task EndpointWithIstioWorkloadMetadata_DestinationWorkloadLabelsFromIt_OfTheLastAttempt()
    {
        // As Istio's client side without a peer exchange: the destination workload, canonical service and revision come
        // from istiod's endpoint metadata, of the endpoint the last attempt went to (the first one refuses connections).
        var closed = Ports.Closed();
        var dead = new MeshEndpoint("127.0.0.1", closed) { Workload = EndpointWorkload.Parse("orders-v0;default;orders;v0;") };
        var live = new MeshEndpoint("127.0.0.1", _backend.Port) { Workload = EndpointWorkload.Parse("orders-v1;shop;orders;v1;") };
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "connect-failure", NumRetries = 2 } };
        await using var provider = Provider(Route(Cluster(dead, live), retry), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        Assert.Equal(4, metrics.Requests.Count);
        Assert.All(metrics.Requests, m => Assert.Equal(
            ("orders-v1", "shop", "orders", "v1", "Kubernetes", Fqdn),
            (m.Labels["destination_workload"], m.Labels["destination_workload_namespace"], m.Labels["destination_canonical_service"], m.Labels["destination_canonical_revision"], m.Labels["destination_cluster"], m.Labels["destination_service"])));
    }

    [Fact]
    public async Task AppResiliencePipelineBetween_DestinationWorkloadLabelsStillFromTheEndpoint()
    {
        // The app's own pipeline runs between the mesh's loop and its routing: the trail travels with the request.
        var live = new MeshEndpoint("127.0.0.1", _backend.Port) { Workload = EndpointWorkload.Parse("orders-v1;default;orders;v1;") };
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, Cluster(live))), [Cluster(live)]);
        var services = MeshServices.Create(new FixedSnapshotSource(snapshot));
        services.AddHttpClient("app").AddStandardResilienceHandler();
        await using var provider = services.BuildServiceProvider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));

        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("orders-v1", "orders", "v1"), (request.Labels["destination_workload"], request.Labels["destination_canonical_service"], request.Labels["destination_canonical_revision"]));
    }

    [Fact]
    public async Task AppHedging_DestinationWorkloadIsTheEndpointThatAnswered_NotTheLastAttempted()
    {
        // The app's hedging sends each hedged attempt as a clone of the request, side by side with the first: the answer
        // that wins (the fast endpoint's) names the workload, whichever attempt was routed last.
        await using var slow = await TestBackend.StartAsync("orders-slow");
        slow.Hang = true;
        var hanging = new MeshEndpoint("127.0.0.1", slow.Port) { Workload = EndpointWorkload.Parse("orders-slow;default;orders;v1;") };
        var answering = new MeshEndpoint("127.0.0.1", _backend.Port) { Workload = EndpointWorkload.Parse("orders-fast;default;orders;v2;") };
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, Cluster(hanging, answering))), [Cluster(hanging, answering)]);
        var services = MeshServices.Create(new FixedSnapshotSource(snapshot));
        services.AddHttpClient("app").AddStandardHedgingHandler().Configure(options => options.Hedging.Delay = TimeSpan.FromMilliseconds(50));
        await using var provider = services.BuildServiceProvider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        // Round robin sent some first attempts to the endpoint that never answers: those were hedged to the other one.
        Assert.True(slow.Hits > 0, "no first attempt went to the hanging endpoint, so nothing was hedged");
        Assert.Equal(4, metrics.Requests.Count);
        Assert.All(metrics.Requests, m => Assert.Equal(("orders-fast", "v2", "200"), (m.Labels["destination_workload"], m.Labels["destination_canonical_revision"], m.Labels["response_code"])));
    }

    [Fact]
    public async Task RetriedRequest_CountedOnce_WithTheLastAttemptsCodeAndURX()
    {
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 2 } };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port)), retry), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(3, _backend.Hits);
        var request = Assert.Single(metrics.Requests);
        Assert.Equal("500", request.Labels["response_code"]);
        Assert.Equal("URX", request.Labels["response_flags"]);
    }

    [Fact]
    public async Task RetriedUntilTheEnd_OnARetriable4xx_URX()
    {
        // Envoy flags URX on whatever answer the retries ended on, a 409 of retriable-4xx as much as a 5xx.
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "retriable-4xx", NumRetries = 2 } };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port)), retry), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/status/409"));

        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Equal(3, _backend.Hits);
        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("409", "URX"), (request.Labels["response_code"], request.Labels["response_flags"]));
    }

    [Fact]
    public async Task RetryRefusedByTheRetryBudget_TheFailedAnswer_UO()
    {
        // Envoy's retry overflow: the budget (0 % and no minimum here) refuses the retry, the caller gets the failed
        // attempt's answer, flagged UO as circuit-breaking alerts expect.
        var limits = new ClusterLimits { HasRetryBudget = true, RetryBudgetPercent = 0, MinRetryConcurrency = 0 };
        var cluster = new MeshCluster($"outbound|80||{Fqdn}", Fqdn, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(_backend.Port)], limits: limits);
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 2 } };
        await using var provider = Provider(Route(cluster, retry), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, _backend.Hits);
        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("500", "UO"), (request.Labels["response_code"], request.Labels["response_flags"]));
    }

    [Fact]
    public async Task RetriedThenAnswered_CountedOnce_WithoutAFlag()
    {
        // Two endpoints, one refusing connections: the retry goes to the other (it avoids the endpoint that failed).
        var closed = Ports.Closed();
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "connect-failure", NumRetries = 2 } };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(closed), TestSnapshots.Endpoint(_backend.Port)), retry), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));
        }

        Assert.Equal(4, _backend.Hits);
        Assert.Equal(4, metrics.Requests.Count);
        Assert.All(metrics.Requests, m => Assert.Equal(("200", "-"), (m.Labels["response_code"], m.Labels["response_flags"])));
    }

    [Fact]
    public async Task NoRouteMatches_NR_404()
    {
        var cluster = Cluster(TestSnapshots.Endpoint(_backend.Port));
        var route = new MeshRoute("/api", null, true, [new WeightedCluster(cluster, 1)]);
        await using var provider = Provider((route, cluster));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<NoRouteException>(() => client.GetAsync(new Uri("http://orders/other")));

        AssertOutcome(metrics, "404", "NR");
        Assert.Equal(0, _backend.Hits);
    }

    [Fact]
    public async Task NoHealthyEndpoint_UH_503()
    {
        await using var provider = Provider(Route(Cluster()));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<NoHealthyEndpointException>(() => client.GetAsync(new Uri("http://orders/")));

        AssertOutcome(metrics, "503", "UH");
    }

    [Fact]
    public async Task MaxRequestsReached_UO_503()
    {
        var cluster = new MeshCluster($"outbound|80||{Fqdn}", Fqdn, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(_backend.Port)], limits: new ClusterLimits { MaxRequests = 0 });
        await using var provider = Provider(Route(cluster), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<UpstreamOverflowException>(() => client.GetAsync(new Uri("http://orders/")));

        AssertOutcome(metrics, "503", "UO");
        Assert.Equal(0, _backend.Hits);
    }

    [Fact]
    public async Task RouteTimeout_UT_504()
    {
        _backend.Hang = true;
        var timeout = new RouteAction { Timeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(300)) };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port)), timeout));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        AssertOutcome(metrics, "504", "UT");
        Assert.True(metrics.Of(MeshMetrics.RequestDurationName).Single().Value >= 250, "the duration covers the timeout");
    }

    [Fact]
    public async Task ConnectionRefused_UF_503()
    {
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(Ports.Closed()))), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri("http://orders/")));

        AssertOutcome(metrics, "503", "UF");
    }

    [Theory]
    [InlineData(0x2, "UR")] // INTERNAL_ERROR: the endpoint reset the stream (Envoy's remote reset)
    [InlineData(0x8, "UR")] // CANCEL
    [InlineData(0x1, "UR")] // PROTOCOL_ERROR: still the endpoint's reset (UPE is for a protocol error the client finds itself)
    public async Task StreamResetByTheEndpoint_UR_WhateverItsCode_503(int errorCode, string flag)
    {
        await using var backend = await ResettingBackend.StartAsync(errorCode);
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(backend.Port))), options => options.Resilience.MaxRetryAttempts = 0);
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://orders/")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

        var failure = await Assert.ThrowsAsync<HttpRequestException>(() => client.SendAsync(request));

        Assert.Equal(HttpRequestError.HttpProtocolError, failure.HttpRequestError);
        AssertOutcome(metrics, "503", flag);
    }

    [Fact]
    public async Task CallerGivesUp_DC_0()
    {
        _backend.Hang = true;
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port))));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        using var caller = new CancellationTokenSource();

        var call = client.GetAsync(new Uri("http://orders/"), caller.Token);
        await Poll.UntilAsync(() => _backend.Hits == 1, "the backend to receive the request", TimeSpan.FromSeconds(30));
        await caller.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);

        AssertOutcome(metrics, "0", "DC");
    }

    [Fact]
    public async Task FaultAbort_FI_TheAbortStatus_BackendNotCalled()
    {
        var features = new RouteFeatures { Abort = new FaultAbort(503, null, PerMillion.All) };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port)), features: features));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        AssertOutcome(metrics, "503", "FI");
        Assert.Equal(0, _backend.Hits);
        Assert.Equal("fault filter abort".Length, metrics.Of(MeshMetrics.ResponseBytesName).Single().Value);
    }

    [Fact]
    public async Task FaultDelay_DI_TheBackendsAnswer()
    {
        var features = new RouteFeatures { Delay = new FaultDelay(TimeSpan.FromMilliseconds(100), PerMillion.All) };
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port)), features: features));
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));

        AssertOutcome(metrics, "200", "DI");
        Assert.True(metrics.Of(MeshMetrics.RequestDurationName).Single().Value >= 90, "the duration covers the delay");
    }

    [Fact]
    public async Task NoListener_RecordsNothing_AndBuildsNoLabels()
    {
        await using var provider = Provider(Route(Cluster(TestSnapshots.Endpoint(_backend.Port))));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var recorder = provider.GetRequiredService<IstioRequestMetrics>();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));
        }

        Assert.False(recorder.Enabled);
        Assert.Equal(0, recorder.CachedLabelSets);

        // The same provider with a listener: the same requests now build (and cache) their one label set.
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));
        Assert.True(recorder.Enabled);
        Assert.Equal(1, recorder.CachedLabelSets);
        Assert.Single(metrics.Requests);
    }

    private static void AssertOutcome(IstioMetricsListener metrics, string code, string flags)
    {
        var request = Assert.Single(metrics.Requests);
        Assert.Equal((code, flags), (request.Labels["response_code"], request.Labels["response_flags"]));
        Assert.Equal(Fqdn, request.Labels["destination_service"]);
        Assert.Equal("source", request.Labels["reporter"]);
    }

    private static MeshCluster Cluster(params MeshEndpoint[] endpoints) => TestSnapshots.Cluster("orders", 80, endpoints);

    private static (MeshRoute Route, MeshCluster Cluster) Route(MeshCluster cluster, RouteAction? action = null, RouteFeatures? features = null)
    {
        var errors = new List<string>();
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default", features: features)
        {
            Resilience = action is null ? null : RouteResilience.Decode(action, hostPolicy: null, "route", errors),
        };
        Assert.Empty(errors);
        return (route, cluster);
    }

    private static ServiceProvider Provider((MeshRoute Route, MeshCluster Cluster) target, Action<ServiceMeshOptions>? configure = null)
    {
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, target.Route)), [target.Cluster]);
        return MeshServices.Create(new FixedSnapshotSource(snapshot), configure).BuildServiceProvider();
    }

    /// <summary>An h2c Kestrel backend on 127.0.0.1 that resets every stream with one HTTP/2 error code.</summary>
    private sealed class ResettingBackend : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private ResettingBackend(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public static async Task<ResettingBackend> StartAsync(int errorCode)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
            var app = builder.Build();
            app.Run(context =>
            {
                context.Features.GetRequiredFeature<IHttpResetFeature>().Reset(errorCode);
                return Task.CompletedTask;
            });
            await app.StartAsync();
            var address = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single());
            return new ResettingBackend(app, address.Port);
        }

        public ValueTask DisposeAsync() => _app.DisposeAsync();
    }
}
