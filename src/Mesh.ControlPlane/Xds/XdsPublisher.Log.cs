namespace Mesh.ControlPlane.Xds;

internal sealed partial class XdsPublisher
{
    [LoggerMessage(EventId = 1, EventName = "Snapshot", Level = LogLevel.Debug, Message = "xDS snapshot {Version}: {Clusters} clusters, {Registrations} registrations")]
    private static partial void LogSnapshot(ILogger logger, long version, int clusters, int registrations);

    [LoggerMessage(EventId = 2, EventName = "RefreshFailed", Level = LogLevel.Warning, Message = "Reading a config source before translation failed; the last good config keeps serving")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3, EventName = "RefreshBug", Level = LogLevel.Error, Message = "Reading a config source before translation failed unexpectedly (a bug; please report it); the last good config keeps serving")]
    private static partial void LogRefreshBug(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 4, EventName = "TranslationFailed", Level = LogLevel.Error, Message = "Translating model version {ModelVersion} to xDS failed (a bug; please report it); the last good snapshot keeps serving")]
    private static partial void LogTranslationFailed(ILogger logger, long modelVersion, Exception exception);

    [LoggerMessage(EventId = 5, EventName = "PublishRoundFailed", Level = LogLevel.Error, Message = "A publish round failed unexpectedly (a bug; please report it); the loop goes on with the next change")]
    private static partial void LogRoundFailed(ILogger logger, Exception exception);
}
