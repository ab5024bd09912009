using System.Diagnostics.Tracing;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.Samples;

/// <summary>
/// Makes a failing OTLP export visible in the app's own log, without flooding it: the first failure is one warning that
/// names the endpoint and the reason, and later failures are counted and reported in at most one warning per
/// <see cref="Interval"/>.
/// </summary>
/// <remarks>
/// OpenTelemetry .NET's OTLP exporter reports a failed export only on its <c>EventSource</c>
/// (<see cref="ExporterEventSource"/>), which nobody reads unless they run <c>dotnet-trace</c> or the SDK's
/// self-diagnostics file, so a down collector would drop every span and metric silently. What 1.21 writes there, seen in
/// <c>DemoTelemetryTests</c>: an endpoint refusing connections gives <c>FailedToReachCollector</c> (Error) over HTTP and
/// <c>TransientHttpError</c> (Warning, then retried) over gRPC; a hung endpoint gives <c>RequestTimedOut</c> (Warning).
/// Every Warning or worse from that source counts, so a renamed or new failure event is not missed. Export runs on the
/// SDK's own threads (batch processor, periodic reader): this listener never sits on a request's path.
/// </remarks>
public sealed partial class OtlpExportFailureLog : EventListener, IHostedService
{
    /// <summary>The name of the OTLP exporter's <c>EventSource</c> in OpenTelemetry .NET.</summary>
    public const string ExporterEventSource = "OpenTelemetry-Exporter-OpenTelemetryProtocol";

    // EventListener's constructor calls OnEventSourceCreated for sources that already exist, before this class's
    // constructor body runs (field initializers have run by then); those calls only enable events, and OnEventWritten
    // ignores events until _logger is set.
    private readonly object _gate = new();
    private readonly TimeProvider _time;
    private readonly string _endpoint;
    private readonly ILogger? _logger;
    private DateTimeOffset _nextReport;
    private long _suppressed;
    private bool _reported;

    /// <summary>Creates the listener; it reports through <paramref name="logger"/> from its construction on.</summary>
    /// <param name="logger">Where the warnings go.</param>
    /// <param name="endpoint">The configured OTLP endpoint, named in the warning.</param>
    /// <param name="time">The clock of the rate limit.</param>
    public OtlpExportFailureLog(ILogger<OtlpExportFailureLog> logger, string endpoint, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(logger);
        _time = time ?? TimeProvider.System;
        _endpoint = endpoint ?? "";
        _logger = logger;
    }

    /// <summary>The longest a failing export goes unreported after its first warning: at most one warning per interval.</summary>
    public static TimeSpan Interval { get; } = TimeSpan.FromMinutes(5);

    /// <inheritdoc/>
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc/>
    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    /// <summary>Counts one failed export and writes a warning when none was written in the last <see cref="Interval"/>.</summary>
    /// <param name="reason">What the exporter said.</param>
    public void OnExportFailed(string reason)
    {
        var logger = _logger;
        if (logger is null)
        {
            return;
        }

        long suppressed;
        bool first;
        lock (_gate)
        {
            var now = _time.GetUtcNow();
            if (_reported && now < _nextReport)
            {
                _suppressed++;
                return;
            }

            first = !_reported;
            suppressed = _suppressed;
            _suppressed = 0;
            _reported = true;
            _nextReport = now + Interval;
        }

        if (first)
        {
            LogFirstFailure(logger, _endpoint, Shorten(reason), Interval);
        }
        else
        {
            LogStillFailing(logger, _endpoint, suppressed + 1, Interval, Shorten(reason));
        }
    }

    /// <inheritdoc/>
    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == ExporterEventSource)
        {
            EnableEvents(eventSource, EventLevel.Warning);
        }
    }

    /// <inheritdoc/>
    protected override void OnEventWritten(EventWrittenEventArgs eventData)
    {
        if (eventData.Level is EventLevel.Warning or EventLevel.Error or EventLevel.Critical && eventData.EventSource.Name == ExporterEventSource)
        {
            OnExportFailed(Describe(eventData));
        }
    }

    private static string Describe(EventWrittenEventArgs eventData)
    {
        if (eventData.Message is { Length: > 0 } message && eventData.Payload is { Count: > 0 } payload)
        {
            try
            {
                return string.Format(System.Globalization.CultureInfo.InvariantCulture, message, [.. payload]);
            }
            catch (FormatException)
            {
                // A message whose placeholders do not match the payload: fall through to the raw payload.
            }
        }

        return $"{eventData.EventName}: {string.Join("; ", eventData.Payload ?? [])}";
    }

    // The exporter's messages carry the whole exception with its stack; the first line says what failed.
    private static string Shorten(string reason)
    {
        var end = reason.IndexOf('\n', StringComparison.Ordinal);
        return (end < 0 ? reason : reason[..end]).TrimEnd('\r', '.', ' ');
    }

    [LoggerMessage(1, LogLevel.Warning, "OTLP export to {Endpoint} failed: {Reason}. Telemetry may be dropped (requests are not affected); further failures are reported at most once every {Interval}.", EventName = "OtlpExportFailed")]
    private static partial void LogFirstFailure(ILogger logger, string endpoint, string reason, TimeSpan interval);

    [LoggerMessage(2, LogLevel.Warning, "OTLP export to {Endpoint} still failing: {Failures} failure(s) reported by the exporter since the last warning, {Interval} or more ago; the latest: {Reason}.", EventName = "OtlpExportStillFailing")]
    private static partial void LogStillFailing(ILogger logger, string endpoint, long failures, TimeSpan interval, string reason);
}
