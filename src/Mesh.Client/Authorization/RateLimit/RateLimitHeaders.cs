namespace Mesh.Client.Authorization.RateLimit;

/// <summary>The response headers and body of Envoy's local rate limit (draft-03 <c>X-RateLimit-*</c> names).</summary>
internal static class RateLimitHeaders
{
    public const string Limit = "x-ratelimit-limit";
    public const string Remaining = "x-ratelimit-remaining";
    public const string Reset = "x-ratelimit-reset";
    public const string EnvoyRateLimited = "x-envoy-ratelimited";
    public const string Body = "local_rate_limited";
}
