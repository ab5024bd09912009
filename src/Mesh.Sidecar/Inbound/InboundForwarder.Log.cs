using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Inbound;

internal sealed partial class InboundForwarder
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 1, EventName = "InboundForwardFailed", Level = LogLevel.Warning, Message = "Forwarding an inbound request to the app at {Destination} failed: {Error}")]
        public static partial void ForwardFailed(ILogger logger, string destination, ForwarderError error, Exception? exception);

        [LoggerMessage(EventId = 2, EventName = "InboundUpgradeDraining", Level = LogLevel.Information, Message = "Upgraded inbound request {Method} {Path} from {Remote} ({Peer}) is now denied ({Reason}); closing it after {Drain}.")]
        public static partial void Draining(ILogger logger, string method, string path, string remote, string peer, string reason, TimeSpan drain);
    }
}
