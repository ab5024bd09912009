using System.Diagnostics.Metrics;
using Mesh.Client.Discovery;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using OpenTelemetry;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>The instruments as Istio's Prometheus series need them, the label folding and bounds, and the cost of a record.</summary>
public sealed class IstioRequestMetricsTests
{
    [Fact]
    public void IstioBuild_OneProxyGaugeAtThisLibrarysVersion_AsIstiosProxiesReportIt()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        _ = new MeshMetrics(factory);
        var seen = new List<(int Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == factory && instrument.Name == "istio_build")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<int>((_, value, tags, _) => seen.Add((value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        listener.Start();

        listener.RecordObservableInstruments();

        var build = Assert.Single(seen);
        Assert.Equal(1, build.Value);
        Assert.Equal("proxy", build.Tags["component"]);
        var version = typeof(MeshMetrics).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .Cast<System.Reflection.AssemblyInformationalVersionAttribute>().Single().InformationalVersion;
        Assert.Equal(version.Split('+')[0], build.Tags["tag"]);
    }

    /// <summary>
    /// The kind, name and unit the reference (telemetry-auth.md §2, from OpenTelemetry's PrometheusMetric.cs) says the
    /// OpenTelemetry Prometheus exporter turns into exactly Istio's series: a name that already ends in its unit word or
    /// in _total is kept as is.
    /// </summary>
    [Theory]
    [InlineData("istio_requests_total", "Counter`1", null)]
    [InlineData("istio_request_duration_milliseconds", "Histogram`1", "ms")]
    [InlineData("istio_request_bytes", "Histogram`1", "By")]
    [InlineData("istio_response_bytes", "Histogram`1", "By")]
    public void Instruments_HaveTheNamesAndUnitsThatExportAsIstiosSeries(string name, string kind, string? unit)
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new MeshMetrics(services.GetRequiredService<IMeterFactory>());
        Instrument[] instruments = [metrics.Requests, metrics.RequestDuration, metrics.RequestBytes, metrics.ResponseBytes];

        var instrument = Assert.Single(instruments, i => i.Name == name);

        Assert.Equal(kind, instrument.GetType().Name);
        Assert.Equal(unit, instrument.Unit);
        Assert.Equal(MeshTelemetry.MeterName, instrument.Meter.Name);
        if (instrument is Histogram<double> histogram)
        {
            // Envoy's default buckets (istio's, per the reference §1), not OpenTelemetry's 0–10 000 defaults.
            Assert.Equal(
                [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000],
                histogram.Advice!.HistogramBucketBoundaries!);
        }
    }

    [Fact]
    public void MeterAndSourceNames_AreTheLibrarysName()
    {
        Assert.Equal("Mesh.Client", MeshTelemetry.MeterName);
        Assert.Equal("Mesh.Client", MeshTelemetry.ActivitySourceName);
        Assert.Equal(MeshTelemetry.ActivitySourceName, MeshTelemetry.ActivitySource.Name);
    }

    [Theory]
    [InlineData("spiffe://cluster.local/ns/shop/sa/orders", "spiffe://cluster.local/ns/shop/sa/orders", "shop")]
    [InlineData("spiffe://example.org/workloads/batch", "spiffe://example.org/workloads/batch", "unknown")]
    [InlineData("spiffe://cluster.local/ns/Shop/sa/orders", "spiffe://cluster.local/ns/Shop/sa/orders", "unknown")] // not a DNS label
    [InlineData("spiffe://cluster.local/ns/a\"b/sa/x", "unknown", "unknown")]
    [InlineData("spiffe://cluster.local/ns/shop/sa/orders?x=1", "unknown", "unknown")]
    [InlineData("spiffe://Cluster.Local/ns/shop/sa/orders", "unknown", "unknown")]
    [InlineData("spiffe://cluster.local/ns//sa/orders", "unknown", "unknown")]
    [InlineData("spiffe://cluster.local/ns/../sa/orders", "unknown", "unknown")]
    [InlineData("https://cluster.local/ns/shop/sa/orders", "unknown", "unknown")]
    [InlineData("", "unknown", "unknown")]
    [InlineData(null, "unknown", "unknown")]
    public void PeerIdentity_HostileOrMalformed_FoldsToUnknown(string? spiffeId, string principal, string ns) =>
        Assert.Equal((principal, ns), PeerIdentity.Fold(spiffeId));

    [Fact]
    public void PeerIdentity_Overlong_FoldsToUnknown()
    {
        var id = "spiffe://cluster.local/ns/shop/sa/" + new string('a', 300);

        Assert.Equal(("unknown", "unknown"), PeerIdentity.Fold(id));
    }

    [Fact]
    public void Destination_ManyDistinctPeers_CacheStaysBounded_LaterPeersFoldToUnknown()
    {
        using var services = Services();
        var recorder = services.GetRequiredService<IstioRequestMetrics>();
        using var metrics = new IstioMetricsListener(services.GetRequiredService<IMeterFactory>());
        var peers = IstioRequestMetrics.MaxLabelSets + 500;

        for (var i = 0; i < peers; i++)
        {
            recorder.RecordInbound($"spiffe://cluster.local/ns/ns-{i}/sa/caller", mutualTls: true, grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0);
        }

        Assert.True(recorder.CachedLabelSets <= IstioRequestMetrics.MaxLabelSets + 1, $"{recorder.CachedLabelSets} label sets cached");
        var principals = metrics.Requests.Select(m => m.Labels["source_principal"]).ToList();
        Assert.Equal(peers, principals.Count);
        Assert.Equal("spiffe://cluster.local/ns/ns-0/sa/caller", principals[0]);
        Assert.Equal("unknown", principals[^1]);
        Assert.True(principals.Distinct().Count() <= IstioRequestMetrics.MaxLabelSets + 1);
    }

    [Fact]
    public void Source_ManyDistinctEndpointWorkloads_CacheStaysBounded_LaterOnesFoldToUnknown()
    {
        // The endpoint metadata comes from what registering workloads say about themselves: it cannot grow the series.
        using var services = Services();
        var recorder = services.GetRequiredService<IstioRequestMetrics>();
        using var metrics = new IstioMetricsListener(services.GetRequiredService<IMeterFactory>());
        var service = TestSnapshots.Service("orders", 80, TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(1)]));
        var workloads = IstioRequestMetrics.MaxLabelSets + 500;

        for (var i = 0; i < workloads; i++)
        {
            recorder.RecordOutbound(service, EndpointWorkload.Parse($"w-{i};shop;orders;v1;"), upstreamPrincipal: null, grpc: false, 200, -1, ResponseFlags.None, 1, 0, 0);
        }

        Assert.True(recorder.CachedLabelSets <= IstioRequestMetrics.MaxLabelSets + 1, $"{recorder.CachedLabelSets} label sets cached");
        var names = metrics.Requests.Select(m => m.Labels["destination_workload"]).ToList();
        Assert.Equal(workloads, names.Count);
        Assert.Equal("w-0", names[0]);
        Assert.Equal("unknown", names[^1]);
        Assert.True(names.Distinct().Count() <= IstioRequestMetrics.MaxLabelSets + 1);
    }

    [Fact]
    public void NonMesh_BlackHoleAndPassthrough_IstiosClusterNames_HostAsDestinationService()
    {
        using var services = Services();
        var recorder = services.GetRequiredService<IstioRequestMetrics>();
        using var metrics = new IstioMetricsListener(services.GetRequiredService<IMeterFactory>());

        recorder.RecordNonMesh("Payments.Example.COM", passedThrough: false, 502, ResponseFlags.None, 1, 0, 10);
        recorder.RecordNonMesh("api.example.com", passedThrough: true, 200, ResponseFlags.None, 1, 0, 10);

        var (blackHole, passthrough) = (metrics.Requests[0].Labels, metrics.Requests[1].Labels);
        Assert.Equal("source", blackHole["reporter"]);
        Assert.Equal("BlackHoleCluster", blackHole["destination_service_name"]);
        Assert.Equal("payments.example.com", blackHole["destination_service"]);
        Assert.Equal("502", blackHole["response_code"]);
        Assert.Equal("PassthroughCluster", passthrough["destination_service_name"]);
        Assert.Equal("api.example.com", passthrough["destination_service"]);
        foreach (var labels in new[] { blackHole, passthrough })
        {
            Assert.Equal("unknown", labels["destination_service_namespace"]);
            Assert.Equal("unknown", labels["destination_workload"]);
            Assert.Equal("unknown", labels["destination_cluster"]);
            Assert.Equal("http", labels["request_protocol"]);
            Assert.Equal("-", labels["response_flags"]);
        }
    }

    [Fact]
    public void NonMesh_ManyDistinctOrMalformedHosts_FoldToUnknown()
    {
        // The host comes from the request: past a few distinct ones it cannot grow the series.
        using var services = Services();
        var recorder = services.GetRequiredService<IstioRequestMetrics>();
        using var metrics = new IstioMetricsListener(services.GetRequiredService<IMeterFactory>());
        var hosts = IstioRequestMetrics.MaxNonMeshHosts + 100;

        recorder.RecordNonMesh("bad host\n{x=\"1\"}", passedThrough: true, 200, ResponseFlags.None, 1, 0, 0);
        for (var i = 0; i < hosts; i++)
        {
            recorder.RecordNonMesh($"h{i}.example.com", passedThrough: true, 200, ResponseFlags.None, 1, 0, 0);
        }

        recorder.RecordNonMesh("[::1]", passedThrough: true, 200, ResponseFlags.None, 1, 0, 0);
        var names = metrics.Requests.Select(m => m.Labels["destination_service"]).ToList();
        Assert.Equal("unknown", names[0]);
        Assert.Equal("h0.example.com", names[1]);
        Assert.Equal("unknown", names[^2]);
        Assert.Equal("unknown", names[^1]);
        Assert.Equal(IstioRequestMetrics.MaxNonMeshHosts + 1, names.Distinct().Count());
    }

    [Theory]
    [InlineData("api.example.com", true)]
    [InlineData("API.Example.com", true)]
    [InlineData("10.0.0.5", true)]
    [InlineData("[::1]", true)]
    [InlineData("::1", true)]
    [InlineData("", false)]
    [InlineData("a..b", false)]
    [InlineData("-a.b", false)]
    [InlineData("a_b.example", false)]
    [InlineData("a b", false)]
    [InlineData("[not-ip]", false)]
    public void LabelRules_IsHostName(string host, bool expected) => Assert.Equal(expected, LabelRules.IsHostName(host));

    [Fact]
    public void ResponseFlags_CommaJoinedInEnvoysOrder_DashWhenNone()
    {
        Assert.Equal("-", ResponseFlags.None.ToLabel());
        Assert.Equal("UF,URX", (ResponseFlags.UpstreamRetryLimitExceeded | ResponseFlags.UpstreamConnectionFailure).ToLabel());
        Assert.Equal("DI,FI", (ResponseFlags.FaultInjected | ResponseFlags.DelayInjected).ToLabel());
    }

    [Theory]
    [InlineData("orders.shop.svc.cluster.local", "orders", "shop")]
    [InlineData("api.example.com", "api", "unknown")]
    public void ServiceHost_SplitsIntoNameAndNamespace(string host, string name, string ns) =>
        Assert.Equal((name, ns), IstioRequestMetrics.SplitServiceHost(host));

    [Fact]
    public void Record_WithAListener_AllocatesNothingOnceWarm()
    {
        using var services = Services();
        var recorder = services.GetRequiredService<IstioRequestMetrics>();
        var service = TestSnapshots.Service("orders", 80, TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(1)]));
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, services.GetRequiredService<IMeterFactory>()))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        long total = 0;
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => total += value);
        listener.SetMeasurementEventCallback<double>((_, _, _, _) => { });
        listener.Start();
        const string peer = "spiffe://cluster.local/ns/shop/sa/frontend";
        var upstream = EndpointWorkload.Parse("orders-v1;shop;orders;v1;");
        recorder.RecordOutbound(service, upstream, upstreamPrincipal: null, false, 200, -1, ResponseFlags.None, 1.5, 10, 20);
        recorder.RecordInbound(peer, true, true, 200, 0, ResponseFlags.None, 1.5, 10, 20, requestMessages: 1, responseMessages: 1);

        // Several rounds of 1000 requests each: a per-request allocation shows in every round; a one-off on this thread
        // (tiered JIT under the parallel test load) in one at most.
        var rounds = new List<long>();
        for (var round = 0; round < 5; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
            {
                recorder.RecordOutbound(service, upstream, upstreamPrincipal: null, false, 200, -1, ResponseFlags.None, 1.5, 10, 20);
                recorder.RecordInbound(peer, true, true, 200, 0, ResponseFlags.None, 1.5, 10, 20, requestMessages: 1, responseMessages: 1);
            }

            rounds.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.True(rounds.Min() == 0, $"bytes allocated per round of 1000 requests: {string.Join(", ", rounds)}");

        // Each of the 10002 requests counts 1; each of the 5001 gRPC ones also one request and one response message.
        Assert.Equal(10002 + (2 * 5001), total);
    }

    [Fact]
    public void AddServiceMeshInstrumentation_NullBuilder_Throws()
    {
        Assert.Throws<ArgumentNullException>(() => ServiceMeshInstrumentationExtensions.AddServiceMeshInstrumentation((OpenTelemetry.Metrics.MeterProviderBuilder)null!));
        Assert.Throws<ArgumentNullException>(() => ServiceMeshInstrumentationExtensions.AddServiceMeshInstrumentation((OpenTelemetry.Trace.TracerProviderBuilder)null!));
    }

    private static ServiceProvider Services() => new ServiceCollection()
        .AddMeshTelemetry()
        .Configure<ServiceMeshOptions>(options => options.Service = "orders")
        .BuildServiceProvider();
}
