namespace Mesh.ControlPlane.Registry;

internal sealed partial class WorkloadLeaseRegistry
{
    [LoggerMessage(EventId = 1, EventName = "LogRegistered", Level = LogLevel.Information, Message = "Registered lease {LeaseId} for {Namespace}/{Address} (ttl {Ttl})")]
    private static partial void LogRegistered(ILogger logger, string leaseId, string @namespace, string address, TimeSpan ttl);

    [LoggerMessage(EventId = 2, EventName = "LogReplaced", Level = LogLevel.Warning, Message = "Lease {LeaseId} of {Owner} on {Address} replaced by the registration of {Certified}")]
    private static partial void LogReplaced(ILogger logger, string leaseId, string owner, string address, string certified);

    [LoggerMessage(EventId = 3, EventName = "LogDeregistered", Level = LogLevel.Information, Message = "Deregistered lease {LeaseId}")]
    private static partial void LogDeregistered(ILogger logger, string leaseId);

    [LoggerMessage(EventId = 4, EventName = "LogExpired", Level = LogLevel.Information, Message = "Lease {LeaseId} for {Namespace}/{Address} expired")]
    private static partial void LogExpired(ILogger logger, string leaseId, string @namespace, string address);

    [LoggerMessage(EventId = 5, EventName = "LogStateLoaded", Level = LogLevel.Information, Message = "Loaded {Count} registrations from {File}")]
    private static partial void LogStateLoaded(ILogger logger, int count, string file);

    [LoggerMessage(EventId = 6, EventName = "LogStateError", Level = LogLevel.Warning, Message = "Cannot read or write registration state {File}")]
    private static partial void LogStateError(ILogger logger, string file, Exception exception);

    [LoggerMessage(EventId = 7, EventName = "LogStateEntryIgnored", Level = LogLevel.Warning, Message = "Registration state {File} entry {Index}: {Reason}; the entry is ignored (its workload registers again at its next renewal)")]
    private static partial void LogStateEntryIgnored(ILogger logger, string file, int index, string reason);
}
