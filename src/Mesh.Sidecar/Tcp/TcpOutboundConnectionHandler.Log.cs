using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Tcp;

internal sealed partial class TcpOutboundConnectionHandler
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Warning, "TCP tunnel {Tunnel}: connection closed, {Reason}.", EventName = "TcpOutboundUnknownService")]
        public static partial void UnknownService(ILogger logger, string tunnel, string reason);

        [LoggerMessage(2, LogLevel.Warning, "TCP tunnel {Tunnel}: cluster {Cluster} has no endpoint to connect to; connection closed (UH).", EventName = "TcpOutboundNoEndpoint")]
        public static partial void NoEndpoint(ILogger logger, string tunnel, string cluster);

        [LoggerMessage(3, LogLevel.Warning, "TCP tunnel {Tunnel}: connect attempt {Attempt} to {Endpoint} failed: {Error}", EventName = "TcpOutboundConnectFailed")]
        public static partial void ConnectFailed(ILogger logger, string tunnel, string endpoint, int attempt, string error);

        [LoggerMessage(4, LogLevel.Debug, "TCP tunnel {Tunnel}: connected to {Endpoint} ({Peer}).", EventName = "TcpOutboundConnected")]
        public static partial void Connected(ILogger logger, string tunnel, string endpoint, string peer);

        [LoggerMessage(5, LogLevel.Debug, "TCP tunnel {Tunnel}: connection to {Endpoint} ended ({End}).", EventName = "TcpOutboundClosed")]
        public static partial void Closed(ILogger logger, string tunnel, string endpoint, TcpRelayEnd end);
    }
}
