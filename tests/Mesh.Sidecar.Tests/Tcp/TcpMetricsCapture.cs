using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Mesh.Client;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Sidecar.Tests.Tcp;

/// <summary>The mesh's telemetry services and a listener on their istio_tcp_* counters (or others, by name prefix).</summary>
internal sealed class TcpMetricsCapture : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, long Value, Dictionary<string, string?> Tags)> _measurements = new();

    public TcpMetricsCapture(string service, string prefix = "istio_tcp_")
    {
        Services = new ServiceCollection()
            .AddMetrics()
            .AddSingleton(Microsoft.Extensions.Options.Options.Create(new ServiceMeshOptions { Service = service }))
            .AddSingleton<MeshMetrics>()
            .AddSingleton<IstioRequestMetrics>()
            .BuildServiceProvider();
        var factory = Services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, factory) && instrument.Name.StartsWith(prefix, StringComparison.Ordinal))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var copy = new Dictionary<string, string?>();
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value as string;
            }

            _measurements.Enqueue((instrument.Name, value, copy));
        });
        _listener.Start();
        _ = Services.GetRequiredService<MeshMetrics>();
    }

    public ServiceProvider Services { get; }

    public IEnumerable<Dictionary<string, string?>> Tags => _measurements.Select(m => m.Tags).DistinctBy(t => string.Join(",", t.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}")));

    public long Sum(string name) => _measurements.Where(m => m.Name == name).Sum(m => m.Value);

    public async Task WaitForAsync(string name, long total)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (Sum(name) < total)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{name} reached {Sum(name)}, not {total}");
            await Task.Delay(20);
        }
    }

    public void Dispose()
    {
        _listener.Dispose();
        Services.Dispose();
    }
}
