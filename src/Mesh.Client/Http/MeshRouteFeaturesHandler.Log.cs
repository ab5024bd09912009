using Microsoft.Extensions.Logging;

namespace Mesh.Client.Http;

internal sealed partial class MeshRouteFeaturesHandler
{
    private static partial class Log
    {
        [LoggerMessage(20, LogLevel.Debug, "Fault injection delayed a request to mesh service {Service} by {Delay}.", EventName = "FaultDelayed")]
        public static partial void FaultDelayed(ILogger logger, string service, TimeSpan delay);

        [LoggerMessage(21, LogLevel.Debug, "Fault injection aborted a request to mesh service {Service} with status {Status}.", EventName = "FaultAborted")]
        public static partial void FaultAborted(ILogger logger, string service, int status);

        [LoggerMessage(22, LogLevel.Debug, "Mirrored a request to mesh service {Service} to cluster {Cluster} (status {Status}, discarded).", EventName = "Mirrored")]
        public static partial void Mirrored(ILogger logger, string service, string cluster, int status);

        [LoggerMessage(23, LogLevel.Debug, "Did not mirror a request to mesh service {Service} to cluster {Cluster}: {Reason}.", EventName = "MirrorSkipped")]
        public static partial void MirrorSkipped(ILogger logger, string service, string cluster, string reason);

        [LoggerMessage(24, LogLevel.Debug, "A mirrored request to mesh service {Service} (cluster {Cluster}) failed; the caller is not affected.", EventName = "MirrorFailed")]
        public static partial void MirrorFailed(ILogger logger, string service, string cluster, Exception exception);
    }
}
