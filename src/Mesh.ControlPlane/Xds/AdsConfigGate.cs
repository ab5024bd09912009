using Grpc.Core;
using Grpc.Core.Interceptors;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Refuses ADS streams with UNAVAILABLE until a snapshot of a valid config folder exists. A control plane restarted with a broken
/// folder would otherwise serve an empty snapshot, and state-of-the-world clients would delete every cluster and inbound
/// policy they hold; UNAVAILABLE makes them keep their last good config and retry.
/// </summary>
internal sealed partial class AdsConfigGate(ConfigStore store, XdsPublisher publisher, ILogger<AdsConfigGate> logger) : Interceptor
{
    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream,
        IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context,
        DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(continuation);
        if (!publisher.HasValidSnapshot)
        {
            var errors = store.FolderErrors.Where(e => !e.IsWarning).ToList();
            var why = store.FolderLoaded && store.KubernetesPending is { } pending ? pending
                : store.HasValidConfig && publisher.TranslationError is { } translation ? translation
                : store.HasValidConfig || errors.Count == 0
                ? "the config folder has not been loaded yet"
                : $"the config folder is invalid ({errors.Count} errors, first: {errors[0]})";
            LogRefused(logger, context.Peer, why);
            throw new RpcException(new Status(StatusCode.Unavailable, $"control plane not ready: {why}; keep the last good config and retry"));
        }

        return continuation(requestStream, responseStream, context);
    }

    [LoggerMessage(EventId = 1, EventName = "AdsRefusedNotReady", Level = LogLevel.Warning, Message = "ADS stream from {Peer} refused: {Reason}")]
    private static partial void LogRefused(ILogger logger, string peer, string reason);
}
