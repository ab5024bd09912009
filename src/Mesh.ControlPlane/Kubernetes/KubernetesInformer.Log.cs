namespace Mesh.ControlPlane.Kubernetes;

internal sealed partial class KubernetesInformer<T>
{
    [LoggerMessage(EventId = 1, EventName = "KubernetesSynced", Level = LogLevel.Information, Message = "Kubernetes {Informer}: listed {Count} objects at resourceVersion {ResourceVersion}; watching")]
    private static partial void LogSynced(ILogger logger, string informer, int count, string resourceVersion);

    [LoggerMessage(EventId = 2, EventName = "KubernetesRelisted", Level = LogLevel.Information, Message = "Kubernetes {Informer}: relisted {Count} objects ({Added} new, {Deleted} gone) at resourceVersion {ResourceVersion}")]
    private static partial void LogRelisted(ILogger logger, string informer, int count, int added, int deleted, string resourceVersion);

    [LoggerMessage(EventId = 3, EventName = "KubernetesWatchExpired", Level = LogLevel.Information, Message = "Kubernetes {Informer}: resourceVersion {ResourceVersion} expired (410 Gone); relisting")]
    private static partial void LogExpired(ILogger logger, string informer, string? resourceVersion);

    [LoggerMessage(EventId = 4, EventName = "KubernetesWatchIdle", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: the watch delivered nothing, not even a bookmark, for {IdleTimeout}; watching again (ControlPlane:Kubernetes:WatchIdleTimeout)")]
    private static partial void LogIdle(ILogger logger, string informer, TimeSpan idleTimeout);

    [LoggerMessage(EventId = 5, EventName = "KubernetesWatchFailed", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: {Error}; retrying in {Wait} (synced before: {Synced}; the last objects seen keep serving)")]
    private static partial void LogFailed(ILogger logger, string informer, string error, TimeSpan wait, bool synced);

    [LoggerMessage(EventId = 6, EventName = "KubernetesWatchTooShort", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: the watch closed within a second without an event; retrying in {Wait}")]
    private static partial void LogShortWatch(ILogger logger, string informer, TimeSpan wait);

    [LoggerMessage(EventId = 7, EventName = "KubernetesWatchStreamError", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: error in the watch stream: {Error}")]
    private static partial void LogStreamError(ILogger logger, string informer, string error);

    [LoggerMessage(EventId = 8, EventName = "KubernetesKindAbsent", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: the API server does not serve this kind (404: its CRD is not installed); treated as empty and listed again with back-off")]
    private static partial void LogAbsent(ILogger logger, string informer);

    [LoggerMessage(EventId = 9, EventName = "KubernetesKindNotFoundAfterList", Level = LogLevel.Warning, Message = "Kubernetes {Informer}: the API server answered 404 (NotFound) to a list at {ApiVersion} ({Count} times since the last warning) although it listed this kind before; keeping the {Items} objects last seen and listing again in {Wait} (objects leave only through watch DELETE events or a successful list)")]
    private static partial void LogNotFoundKept(ILogger logger, string informer, string apiVersion, int count, int items, TimeSpan wait);
}
