using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Mesh.LoadTest;

/// <summary>
/// <c>--telemetry</c>: OpenTelemetry listening for the whole run, as an instrumented app has it — a MeterProvider with
/// OpenTelemetry's own HttpClient instrumentation and the mesh's meter, and a TracerProvider sampling 10 % of traces
/// (parent-based) with both. Every case runs under the same providers, so the plain HttpClient is the fair baseline:
/// instrumented by OpenTelemetry's HttpClient instrumentation, as the issue asks. Exporters take each batch and drop it.
/// </summary>
internal sealed class LoadTelemetry : IDisposable
{
    private readonly MeterProvider _meters;
    private readonly TracerProvider _traces;

    private LoadTelemetry(MeterProvider meters, TracerProvider traces)
    {
        _meters = meters;
        _traces = traces;
    }

    public static LoadTelemetry Start() => new(
        Sdk.CreateMeterProviderBuilder()
            .AddHttpClientInstrumentation()
            .AddServiceMeshInstrumentation()
            .AddReader(new PeriodicExportingMetricReader(new Discard<Metric>(), exportIntervalMilliseconds: 5_000))
            .Build()!,
        Sdk.CreateTracerProviderBuilder()
            .SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(0.1)))
            .AddHttpClientInstrumentation()
            .AddServiceMeshInstrumentation()
            .AddProcessor(new BatchActivityExportProcessor(new Discard<Activity>()))
            .Build()!);

    public void Dispose()
    {
        _traces.Dispose();
        _meters.Dispose();
    }

    /// <summary>Reads every item of a batch and keeps nothing.</summary>
    private sealed class Discard<T> : BaseExporter<T>
        where T : class
    {
        public long Exported { get; private set; }

        public override ExportResult Export(in Batch<T> batch)
        {
            foreach (var _ in batch)
            {
                Exported++;
            }

            return ExportResult.Success;
        }
    }
}
