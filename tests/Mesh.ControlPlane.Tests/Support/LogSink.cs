using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Mesh.ControlPlane.Tests.Support;

/// <summary>One entry the host logged: its level, event name, formatted message and exception.</summary>
internal sealed record LogEntry(LogLevel Level, string? EventName, string Message, Exception? Exception);

/// <summary>Collects every log entry of a host it is added to (as an <see cref="ILoggerProvider"/>), for tests to read.</summary>
internal sealed class LogSink : ILoggerProvider
{
    private readonly ConcurrentQueue<LogEntry> _entries = new();

    public IReadOnlyList<LogEntry> Entries => [.. _entries];

    /// <summary>Gets each entry as "Level message" and its exception, if any: what tests search with Contains.</summary>
    public IEnumerable<string> Lines => _entries.Select(e => $"{e.Level} {e.Message}{e.Exception}");

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose()
    {
    }

    private sealed class Logger(LogSink sink) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            sink._entries.Enqueue(new LogEntry(logLevel, eventId.Name, formatter(state, exception), exception));
    }
}
