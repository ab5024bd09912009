using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

internal sealed partial class MeshInboundConnectionMiddleware
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Refused {Kind} connection from {Peer} to port {Port} (PeerAuthentication {Mode}).", EventName = "Refused")]
        public static partial void Refused(ILogger logger, string kind, string peer, int port, PeerAuthenticationMode mode);

        [LoggerMessage(2, LogLevel.Debug, "Refused mTLS handshake from {Peer} on port {Port}: {Error}", EventName = "HandshakeRefused")]
        public static partial void HandshakeRefused(ILogger logger, string peer, int port, string error);

        [LoggerMessage(3, LogLevel.Debug, "Closing the open {Kind} connection from {Peer} on port {Port}: its PeerAuthentication is now {Mode}.", EventName = "Closing")]
        public static partial void Closing(ILogger logger, string kind, string peer, int port, PeerAuthenticationMode mode);

        [LoggerMessage(4, LogLevel.Information, "PeerAuthentication changed: closing {Count} open connection(s) the new mode refuses (requests in flight may finish for {Drain}).", EventName = "Drained")]
        public static partial void Drained(ILogger logger, int count, TimeSpan drain);
    }
}
