namespace Mesh.ControlPlane.Security;

internal sealed partial class JwksResolver
{
    [LoggerMessage(EventId = 1, EventName = "JwksFetched", Level = LogLevel.Information, Message = "JWKS {Uri}: new keys fetched; pushing")]
    private static partial void LogFetched(ILogger logger, Uri uri);

    [LoggerMessage(EventId = 2, EventName = "JwksFailedNoKeys", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: fetch failed ({Problem}); no keys yet, so every token for this issuer is rejected (401) until a fetch succeeds; retrying in {Retry}")]
    private static partial void LogFailedNoKeys(ILogger logger, Uri uri, string problem, TimeSpan retry);

    [LoggerMessage(EventId = 3, EventName = "JwksFailedKeepingKeys", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: fetch failed ({Problem}); the last good keys keep serving; retrying in {Retry}")]
    private static partial void LogFailedKeepingKeys(ILogger logger, Uri uri, string problem, TimeSpan retry);

    [LoggerMessage(EventId = 4, EventName = "JwksPersistedLoaded", Level = LogLevel.Information,
        Message = "JWKS {Uri}: the last good keys kept in {Path} serve until a fetch succeeds")]
    private static partial void LogPersistedLoaded(ILogger logger, Uri uri, string path);

    [LoggerMessage(EventId = 5, EventName = "JwksPersistedIgnored", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: the kept keys in {Path} are ignored ({Problem}); the URI has no keys until a fetch succeeds")]
    private static partial void LogPersistedIgnored(ILogger logger, Uri uri, string path, string problem);

    [LoggerMessage(EventId = 6, EventName = "JwksPersistFailed", Level = LogLevel.Warning,
        Message = "JWKS {Uri}: could not keep the keys in {Path} ({Problem}); they serve from memory, but a restart during an outage of the URI would start without them")]
    private static partial void LogPersistFailed(ILogger logger, Uri uri, string path, string problem);
}
