using Microsoft.Extensions.Logging;

namespace Mesh.Client.Xds;

internal sealed partial class ControlPlaneChannel
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "Control plane {Failed} is unreachable ({Reason}); failing over to {Next}.", EventName = "ControlPlaneFailover")]
        public static partial void FailedOver(ILogger logger, Uri failed, Uri next, string reason);
    }
}
