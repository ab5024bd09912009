using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Tcp;

internal sealed partial class TcpInboundConnectionHandler
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "TCP inbound {Name}: connection from {Remote} ({Peer}) denied by AuthorizationPolicy: {Reason}{Since}.", EventName = "TcpInboundDenied")]
        public static partial void Denied(ILogger logger, string name, string remote, string peer, string reason, string since);

        [LoggerMessage(2, LogLevel.Warning, "TCP inbound {Name}: connection from {Remote} closed: the inbound policy of port {Port} has not arrived (or was removed){Since}.", EventName = "TcpInboundNoPolicy")]
        public static partial void NoPolicy(ILogger logger, string name, string remote, int port, string since);

        [LoggerMessage(3, LogLevel.Warning, "TCP inbound {Name}: the app at 127.0.0.1:{AppPort} cannot be reached: {Error}", EventName = "TcpInboundAppUnreachable")]
        public static partial void AppUnreachable(ILogger logger, string name, int appPort, string error);

        [LoggerMessage(4, LogLevel.Debug, "TCP inbound {Name}: connection from {Remote} ({Peer}) ended ({End}).", EventName = "TcpInboundClosed")]
        public static partial void Closed(ILogger logger, string name, string remote, string peer, TcpRelayEnd end);

        [LoggerMessage(5, LogLevel.Information, "TCP inbound {Name}: open connection from {Remote} ({Peer}) is now denied ({Reason}); closing it after {Drain}.", EventName = "TcpInboundDraining")]
        public static partial void Draining(ILogger logger, string name, string remote, string peer, string reason, TimeSpan drain);
    }
}
