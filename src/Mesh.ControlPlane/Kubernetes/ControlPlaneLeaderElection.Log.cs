using Microsoft.Extensions.Logging;

namespace Mesh.ControlPlane.Kubernetes;

internal sealed partial class ControlPlaneLeaderElection
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Became the leader on Lease {Namespace}/{Lease} as {Identity}.", EventName = "LeaderStarted")]
        public static partial void StartedLeading(ILogger logger, string @namespace, string lease, string identity);

        [LoggerMessage(2, LogLevel.Warning, "Lost the leadership on Lease {Namespace}/{Lease} ({Identity}): the Lease was not renewed in time.", EventName = "LeaderStopped")]
        public static partial void StoppedLeading(ILogger logger, string @namespace, string lease, string identity);

        [LoggerMessage(3, LogLevel.Information, "Lease {Namespace}/{Lease} is held by {Holder}.", EventName = "LeaderObserved")]
        public static partial void NewLeader(ILogger logger, string @namespace, string lease, string holder);

        [LoggerMessage(4, LogLevel.Warning, "Leader election on Lease {Namespace}/{Lease} failed: {Error}; retrying.", EventName = "LeaderElectionFailed")]
        public static partial void ElectionFailed(ILogger logger, string @namespace, string lease, string error, Exception exception);
    }
}
