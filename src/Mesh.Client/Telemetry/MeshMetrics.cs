using System.Diagnostics.Metrics;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The mesh client's instruments, all on the one <see cref="MeshTelemetry.MeterName"/> meter, created through
/// <see cref="IMeterFactory"/>: Istio's standard request metrics under Istio's own names and units (OpenTelemetry's
/// Prometheus exporter keeps a name that already ends in its unit or <c>_total</c>, so the series come out as Istio's),
/// and the client's own <c>mesh.client.*</c> instruments.
/// </summary>
internal sealed class MeshMetrics
{
    public const string MeterName = MeshTelemetry.MeterName;

    public const string RequestsName = "istio_requests_total";
    public const string RequestDurationName = "istio_request_duration_milliseconds";
    public const string RequestBytesName = "istio_request_bytes";
    public const string ResponseBytesName = "istio_response_bytes";
    public const string RequestMessagesName = "istio_request_messages_total";
    public const string ResponseMessagesName = "istio_response_messages_total";
    public const string TcpSentBytesName = "istio_tcp_sent_bytes_total";
    public const string TcpReceivedBytesName = "istio_tcp_received_bytes_total";
    public const string TcpConnectionsOpenedName = "istio_tcp_connections_opened_total";
    public const string TcpConnectionsClosedName = "istio_tcp_connections_closed_total";

    /// <summary>Envoy's default histogram buckets, which Istio's three request histograms use (Envoy histogram_impl.cc).</summary>
    internal static readonly IReadOnlyList<double> EnvoyBuckets =
        [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

    // Every Istio proxy's istio_build{component="proxy",tag="<version>"} 1, which Istio's mesh dashboard sums by component
    // and tag as "Istio Component Versions": the mesh in an app is its proxy, at this library's version.
    private static readonly KeyValuePair<string, object?>[] BuildTags =
    [
        new("component", "proxy"),
        new("tag", Mesh.Xds.Telemetry.SemanticVersion.Of(typeof(MeshMetrics).Assembly)),
    ];

    public MeshMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = meterFactory.Create(MeterName);
        meter.CreateObservableGauge("istio_build", static () => new Measurement<int>(1, BuildTags), description: "Build information: the component (proxy) and its version tag (Istio's proxies' metric).");
        TlsHandshakes = meter.CreateCounter<long>(
            "mesh.client.tls.handshakes",
            unit: "{handshake}",
            description: "mTLS handshakes of outbound mesh connections, by destination service; failed ones carry error.type.");
        Requests = meter.CreateCounter<long>(
            RequestsName,
            unit: null,
            description: "Requests, once each at its end, as Istio's istio_requests_total (reporter source: this app's calls; destination: calls to it).");
        RequestDuration = meter.CreateHistogram<double>(
            RequestDurationName,
            unit: "ms",
            description: "Request duration, as Istio's istio_request_duration_milliseconds.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = EnvoyBuckets });
        RequestBytes = meter.CreateHistogram<double>(
            RequestBytesName,
            unit: "By",
            description: "Request body size, as Istio's istio_request_bytes.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = EnvoyBuckets });
        ResponseBytes = meter.CreateHistogram<double>(
            ResponseBytesName,
            unit: "By",
            description: "Response body size, as Istio's istio_response_bytes.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = EnvoyBuckets });

        // "{message}" is an annotation: the exporter appends no unit word, and the name already ends in _total.
        RequestMessages = meter.CreateCounter<long>(
            RequestMessagesName,
            unit: "{message}",
            description: "gRPC request messages, as Istio's istio_request_messages_total (counted from the gRPC framing of the request body).");
        ResponseMessages = meter.CreateCounter<long>(
            ResponseMessagesName,
            unit: "{message}",
            description: "gRPC response messages, as Istio's istio_response_messages_total (counted from the gRPC framing of the response body).");

        // Opaque TCP (the sidecar's tunnels). No unit: the names already say what they count, and the exporter keeps them.
        TcpSentBytes = meter.CreateCounter<long>(
            TcpSentBytesName,
            unit: null,
            description: "Bytes sent to the downstream side of a TCP connection, as Istio's istio_tcp_sent_bytes_total.");
        TcpReceivedBytes = meter.CreateCounter<long>(
            TcpReceivedBytesName,
            unit: null,
            description: "Bytes received from the downstream side of a TCP connection, as Istio's istio_tcp_received_bytes_total.");
        TcpConnectionsOpened = meter.CreateCounter<long>(
            TcpConnectionsOpenedName,
            unit: null,
            description: "TCP connections opened, as Istio's istio_tcp_connections_opened_total.");
        TcpConnectionsClosed = meter.CreateCounter<long>(
            TcpConnectionsClosedName,
            unit: null,
            description: "TCP connections closed, as Istio's istio_tcp_connections_closed_total.");
    }

    public Counter<long> TlsHandshakes { get; }

    public Counter<long> TcpSentBytes { get; }

    public Counter<long> TcpReceivedBytes { get; }

    public Counter<long> TcpConnectionsOpened { get; }

    public Counter<long> TcpConnectionsClosed { get; }

    public Counter<long> Requests { get; }

    public Histogram<double> RequestDuration { get; }

    public Histogram<double> RequestBytes { get; }

    public Histogram<double> ResponseBytes { get; }

    public Counter<long> RequestMessages { get; }

    public Counter<long> ResponseMessages { get; }

    /// <summary>Gets whether anything listens to a request metric: when not, the request paths skip timestamps and labels.</summary>
    public bool RequestsEnabled => Requests.Enabled || RequestDuration.Enabled || RequestBytes.Enabled || ResponseBytes.Enabled || MessagesEnabled;

    /// <summary>Gets whether anything listens to a gRPC message counter: when not, gRPC bodies are not inspected.</summary>
    public bool MessagesEnabled => RequestMessages.Enabled || ResponseMessages.Enabled;

    /// <summary>Records one finished request with a cached label set. Allocates nothing.</summary>
    public void RecordRequest(ReadOnlySpan<KeyValuePair<string, object?>> labels, double milliseconds, long requestBytes, long responseBytes)
    {
        if (Requests.Enabled)
        {
            Requests.Add(1, labels);
        }

        if (RequestDuration.Enabled)
        {
            RequestDuration.Record(milliseconds, labels);
        }

        if (RequestBytes.Enabled)
        {
            RequestBytes.Record(requestBytes, labels);
        }

        if (ResponseBytes.Enabled)
        {
            ResponseBytes.Record(responseBytes, labels);
        }
    }

    /// <summary>Records one gRPC call's message counts with its cached label set (Istio's peer labels only). Allocates nothing.</summary>
    public void RecordMessages(ReadOnlySpan<KeyValuePair<string, object?>> labels, long requestMessages, long responseMessages)
    {
        if (RequestMessages.Enabled)
        {
            RequestMessages.Add(requestMessages, labels);
        }

        if (ResponseMessages.Enabled)
        {
            ResponseMessages.Add(responseMessages, labels);
        }
    }
}
