using System.Diagnostics.Metrics;

namespace Mesh.Client;

/// <summary>
/// The mesh client's instruments, on the <c>Mesh.Client</c> meter (collect it with OpenTelemetry's
/// <c>AddMeter("Mesh.Client")</c> or <c>dotnet-counters monitor --counters Mesh.Client</c>).
/// </summary>
internal sealed class MeshClientMetrics
{
    public const string MeterName = "Mesh.Client";

    public MeshClientMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = meterFactory.Create(MeterName);
        TlsHandshakes = meter.CreateCounter<long>(
            "mesh.client.tls.handshakes",
            unit: "{handshake}",
            description: "mTLS handshakes of outbound mesh connections, by destination service; failed ones carry error.type.");
    }

    public Counter<long> TlsHandshakes { get; }
}
