using Mesh.Client.Telemetry;

namespace Mesh.Sidecar.Tcp;

/// <summary>
/// Istio's four TCP metrics for one connection, with the label set built once for it (<see cref="IstioRequestMetrics"/>
/// builds the labels, <see cref="MeshMetrics"/> holds the counters). Bytes are counted as they move, so long connections
/// show traffic before they close (Istio reports deltas every few seconds).
/// </summary>
internal sealed class TcpConnectionMetrics(MeshMetrics metrics, KeyValuePair<string, object?>[] labels)
{
    public void Opened() => metrics.TcpConnectionsOpened.Add(1, labels);

    public void Closed() => metrics.TcpConnectionsClosed.Add(1, labels);

    /// <summary>Bytes received from the downstream side (the side that opened the connection).</summary>
    public void Received(long bytes) => metrics.TcpReceivedBytes.Add(bytes, labels);

    /// <summary>Bytes sent to the downstream side.</summary>
    public void Sent(long bytes) => metrics.TcpSentBytes.Add(bytes, labels);
}
