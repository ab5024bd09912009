using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Client.Tests.Security;
using Mesh.Client.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using RetryPolicy = Mesh.Xds.Envoy.Config.Route.V3.RetryPolicy;
using RouteAction = Mesh.Xds.Envoy.Config.Route.V3.RouteAction;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// The mesh's spans, seen by an ActivityListener the way OpenTelemetry's SDK listens: one span per attempt, parent of
/// that attempt's System.Net.Http span; the inbound decision on ASP.NET Core's server span; nothing on sampled-out
/// requests. Real Kestrel backends on 127.0.0.1. Not run in parallel with other classes: a listener anywhere in the
/// process changes what every ActivitySource samples.
/// </summary>
[Collection(TracingTestGroup.Name)]
public sealed class TracingTests : IDisposable
{
    private const string Fqdn = "orders.default.svc.cluster.local";
    private static readonly string Frontend = TestCa.Id("frontend");
    private const string TestSource = "Mesh.Client.Tests.Tracing";
    private static readonly ActivitySource Test = new(TestSource);

    private readonly TestCa _ca = new(intermediate: true);

    public void Dispose() => _ca.Dispose();

    [Fact]
    public async Task RetriedOn5xx_OneSpanPerAttempt_ParentOfItsHttpClientSpan_WithResendCountAndReason()
    {
        await using var backend = await TestBackend.StartAsync("orders-0");
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 2 } };
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(backend.Port)]);
        await using var provider = Provider(cluster, retry);
        using var spans = new SpanListener(ActivitySamplingResult.AllDataAndRecorded);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        ActivityTraceId trace;
        using (var parent = Test.StartActivity("test request"))
        {
            trace = parent!.TraceId;
            parent.AddBaggage("mesh.test", "carried");
            using var response = await client.GetAsync(new Uri("http://orders/fail"));
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        Assert.Equal(3, backend.Hits);
        await Poll.UntilAsync(() => spans.Of(trace, "Microsoft.AspNetCore").Count >= 3, "the backend's three server spans", TimeSpan.FromSeconds(30));
        var root = Assert.Single(spans.Of(trace, Test.Name));
        var attempts = spans.Of(trace, MeshTelemetry.ActivitySourceName).OrderBy(a => a.GetTagItem(MeshTracing.Attempt)).ToList();
        Assert.Equal(3, attempts.Count);
        for (var i = 0; i < attempts.Count; i++)
        {
            var attempt = attempts[i];
            Assert.Equal(MeshTracing.AttemptActivityName, attempt.OperationName);
            Assert.Equal(ActivityKind.Internal, attempt.Kind);
            Assert.Equal(root.SpanId, attempt.ParentSpanId);
            Assert.Equal(i + 1, attempt.GetTagItem(MeshTracing.Attempt));
            Assert.Equal(Fqdn, attempt.GetTagItem(MeshTracing.Service));
            Assert.Equal("default", attempt.GetTagItem(MeshTracing.Route));
            Assert.Equal(cluster.Name, attempt.GetTagItem(MeshTracing.Cluster));
            Assert.Equal("127.0.0.1", attempt.GetTagItem(MeshTracing.ServerAddress));
            Assert.Equal(backend.Port, attempt.GetTagItem(MeshTracing.ServerPort));
            Assert.Equal("500", attempt.GetTagItem(MeshTracing.ErrorType));
            Assert.Equal(ActivityStatusCode.Error, attempt.Status);
            Assert.Null(attempt.GetTagItem(MeshTracing.PeerSpiffeId)); // plaintext: no verified peer
            Assert.Equal(i == 0 ? null : i, attempt.GetTagItem(MeshTracing.ResendCount));
            Assert.Equal(i == 0 ? null : "500", attempt.GetTagItem(MeshTracing.RetryReason));

            // .NET's own client span of this attempt is the attempt span's child, and carries the HTTP semantics.
            var http = Assert.Single(spans.Of(trace, "System.Net.Http"), s => s.ParentSpanId == attempt.SpanId);
            Assert.Equal(ActivityKind.Client, http.Kind);
            Assert.Equal("orders", http.GetTagItem("server.address"));
            Assert.Equal(500, http.GetTagItem("http.response.status_code"));

            // traceparent and baggage cross the wire from the endpoint's pool: Kestrel's server span is the client span's child.
            var server = Assert.Single(spans.Of(trace, "Microsoft.AspNetCore"), s => s.ParentSpanId == http.SpanId);
            Assert.Equal("carried", server.GetBaggageItem("mesh.test"));
        }
    }

    [Fact]
    public async Task GrpcCall_AttemptUnderGrpcsSpan_TraceContextAndBaggageReachTheServer()
    {
        await using var backend = await TestBackend.StartAsync("inventory-0", grpc: true);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(backend.Port)])))).BuildServiceProvider();
        using var spans = new SpanListener(ActivitySamplingResult.AllDataAndRecorded);
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Mesh.Client.Tests.Grpc.Greeter.GreeterClient(channel);

        ActivityTraceId trace;
        using (var parent = Test.StartActivity("test call"))
        {
            trace = parent!.TraceId;
            parent.AddBaggage("tenant", "blue");
            Assert.Equal("inventory-0", (await client.HelloAsync(new Mesh.Client.Tests.Grpc.HelloRequest())).Backend);
        }

        await Poll.UntilAsync(() => spans.Of(trace, "Microsoft.AspNetCore").Count == 1, "the backend's server span", TimeSpan.FromSeconds(30));
        var call = Assert.Single(spans.Of(trace, "Grpc.Net.Client"));
        var attempt = Assert.Single(spans.Of(trace, MeshTelemetry.ActivitySourceName));
        var http = Assert.Single(spans.Of(trace, "System.Net.Http"));
        var server = Assert.Single(spans.Of(trace, "Microsoft.AspNetCore"));
        Assert.Equal(call.SpanId, attempt.ParentSpanId);
        Assert.Equal(attempt.SpanId, http.ParentSpanId);
        Assert.Equal(http.SpanId, server.ParentSpanId);
        Assert.Equal("inventory.default.svc.cluster.local", attempt.GetTagItem(MeshTracing.Service));

        // .NET's DistributedContextPropagator (W3C on .NET 10) writes the activity's baggage as the baggage header, and
        // ASP.NET Core reads it back into the server span's baggage.
        Assert.Equal("blue", server.GetBaggageItem("tenant"));
    }

    [Fact]
    public async Task AppResiliencePipeline_EachOfItsAttemptsGetsASpanNumberedInOrder()
    {
        await using var first = await TestBackend.StartAsync("orders-0");
        await using var second = await TestBackend.StartAsync("orders-1");
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(first.Port), TestSnapshots.Endpoint(second.Port)]);
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default");
        var services = MeshServices.Create(new FixedSnapshotSource(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [cluster])));
        services.AddHttpClient("app").AddStandardResilienceHandler(options =>
        {
            options.Retry.MaxRetryAttempts = 2;
            options.Retry.Delay = TimeSpan.FromMilliseconds(1);
            options.CircuitBreaker.MinimumThroughput = 1000;
        });
        await using var provider = services.BuildServiceProvider();
        using var spans = new SpanListener(ActivitySamplingResult.AllDataAndRecorded);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        ActivityTraceId trace;
        using (var parent = Test.StartActivity("test request"))
        {
            trace = parent!.TraceId;
            using var response = await client.GetAsync(new Uri("http://orders/fail"));
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        // The app's pipeline retries (the mesh's own loop steps aside): attempts numbered by the endpoints they took.
        var attempts = spans.Of(trace, MeshTelemetry.ActivitySourceName).OrderBy(a => a.StartTimeUtc).ToList();
        Assert.Equal(3, attempts.Count);
        Assert.Equal([1, 2, 3], attempts.Select(a => (int)a.GetTagItem(MeshTracing.Attempt)!));
        Assert.Equal([null, 1, 2], attempts.Select(a => (int?)a.GetTagItem(MeshTracing.ResendCount)));
        Assert.All(attempts, a => Assert.Null(a.GetTagItem(MeshTracing.RetryReason))); // the app's pipeline decided, not the mesh
        Assert.All(attempts, a => Assert.Equal("500", a.GetTagItem(MeshTracing.ErrorType)));
    }

    [Fact]
    public async Task ConnectionRefused_RetriedAttemptSaysWhatFailedThePreviousOne()
    {
        var retry = new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "connect-failure", NumRetries = 1 } };
        await using var provider = Provider(TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(Ports.Closed())]), retry);
        using var spans = new SpanListener(ActivitySamplingResult.AllDataAndRecorded);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        ActivityTraceId trace;
        using (var parent = Test.StartActivity("test request"))
        {
            trace = parent!.TraceId;
            await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri("http://orders/")));
        }

        var attempts = spans.Of(trace, MeshTelemetry.ActivitySourceName).OrderBy(a => a.GetTagItem(MeshTracing.Attempt)).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.All(attempts, a => Assert.Equal("connection_error", a.GetTagItem(MeshTracing.ErrorType)));
        Assert.All(attempts, a => Assert.Equal(ActivityStatusCode.Error, a.Status));
        Assert.Null(attempts[0].GetTagItem(MeshTracing.RetryReason));
        Assert.Equal("connection_error", attempts[1].GetTagItem(MeshTracing.RetryReason));
        Assert.Equal(1, attempts[1].GetTagItem(MeshTracing.ResendCount));
    }

    [Fact]
    public async Task Mtls_AttemptNamesTheVerifiedPeer_ServerSpanCarriesTheDecisionAndCaller()
    {
        await using var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca);
        await using var provider = Client(backend);
        using var spans = new SpanListener(ActivitySamplingResult.AllDataAndRecorded);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        ActivityTraceId allowedTrace;
        using (var parent = Test.StartActivity("allowed"))
        {
            allowedTrace = parent!.TraceId;
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        ActivityTraceId deniedTrace;
        using (var parent = Test.StartActivity("denied"))
        {
            deniedTrace = parent!.TraceId;
            using var refused = await client.DeleteAsync(new Uri("http://orders/items/1"));
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        await Poll.UntilAsync(
            () => spans.Of(allowedTrace, "Microsoft.AspNetCore").Count == 1 && spans.Of(deniedTrace, "Microsoft.AspNetCore").Count == 1,
            "both server spans",
            TimeSpan.FromSeconds(30));
        foreach (var trace in new[] { allowedTrace, deniedTrace })
        {
            var attempt = Assert.Single(spans.Of(trace, MeshTelemetry.ActivitySourceName));
            Assert.Equal(TestCa.Id("orders"), attempt.GetTagItem(MeshTracing.PeerSpiffeId));
            Assert.Null(attempt.GetTagItem(MeshTracing.ErrorType)); // a 403 is an answer, not a failed attempt
        }

        var allowed = Assert.Single(spans.Of(allowedTrace, "Microsoft.AspNetCore"));
        Assert.Equal(ActivityKind.Server, allowed.Kind);
        Assert.Equal(MeshTracing.Allow, allowed.GetTagItem(MeshTracing.AuthzDecision));
        Assert.Null(allowed.GetTagItem(MeshTracing.AuthzPolicy));
        Assert.Equal(Frontend, allowed.GetTagItem(MeshTracing.PeerSpiffeId));

        var denied = Assert.Single(spans.Of(deniedTrace, "Microsoft.AspNetCore"));
        Assert.Equal(MeshTracing.Deny, denied.GetTagItem(MeshTracing.AuthzDecision));
        Assert.Contains("no-delete", Assert.IsType<string>(denied.GetTagItem(MeshTracing.AuthzPolicy)), StringComparison.Ordinal);
        Assert.Equal(Frontend, denied.GetTagItem(MeshTracing.PeerSpiffeId));
    }

    [Fact]
    public async Task SampledOut_NoAttemptSpan_TraceStillPropagatesAndServerSpansCarryNoMeshAttributes()
    {
        await using var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca);
        await using var provider = Client(backend);
        using var spans = new SpanListener(ActivitySamplingResult.PropagationData);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        ActivityTraceId trace;
        using (var parent = Test.StartActivity("sampled out"))
        {
            trace = parent!.TraceId;
            Assert.False(parent.Recorded);
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
            using var refused = await client.DeleteAsync(new Uri("http://orders/items/1"));
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        // The server spans join the caller's trace (its context crossed on .NET's span of each attempt), and the mesh built
        // no attempt span under a parent that is not recorded.
        await Poll.UntilAsync(() => spans.Of(trace, "Microsoft.AspNetCore").Count == 2, "both server spans (created for propagation)", TimeSpan.FromSeconds(30));
        Assert.Empty(spans.Of(trace, MeshTelemetry.ActivitySourceName));
        var servers = spans.Of(trace, "Microsoft.AspNetCore");
        Assert.All(servers, a => Assert.False(a.IsAllDataRequested));
        Assert.All(servers, a => Assert.DoesNotContain(a.TagObjects, t => t.Key.StartsWith("mesh.", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task NoListener_NoSpan_AndTheCheckAllocatesNothing()
    {
        await using var backend = await TestBackend.StartAsync("orders-0");
        await using var provider = Provider(TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(backend.Port)]), action: null);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var httpSpans = new ConcurrentQueue<Activity>();
        using (var httpOnly = new ActivityListener
        {
            // HttpClient's spans only: the mesh's source has no listener, so the mesh starts nothing.
            ShouldListenTo = source => source.Name == "System.Net.Http",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = httpSpans.Enqueue,
        })
        {
            ActivitySource.AddActivityListener(httpOnly);
            Assert.False(MeshTracing.IsEnabled);
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));

            var before = GC.GetAllocatedBytesForCurrentThread();
            var enabled = false;
            for (var i = 0; i < 1000; i++)
            {
                enabled |= MeshTracing.IsEnabled;
            }

            Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
            Assert.False(enabled);
        }

        // The attempt's HttpClient span is a root: no mesh span was put between it and the caller.
        var http = Assert.Single(httpSpans);
        Assert.Null(http.Parent);
        Assert.Equal(default, http.ParentSpanId);
    }

    [Theory]
    [InlineData("outbound|80|v1|orders.default.svc.cluster.local", "v1")]
    [InlineData("outbound|80||orders.default.svc.cluster.local", null)]
    [InlineData("orders", null)]
    [InlineData("outbound|80", null)]
    public void SubsetOf_ReadsIstiosClusterName(string cluster, string? subset) => Assert.Equal(subset, MeshTracing.SubsetOf(cluster));

    private ServiceProvider Client(MeshBackend backend)
    {
        var name = TestSnapshots.Names.Qualify("orders");
        var cluster = new MeshCluster($"outbound|80||{name}", name, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(backend.Port)], tls: new UpstreamTlsSettings([]));
        var source = new FixedSnapshotSource(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]));
        var services = MeshServices.Create(source);
        services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(_ca.Issue([Frontend])));
        return services.BuildServiceProvider();
    }

    private static ServiceProvider Provider(MeshCluster cluster, RouteAction? action)
    {
        var errors = new List<string>();
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default")
        {
            Resilience = action is null ? null : RouteResilience.Decode(action, hostPolicy: null, "route", errors),
        };
        Assert.Empty(errors);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [cluster]);
        return MeshServices.Create(new FixedSnapshotSource(snapshot), options => options.Resilience.MaxRetryAttempts = 0).BuildServiceProvider();
    }

    /// <summary>Listens to the test's, the mesh's, HttpClient's, gRPC's and ASP.NET Core's sources, as the samples' tracer provider does.</summary>
    private sealed class SpanListener : IDisposable
    {
        private static readonly HashSet<string> Sources = [TestSource, MeshTelemetry.ActivitySourceName, "System.Net.Http", "Microsoft.AspNetCore", "Grpc.Net.Client"];
        private readonly ActivityListener _listener;
        private readonly ConcurrentQueue<Activity> _stopped = new();

        public SpanListener(ActivitySamplingResult sampling)
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = source => Sources.Contains(source.Name),
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => sampling,
                ActivityStopped = _stopped.Enqueue,
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public List<Activity> Of(ActivityTraceId trace, string source) =>
            _stopped.Where(a => a.TraceId == trace && a.Source.Name == source).ToList();

        public void Dispose() => _listener.Dispose();
    }
}

/// <summary>Tests that attach ActivityListeners run alone: a listener changes what every source in the process samples.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TracingTestGroup
{
    public const string Name = "Tracing";
}
