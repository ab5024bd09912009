using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Inbound;

internal sealed partial class InboundForwarder
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 1, EventName = "InboundForwardFailed", Level = LogLevel.Warning, Message = "Forwarding an inbound request to the app at {Destination} failed: {Error}")]
        public static partial void ForwardFailed(ILogger logger, string destination, ForwarderError error, Exception? exception);
    }
}
