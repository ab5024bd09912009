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
        Assert.True(throttle.TryTake("10.0.0.7", out var suppressed, out _));
        Assert.Equal(0, suppressed);
        Assert.False(throttle.TryTake("10.0.0.7", out _, out _));
        Assert.False(throttle.TryTake("10.0.0.7", out _, out _));
        Assert.True(throttle.TryTake("10.0.0.8", out _, out _));

        _time.Advance(Interval - TimeSpan.FromTicks(1));
        Assert.False(throttle.TryTake("10.0.0.7", out _, out _));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(throttle.TryTake("10.0.0.7", out suppressed, out _));
        Assert.Equal(3, suppressed);
    }

    [Fact]
    public void TryTake_TableFull_QuietKeysForgotten_ElseNewKeysShareOneLine()
    {
        var throttle = new LogThrottle(_time, Interval, maxKeys: 2);
        Assert.True(throttle.TryTake("a", out _, out _));
        Assert.True(throttle.TryTake("b", out _, out _));

        // No room and no key is quiet yet: every new key shares one line per interval.
        Assert.True(throttle.TryTake("c", out _, out _));
        Assert.False(throttle.TryTake("d", out _, out _));
        Assert.False(throttle.TryTake("a", out _, out _));

        // Once their interval has passed, the old keys make room for new ones.
        _time.Advance(Interval);
        Assert.True(throttle.TryTake("e", out _, out _));
        Assert.True(throttle.TryTake("f", out _, out _));
    }

    [Fact]
    public void TryTake_TableFull_SharedEntrysLineSaysItIsShared()
    {
        var throttle = new LogThrottle(_time, Interval, maxKeys: 1);
        Assert.True(throttle.TryTake("10.0.0.1", out _, out var shared));
        Assert.False(shared);
        _time.Advance(Interval);
        Assert.True(throttle.TryTake("10.0.0.2", out _, out shared)); // the sweep forgets 10.0.0.1
        Assert.False(shared);

        // Three addresses without room: one line, then their refusals counted together.
        _time.Advance(Interval / 2);
        Assert.True(throttle.TryTake("10.0.0.3", out _, out shared));
        Assert.True(shared);
        Assert.False(throttle.TryTake("10.0.0.4", out _, out _));
        Assert.False(throttle.TryTake("10.0.0.5", out _, out _));
        _time.Advance(Interval / 2);
        Assert.False(throttle.TryTake("10.0.0.6", out _, out _));

        // The shared entry's next line counts several addresses' refusals: it says so, and names none of them.
        _time.Advance(Interval / 2);
        Assert.True(throttle.TryTake("10.0.0.7", out var suppressed, out shared));
        Assert.True(shared);
        Assert.Equal(3, suppressed);
    }

    [Fact]
    public void TryTake_TableFull_SweepsAtMostOncePerInterval()
    {
        var throttle = new LogThrottle(_time, Interval, maxKeys: 2);
        Assert.True(throttle.TryTake("a", out _, out _));
        _time.Advance(Interval / 2);
        Assert.True(throttle.TryTake("b", out _, out _));
        _time.Advance(Interval / 2);

        // Full: the sweep forgets "a" (quiet), "c" takes its place.
        Assert.True(throttle.TryTake("c", out _, out var shared));
        Assert.False(shared);

        // "b" is quiet now, but the last sweep is half an interval old: a new key shares rather than scanning again.
        _time.Advance(Interval / 2);
        Assert.True(throttle.TryTake("d", out _, out shared));
        Assert.True(shared);

        // One interval after the last sweep, the next one makes room.
        _time.Advance(Interval / 2);
        Assert.True(throttle.TryTake("e", out _, out shared));
        Assert.False(shared);
    }
}
