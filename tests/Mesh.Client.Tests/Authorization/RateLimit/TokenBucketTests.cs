using Mesh.Client.Authorization.RateLimit;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Authorization.RateLimit;

public sealed class TokenBucketTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UnixEpoch);

    [Fact]
    public void TryConsume_StartsFull_RefusesWhenEmpty()
    {
        var bucket = new TokenBucket(3, 3, TimeSpan.FromSeconds(1), _time);

        var results = Enumerable.Range(0, 5).Select(_ => bucket.TryConsume(out var s) ? s.Remaining : -1L).ToArray();

        Assert.Equal([2L, 1L, 0L, -1L, -1L], results);
    }

    [Fact]
    public void TryConsume_RefillsAtTheIntervalBoundaryNotBefore()
    {
        var bucket = new TokenBucket(2, 1, TimeSpan.FromSeconds(1), _time);
        Drain(bucket);

        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(bucket.TryConsume(out var early));
        Assert.Equal(1u, early.ResetSeconds);

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(bucket.TryConsume(out var status));
        Assert.Equal(new RateLimitStatus(2, 0, 1), status);
        Assert.False(bucket.TryConsume(out _));
    }

    [Fact]
    public void TryConsume_LongIdle_RefillsNoMoreThanMaxTokens()
    {
        var bucket = new TokenBucket(5, 2, TimeSpan.FromMilliseconds(100), _time);
        Drain(bucket);

        _time.Advance(TimeSpan.FromHours(1));

        Assert.Equal(5, Drain(bucket));
    }

    [Fact]
    public void TryConsume_SeveralIntervals_AddsTokensPerFillForEach()
    {
        var bucket = new TokenBucket(10, 2, TimeSpan.FromSeconds(1), _time);
        Drain(bucket);

        _time.Advance(TimeSpan.FromSeconds(3.5));

        Assert.Equal(6, Drain(bucket));
        _time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Equal(2, Drain(bucket));
    }

    [Fact]
    public void TryConsume_ResetSeconds_CountsToTheNextFill()
    {
        var bucket = new TokenBucket(1, 1, TimeSpan.FromSeconds(10), _time);
        _time.Advance(TimeSpan.FromSeconds(2.5));

        bucket.TryConsume(out var status);

        Assert.Equal(8u, status.ResetSeconds);
    }

    private static int Drain(TokenBucket bucket)
    {
        var taken = 0;
        while (bucket.TryConsume(out _))
        {
            taken++;
        }

        return taken;
    }
}
