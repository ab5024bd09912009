using Microsoft.Extensions.Logging;

namespace Mesh.Client.Xds;

internal sealed partial class XdsClient
{
    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Information, "Connected to the control plane at {Address}.", EventName = "Connected")]
        public static partial void Connected(ILogger logger, Uri address);

        [LoggerMessage(2, LogLevel.Warning, "ADS stream to {Address} failed: {Error}. The last configuration keeps serving.", EventName = "StreamFailed")]
        public static partial void StreamFailed(ILogger logger, Uri address, string error, Exception exception);

        [LoggerMessage(3, LogLevel.Information, "The control plane at {Address} closed the ADS stream.", EventName = "StreamClosed")]
        public static partial void StreamClosed(ILogger logger, Uri address);

        [LoggerMessage(4, LogLevel.Debug, "Reconnecting to {Address} in {Delay}.", EventName = "Reconnecting")]
        public static partial void Reconnecting(ILogger logger, Uri address, TimeSpan delay);

        [LoggerMessage(5, LogLevel.Debug, "Accepted {Kind} version {Version} ({Count} resources).", EventName = "Accepted")]
        public static partial void Accepted(ILogger logger, string kind, string version, int count);

        [LoggerMessage(6, LogLevel.Error, "Rejected {Kind} version {Version}; keeping version {Kept}. {Message}", EventName = "Rejected")]
        public static partial void Rejected(ILogger logger, string kind, string version, string kept, string message);

        [LoggerMessage(7, LogLevel.Information, "Mesh snapshot {Version} published: {Services} services, {Clusters} clusters.", EventName = "Published")]
        public static partial void Published(ILogger logger, string version, int services, int clusters);

        [LoggerMessage(8, LogLevel.Debug, "Snapshot incomplete: {Reason}.", EventName = "Incomplete")]
        public static partial void Incomplete(ILogger logger, string reason);

        [LoggerMessage(9, LogLevel.Warning, "Ignoring a response of unsubscribed type {TypeUrl}.", EventName = "UnknownType")]
        public static partial void UnknownType(ILogger logger, string typeUrl);

        // EventId 50+: kept apart from the numbers other changes to this file may take.
        [LoggerMessage(50, LogLevel.Information, "Workload certificate renewed: reopening the ADS stream to {Address} so it presents the new one.", EventName = "RestartForRotation")]
        public static partial void RestartForRotation(ILogger logger, Uri address);

        [LoggerMessage(60, LogLevel.Debug, "Delta {Kind} request: {Subscribed} subscribed, {Unsubscribed} unsubscribed, {Held} initial resource versions, nonce '{Nonce}', NACK {Nack}.", EventName = "DeltaRequestSent")]
        public static partial void DeltaSent(ILogger logger, string kind, int subscribed, int unsubscribed, int held, string nonce, bool nack);

        [LoggerMessage(61, LogLevel.Debug, "Accepted delta {Kind} version {Version}: {Count} resources changed, {Removed} removed.", EventName = "DeltaAccepted")]
        public static partial void DeltaAccepted(ILogger logger, string kind, string version, int count, int removed);
    }
}
