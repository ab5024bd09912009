using Mesh.Client.Routing;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Http;

internal sealed partial class MeshHttpHandler
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Attempt to mesh service {Service} on endpoint {Endpoint} failed (status {StatusCode}).", EventName = "AttemptFailed")]
        public static partial void AttemptFailed(ILogger logger, string service, string endpoint, int statusCode, Exception? exception);

        [LoggerMessage(2, LogLevel.Warning, "Ejected endpoint {Endpoint} of mesh service {Service} (ejection multiplier {Multiplier}, {Ejected} ejected in the cluster).", EventName = "EndpointEjected")]
        public static partial void EndpointEjected(ILogger logger, string endpoint, string service, int multiplier, int ejected);

        [LoggerMessage(3, LogLevel.Debug, "Request to {Host} not routed ({Status}): {Message}", EventName = "NotRouted")]
        public static partial void NotRouted(ILogger logger, string host, RouteStatus status, string message);

        [LoggerMessage(4, LogLevel.Warning, "Request to cluster {Cluster} rejected: {Limit} {Value} reached (upstream overflow).", EventName = "Overflow")]
        public static partial void Overflow(ILogger logger, string cluster, string limit, int value);
    }
}
