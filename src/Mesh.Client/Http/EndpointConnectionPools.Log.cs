using Microsoft.Extensions.Logging;

namespace Mesh.Client.Http;

internal sealed partial class EndpointConnectionPools
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Disposed the connection pool of endpoint {Authority}: it left the mesh snapshot.", EventName = "PoolDisposed")]
        public static partial void PoolDisposed(ILogger logger, string authority);
    }
}
