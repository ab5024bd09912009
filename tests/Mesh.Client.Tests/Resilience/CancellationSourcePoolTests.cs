using Mesh.Client.Resilience;

namespace Mesh.Client.Tests.Resilience;

/// <summary>
/// The deadline pool moves an armed source's timer in place only while it is far from firing; a source that fired, or
/// came near its due time in the pool, is never handed out again.
/// </summary>
public sealed class CancellationSourcePoolTests
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(5);

    [Fact]
    public void Return_FarFromItsDueTime_KeptArmedAndRearmedByRent()
    {
        var pool = new CancellationSourcePool();
        var first = pool.Rent(Long);
        pool.Return(first, keepArmed: true);
        Assert.Equal(1, pool.Count);

        var again = pool.Rent(Long);
        Assert.Same(first, again);
        Assert.False(again.IsCancellationRequested);
        Assert.Equal(0, pool.Count);
    }

    [Fact]
    public async Task Return_NearItsDueTime_ResetAndItsOldDeadlineNeverFires()
    {
        var pool = new CancellationSourcePool();
        var first = pool.Rent(TimeSpan.FromMilliseconds(300));
        pool.Return(first, keepArmed: true);
        var again = pool.Rent(Long);
        Assert.Same(first, again);

        // A second source armed with the same short deadline fires; the reset one, re-armed for minutes, does not.
        using var witness = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await WhenCancelled(witness.Token);
        Assert.False(again.IsCancellationRequested);
    }

    [Fact]
    public async Task Return_Fired_DisposedNotPooled()
    {
        var pool = new CancellationSourcePool();
        var source = pool.Rent(TimeSpan.FromMilliseconds(50));
        await WhenCancelled(source.Token);

        pool.Return(source, keepArmed: true);
        Assert.Equal(0, pool.Count);
        Assert.NotSame(source, pool.Rent(Long));
    }

    [Fact]
    public async Task Rent_FiredWhilePooled_NeverHandedOutAgain()
    {
        var pool = new CancellationSourcePool();

        // Due in 1.5 s, more than the margin: it goes back armed, then its timer fires in the pool.
        var source = pool.Rent(CancellationSourcePool.RearmMargin + TimeSpan.FromMilliseconds(500));
        var fired = WhenCancelled(source.Token);
        pool.Return(source, keepArmed: true);
        Assert.Equal(1, pool.Count);
        await fired;

        var next = pool.Rent(Long);
        Assert.NotSame(source, next);
        Assert.False(next.IsCancellationRequested);
    }

    [Fact]
    public void Rent_AgedInThePoolToWithinTheMargin_NotRearmed()
    {
        // The pool's clock runs ahead of the runtime's timers: the source is within the margin of its due time by the
        // pool's reckoning while its real timer (minutes away) has not fired.
        var now = Environment.TickCount64;
        var pool = new CancellationSourcePool(() => now);
        var source = pool.Rent(Long);
        pool.Return(source, keepArmed: true);
        Assert.Equal(1, pool.Count);

        now += (long)(Long - CancellationSourcePool.RearmMargin).TotalMilliseconds + 1;
        var next = pool.Rent(Long);
        Assert.NotSame(source, next);
        Assert.False(next.IsCancellationRequested);
        Assert.Throws<ObjectDisposedException>(() => source.Token.WaitHandle);
    }

    [Fact]
    public void Return_WithinTheMargin_ResetAndDisarmed()
    {
        var now = Environment.TickCount64;
        var pool = new CancellationSourcePool(() => now);
        var source = pool.Rent(Long);

        // Returned within the margin of its due time: reset on the way back, so the pool's clock moving on past the old due
        // time does not make it unusable.
        now += (long)(Long - CancellationSourcePool.RearmMargin).TotalMilliseconds + 1;
        pool.Return(source, keepArmed: true);
        now += (long)Long.TotalMilliseconds;
        Assert.Same(source, pool.Rent(Long));
    }

    /// <summary>
    /// Without <c>keepArmed</c> a source is reset on its way back, which drops a registration a handler left on its token:
    /// the next request's cancellation never reaches it. A chain of unknown handlers returns its sources this way.
    /// </summary>
    [Fact]
    public void Return_NotKeptArmed_DropsLeftoverRegistrations()
    {
        var now = Environment.TickCount64;
        var pool = new CancellationSourcePool(() => now);
        var source = pool.Rent(Long);
        var leftoverCalled = false;
        source.Token.UnsafeRegister(_ => leftoverCalled = true, null);
        pool.Return(source);

        // Reset: even with the pool's clock past the old due time, the same source comes back, and cancelling it for the
        // next request does not call the earlier request's registration.
        now += (long)Long.TotalMilliseconds * 2;
        var next = pool.Rent(Long);
        Assert.Same(source, next);
        next.Cancel();
        Assert.False(leftoverCalled);
    }

    private static Task WhenCancelled(CancellationToken token)
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        token.UnsafeRegister(static state => ((TaskCompletionSource)state!).TrySetResult(), cancelled);
        return cancelled.Task.WaitAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
    }
}
