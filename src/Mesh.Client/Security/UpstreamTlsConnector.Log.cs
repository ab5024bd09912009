using System.Security.Authentication;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

internal sealed partial class UpstreamTlsConnector
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "mTLS connection to {Service} at {EndPoint}: peer {PeerId}, {Protocol}, ALPN {Alpn}.", EventName = "Handshake")]
        public static partial void Handshake(ILogger logger, string service, string endPoint, string peerId, SslProtocols protocol, string alpn);
    }
}
