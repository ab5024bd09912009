using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Mesh.Client.Telemetry;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// A MeterListener on Istio's request instruments of one service provider's IMeterFactory (tests run in parallel, each
/// with its own provider), keeping every measurement with its labels.
/// </summary>
internal sealed class IstioMetricsListener : IDisposable
{
    private readonly MeterListener _listener;

    public IstioMetricsListener(IMeterFactory scope)
    {
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, scope) && instrument.Name.StartsWith("istio_", StringComparison.Ordinal))
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.Start();
    }

    public ConcurrentQueue<Measurement> Measurements { get; } = new();

    /// <summary>The <c>istio_requests_total</c> increments, each with its labels.</summary>
    public IReadOnlyList<Measurement> Requests => [.. Measurements.Where(m => m.Instrument == MeshMetrics.RequestsName)];

    public IReadOnlyList<Measurement> Of(string instrument) => [.. Measurements.Where(m => m.Instrument == instrument)];

    public void Dispose() => _listener.Dispose();

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, tagValue) in tags)
        {
            Assert.True(labels.TryAdd(key, (string)tagValue!), $"label {key} twice");
        }

        Measurements.Enqueue(new Measurement(instrument.Name, value, labels));
    }

    internal sealed record Measurement(string Instrument, double Value, IReadOnlyDictionary<string, string> Labels);
}
