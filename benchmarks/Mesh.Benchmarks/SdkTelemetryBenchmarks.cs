using System.Collections.Immutable;
using BenchmarkDotNet.Attributes;
using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Mesh.Benchmarks;

/// <summary>
/// Recording one request's Istio metrics into OpenTelemetry's SDK (a MeterProvider with
/// <c>AddServiceMeshInstrumentation()</c>, as an app exporting them has it), against recording .NET's own
/// <c>http.client.request.duration</c>-shaped measurement (one histogram, five tags) into the same SDK: what Istio's
/// 25-label series cost where the SDK aggregates them (its tag lookup hashes every key and value of each measurement).
/// </summary>
[MemoryDiagnoser]
public class SdkTelemetryBenchmarks
{
    // The endpoint a request's last attempt went to, as istiod's endpoint metadata names it (the destination_* labels).
    private static readonly Mesh.Client.Discovery.EndpointWorkload? Peer = Mesh.Client.Discovery.EndpointWorkload.Parse("orders-v1;default;orders;v1;");

    private ServiceProvider _services = null!;
    private MeterProvider _provider = null!;
    private IstioRequestMetrics _recorder = null!;
    private MeshService _service = null!;
    private System.Diagnostics.Metrics.Meter _http = null!;
    private System.Diagnostics.Metrics.Histogram<double> _httpDuration = null!;
    private KeyValuePair<string, object?>[] _httpTags = null!;

    [GlobalSetup]
    public void Setup()
    {
        _services = new ServiceCollection()
            .AddMeshTelemetry()
            .Configure<ServiceMeshOptions>(options => options.Service = "frontend")
            .BuildServiceProvider();
        _http = new System.Diagnostics.Metrics.Meter("Bench.Http");
        _httpDuration = _http.CreateHistogram<double>("http.client.request.duration", "s");
        _httpTags = [new("http.request.method", "GET"), new("http.response.status_code", 200), new("network.protocol.version", "1.1"), new("server.address", "backend"), new("url.scheme", "http")];
        _provider = Sdk.CreateMeterProviderBuilder()
            .AddServiceMeshInstrumentation()
            .AddMeter("Bench.Http")
            .AddReader(new BaseExportingMetricReader(new NullExporter()))
            .Build()!;

        // The SDK listens to the meters of the app's IMeterFactory through AddServiceMeshInstrumentation's meter name.
        _recorder = _services.GetRequiredService<IstioRequestMetrics>();
        var cluster = new MeshCluster("outbound|80||orders.shop.svc.cluster.local", "orders.shop.svc.cluster.local", LoadBalancingPolicy.RoundRobin, [new MeshEndpoint("127.0.0.1", 8080, 1, true)]);
        _service = new MeshService("orders.shop.svc.cluster.local:80", "orders.shop.svc.cluster.local", 80, ImmutableArray.Create(new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])));
        Istio_Source();
        Http_OneHistogram();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _provider.Dispose();
        _services.Dispose();
        _http.Dispose();
    }

    /// <summary>One HTTP request's four Istio instruments, 25 labels each (reporter=source).</summary>
    [Benchmark]
    public void Istio_Source() =>
        _recorder.RecordOutbound(_service, Peer, upstreamPrincipal: null, grpc: false, 200, -1, ResponseFlags.None, 1.25, 128, 512);

    /// <summary>One histogram with HttpClient's five tags, as OpenTelemetry's HttpClient instrumentation records per request.</summary>
    [Benchmark(Baseline = true)]
    public void Http_OneHistogram() => _httpDuration.Record(0.00125, _httpTags.AsSpan());

    private sealed class NullExporter : BaseExporter<Metric>
    {
        public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
    }
}
