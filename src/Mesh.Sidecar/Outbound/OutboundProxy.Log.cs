using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Outbound;

internal sealed partial class OutboundProxy
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 11, EventName = "OutboundForwardFailed", Level = LogLevel.Information, Message = "An outbound request for {Host} failed: {Error}: {Reason}")]
        public static partial void ForwardFailed(ILogger logger, string host, ForwarderError error, string? reason);
    }
}
