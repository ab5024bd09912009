using System.Collections.Concurrent;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// A logger provider that keeps the access log's entries (category <see cref="MeshTelemetry.AccessLogCategory"/>) with
/// their structured properties, as a structured sink (OpenTelemetry's log exporter, a JSON console) receives them.
/// </summary>
internal sealed class AccessLogCapture(LogLevel minimum = LogLevel.Information) : ILoggerProvider
{
    public ConcurrentQueue<Entry> Entries { get; } = new();

    public LogLevel Minimum { get; } = minimum;

    public IReadOnlyList<Entry> Of(string reporter) => [.. Entries.Where(e => Equals(e.Fields["reporter"], reporter))];

    public ILogger CreateLogger(string categoryName) => new CaptureLogger(this, categoryName);

    public void Dispose()
    {
    }

    internal sealed record Entry(EventId EventId, LogLevel Level, string Message, IReadOnlyDictionary<string, object?> Fields)
    {
        public string? Text(string key) => Fields[key]?.ToString();
    }

    private sealed class CaptureLogger(AccessLogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => category == MeshTelemetry.AccessLogCategory && logLevel >= owner.Minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var fields = new Dictionary<string, object?>(StringComparer.Ordinal);
            if (state is IReadOnlyList<KeyValuePair<string, object?>> properties)
            {
                foreach (var (key, value) in properties)
                {
                    fields[key] = value;
                }
            }

            owner.Entries.Enqueue(new Entry(eventId, logLevel, formatter(state, exception), fields));
        }
    }
}
