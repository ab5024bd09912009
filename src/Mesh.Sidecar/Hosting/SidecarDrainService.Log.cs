using Microsoft.Extensions.Logging;

namespace Mesh.Sidecar.Hosting;

internal sealed partial class SidecarDrainService
{
    private static partial class Log
    {
        [LoggerMessage(EventId = 21, EventName = "Draining", Level = LogLevel.Information, Message = "Left the mesh; draining for {Seconds} s before the listeners stop")]
        public static partial void Draining(ILogger logger, double seconds);

        [LoggerMessage(EventId = 22, EventName = "Drained", Level = LogLevel.Information, Message = "Drain finished; stopping the listeners and finishing requests in flight")]
        public static partial void Drained(ILogger logger);
    }
}
