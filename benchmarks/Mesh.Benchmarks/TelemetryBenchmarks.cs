using System.Collections.Immutable;
using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Benchmarks;

/// <summary>
/// Recording one request's Istio metrics (istio_requests_total, the duration and both byte histograms; for gRPC also the
/// two message counters) with a MeterListener attached, for each reporter; and the checks a request pays when nothing
/// listens and the access log is off (the default). Target: 0 bytes allocated per request. Also an outbound gRPC response
/// body (10 messages) read to its end through the metering wrapper that records the call there, against the same body
/// read unwrapped: the wrapper's cost.
/// </summary>
[MemoryDiagnoser]
public class TelemetryBenchmarks
{
    // The endpoint a request's last attempt went to, as istiod's endpoint metadata names it (the destination_* labels).
    private static readonly Mesh.Client.Discovery.EndpointWorkload? Upstream = Mesh.Client.Discovery.EndpointWorkload.Parse("orders-v1;default;orders;v1;");

    private const string Peer = "spiffe://cluster.local/ns/shop/sa/frontend";
    private ServiceProvider _listened = null!;
    private ServiceProvider _unlistened = null!;
    private IstioRequestMetrics _recorder = null!;
    private IstioRequestMetrics _silent = null!;
    private MeshAccessLog _accessLogOff = null!;
    private MeterListener _listener = null!;
    private MeshService _service = null!;
    private long _total;
    private byte[] _grpcBody = null!;

    [GlobalSetup]
    public void Setup()
    {
        _listened = Services();
        _unlistened = Services();
        _recorder = _listened.GetRequiredService<IstioRequestMetrics>();
        _silent = _unlistened.GetRequiredService<IstioRequestMetrics>();
        _accessLogOff = _unlistened.GetRequiredService<MeshAccessLog>();
        var scope = _listened.GetRequiredService<IMeterFactory>();
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, scope))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => _total += value);
        _listener.SetMeasurementEventCallback<double>((_, _, _, _) => { });
        _listener.Start();
        var cluster = new MeshCluster("outbound|80||orders.shop.svc.cluster.local", "orders.shop.svc.cluster.local", LoadBalancingPolicy.RoundRobin, [new MeshEndpoint("127.0.0.1", 8080, 1, true)]);
        _service = new MeshService("orders.shop.svc.cluster.local:80", "orders.shop.svc.cluster.local", 80, ImmutableArray.Create(new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])));

        // Ten 100-byte messages, as a server-streaming call's body.
        _grpcBody = new byte[10 * 105];
        for (var i = 0; i < 10; i++)
        {
            _grpcBody[(i * 105) + 4] = 100;
        }

        // Warm: each label set is built once, on its first request; the benchmark measures every request after it.
        Source_Listened();
        Source_Grpc_Listened();
        Destination_Listened();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _listener.Dispose();
        _listened.Dispose();
        _unlistened.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Source_Listened() =>
        _recorder.RecordOutbound(_service, Upstream, upstreamPrincipal: null, grpc: false, 200, -1, ResponseFlags.None, 1.25, 128, 512);

    [Benchmark]
    public void Source_Grpc_Listened() =>
        _recorder.RecordOutbound(_service, Upstream, upstreamPrincipal: null, grpc: true, 200, 0, ResponseFlags.None, 1.25, 128, 512, requestMessages: 1, responseMessages: 10);

    [Benchmark]
    public void Destination_Listened() =>
        _recorder.RecordInbound(Peer, mutualTls: true, grpc: true, 200, 0, ResponseFlags.None, 1.25, 128, 512);

    /// <summary>What a request pays when nothing listens: the one check, and nothing recorded.</summary>
    [Benchmark]
    public bool Unlistened_Check() => _silent.Enabled;

    /// <summary>A gRPC response body read to its end as Grpc.Net.Client reads it, without the mesh's wrapper.</summary>
    [Benchmark]
    public async Task<long> GrpcBody_Unmetered()
    {
        using var response = GrpcResponse();
        return await ReadToEndAsync(response.Content);
    }

    /// <summary>The same body through the metering wrapper: counted, and the call recorded at its end.</summary>
    [Benchmark]
    public async Task<long> GrpcBody_Metered()
    {
        using var response = GrpcResponse();
        response.Content = new MeteredGrpcResponseContent(response, _recorder, _service, Upstream, upstreamPrincipal: null, request: null, TimeProvider.System, TimeProvider.System.GetTimestamp(), ResponseFlags.None);
        return await ReadToEndAsync(response.Content);
    }

    private HttpResponseMessage GrpcResponse()
    {
        var response = new HttpResponseMessage(System.Net.HttpStatusCode.OK) { Content = new ByteArrayContent(_grpcBody) };
        response.TrailingHeaders.TryAddWithoutValidation("grpc-status", "0");
        return response;
    }

    private static async Task<long> ReadToEndAsync(HttpContent content)
    {
        var stream = await content.ReadAsStreamAsync();
        var buffer = new byte[256];
        long total = 0;
        int read;
        while ((read = await stream.ReadAsync(buffer)) > 0)
        {
            total += read;
        }

        return total;
    }

    /// <summary>What a request pays for the access log while it is off (Mesh:Telemetry:AccessLog:Enabled=false): one field read.</summary>
    [Benchmark]
    public bool AccessLogOff_Check() => _accessLogOff.Enabled;

    private static ServiceProvider Services() => new ServiceCollection()
        .AddMeshTelemetry()
        .Configure<ServiceMeshOptions>(options => options.Service = "orders")
        .BuildServiceProvider();
}
