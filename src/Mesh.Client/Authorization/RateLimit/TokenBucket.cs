namespace Mesh.Client.Authorization.RateLimit;

/// <summary>What a bucket said about a request: its size, the tokens left after it, and the seconds until the next fill.</summary>
internal readonly record struct RateLimitStatus(uint Limit, uint Remaining, uint ResetSeconds);

/// <summary>
/// Envoy's <c>type.v3.TokenBucket</c>: starts full with <see cref="MaxTokens"/>, gains <see cref="TokensPerFill"/> at each
/// <see cref="FillInterval"/> boundary (never above <see cref="MaxTokens"/>), and each request takes one token. Fills are
/// computed from the <see cref="TimeProvider"/> when a request arrives, so no timer runs and an idle bucket costs nothing.
/// </summary>
internal sealed class TokenBucket
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly long _interval;
    private uint _tokens;
    private long _nextFill;

    public TokenBucket(uint maxTokens, uint tokensPerFill, TimeSpan fillInterval, TimeProvider time)
    {
        ArgumentOutOfRangeException.ThrowIfZero(maxTokens);
        ArgumentOutOfRangeException.ThrowIfZero(tokensPerFill);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(fillInterval, TimeSpan.Zero);
        ArgumentNullException.ThrowIfNull(time);
        MaxTokens = maxTokens;
        TokensPerFill = tokensPerFill;
        FillInterval = fillInterval;
        _time = time;
        _interval = Math.Max(1, (long)(fillInterval.TotalSeconds * time.TimestampFrequency));
        _tokens = maxTokens;
        _nextFill = time.GetTimestamp() + _interval;
    }

    public uint MaxTokens { get; }

    public uint TokensPerFill { get; }

    public TimeSpan FillInterval { get; }

    /// <summary>Takes a token when one is left; allocates nothing.</summary>
    public bool TryConsume(out RateLimitStatus status)
    {
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            if (now >= _nextFill)
            {
                var fills = ((now - _nextFill) / _interval) + 1;
                var added = (ulong)fills * TokensPerFill;
                _tokens = (uint)Math.Min(MaxTokens, _tokens + added);
                _nextFill += fills * _interval;
            }

            var allowed = _tokens > 0;
            if (allowed)
            {
                _tokens--;
            }

            status = new RateLimitStatus(MaxTokens, _tokens, ResetSeconds(_nextFill - now));
            return allowed;
        }
    }

    private uint ResetSeconds(long ticks)
    {
        // Whole seconds, rounded up (X-RateLimit-Reset is an integer number of seconds).
        var frequency = _time.TimestampFrequency;
        return (uint)Math.Min(uint.MaxValue, (ticks + frequency - 1) / frequency);
    }
}
