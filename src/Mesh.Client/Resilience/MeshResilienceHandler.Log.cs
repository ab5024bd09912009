using Microsoft.Extensions.Logging;

namespace Mesh.Client.Resilience;

internal sealed partial class MeshResilienceHandler
{
    private static partial class Log
    {
        [LoggerMessage(10, LogLevel.Debug, "Retrying a call to mesh service {Service} (retry {Retry}, status {StatusCode}, {Reason}).", EventName = "Retrying")]
        public static partial void Retrying(ILogger logger, string service, int retry, int statusCode, string reason);

        [LoggerMessage(11, LogLevel.Warning, "Circuit of mesh service {Service} opened: calls are rejected for {BreakDuration}.", EventName = "CircuitOpened")]
        public static partial void CircuitOpened(ILogger logger, string service, TimeSpan breakDuration);

        [LoggerMessage(13, LogLevel.Warning, "Ejected endpoint {Endpoint} of mesh service {Service} after attempts that timed out.", EventName = "EjectedAfterTimeouts")]
        public static partial void EjectedAfterTimeouts(ILogger logger, string endpoint, string service);

        [LoggerMessage(12, LogLevel.Debug, "Retry of a call to mesh service {Service} not sent: the retry budget of cluster {Cluster} is spent ({Retries} retries of {Requests} requests in flight).", EventName = "RetryBudgetExhausted")]
        public static partial void RetryBudgetExhausted(ILogger logger, string service, string cluster, int retries, int requests);
    }
}
