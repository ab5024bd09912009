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
}
