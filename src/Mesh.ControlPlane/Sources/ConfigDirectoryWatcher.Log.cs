namespace Mesh.ControlPlane.Sources;

internal sealed partial class ConfigDirectoryWatcher
{
    [LoggerMessage(EventId = 1, EventName = "WatchingConfigFolder", Level = LogLevel.Information, Message = "Watching config folder {Directory}")]
    private static partial void LogWatching(ILogger logger, string directory);

    [LoggerMessage(EventId = 2, EventName = "ConfigWatcherFailed", Level = LogLevel.Warning, Message = "Config folder watcher failed; reloading")]
    private static partial void LogWatcherError(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3, EventName = "ConfigReloadFailed", Level = LogLevel.Error, Message = "Reading config folder {Directory} failed unexpectedly (a bug; please report it); the last good config keeps serving")]
    private static partial void LogReloadFailed(ILogger logger, string directory, Exception exception);
}
