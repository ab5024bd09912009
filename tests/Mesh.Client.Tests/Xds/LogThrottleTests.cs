using Mesh.Xds.Diagnostics;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Xds;

/// <summary>A log line a remote peer can cause: its first, then one per interval counting the rest, in a bounded table.</summary>
public sealed class LogThrottleTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);

    [Fact]
    public void TryTake_FirstThenOncePerInterval_CountingTheRest_PerKey()
    {
        var throttle = new LogThrottle(_time, Interval);
        Assert.True(throttle.TryTake("10.0.0.7", out var suppressed));
        Assert.Equal(0, suppressed);
        Assert.False(throttle.TryTake("10.0.0.7", out _));
        Assert.False(throttle.TryTake("10.0.0.7", out _));
        Assert.True(throttle.TryTake("10.0.0.8", out _));

        _time.Advance(Interval - TimeSpan.FromTicks(1));
        Assert.False(throttle.TryTake("10.0.0.7", out _));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(throttle.TryTake("10.0.0.7", out suppressed));
        Assert.Equal(3, suppressed);
    }

    [Fact]
    public void TryTake_TableFull_QuietKeysForgotten_ElseNewKeysShareOneLine()
    {
        var throttle = new LogThrottle(_time, Interval, maxKeys: 2);
        Assert.True(throttle.TryTake("a", out _));
        Assert.True(throttle.TryTake("b", out _));

        // No room and no key is quiet yet: every new key shares one line per interval.
        Assert.True(throttle.TryTake("c", out _));
        Assert.False(throttle.TryTake("d", out _));
        Assert.False(throttle.TryTake("a", out _));

        // Once their interval has passed, the old keys make room for new ones.
        _time.Advance(Interval);
        Assert.True(throttle.TryTake("e", out _));
        Assert.True(throttle.TryTake("f", out _));
    }
}
