using Mesh.Client.Resilience;

namespace Mesh.Client.Tests.Resilience;

/// <summary>Timestamps are milliseconds (frequency 1000): window 10 s in ten 1 s buckets, break 5 s.</summary>
public sealed class CircuitBreakerTests
{
    private static CircuitBreaker Breaker(double ratio = 0.5, int minimumThroughput = 10) =>
        new(ratio, minimumThroughput, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(5), timestampFrequency: 1000);

    [Fact]
    public void Closed_BelowMinimumThroughput_NeverOpens()
    {
        var breaker = Breaker();
        for (var i = 0; i < 9; i++)
        {
            Assert.False(breaker.OnResult(100, failed: true, trial: false));
        }

        Assert.True(breaker.TryAdmit(100, out _));
        Assert.Equal(CircuitState.Closed, breaker.State);
    }

    [Fact]
    public void Closed_RatioReachedWithThroughput_OpensAndRejects()
    {
        var breaker = Breaker();
        for (var i = 0; i < 5; i++)
        {
            breaker.OnResult(100, failed: false, trial: false);
        }

        for (var i = 0; i < 4; i++)
        {
            Assert.False(breaker.OnResult(200, failed: true, trial: false));
        }

        Assert.True(breaker.OnResult(300, failed: true, trial: false)); // 5 of 10 failed: ratio 0.5 reached
        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.False(breaker.TryAdmit(5299, out _));
    }

    /// <summary>Successes counted on several processors' cells at once all count toward the ratio, none twice.</summary>
    [Fact]
    public void Closed_SuccessesFromManyThreads_AllCount()
    {
        var breaker = Breaker();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, _ =>
        {
            for (var i = 0; i < 500; i++)
            {
                breaker.OnResult(100, failed: false, trial: false);
            }
        });

        // 4,000 successes: 3,999 failures are still below half of the calls, the 4,000th reaches it.
        for (var i = 0; i < 3999; i++)
        {
            Assert.False(breaker.OnResult(200, failed: true, trial: false), $"opened after {i + 1} failures");
        }

        Assert.True(breaker.OnResult(200, failed: true, trial: false));
        Assert.Equal(CircuitState.Open, breaker.State);
    }

    [Fact]
    public void Closed_FailuresOlderThanTheWindow_DoNotCount()
    {
        var breaker = Breaker();
        for (var i = 0; i < 9; i++)
        {
            breaker.OnResult(0, failed: true, trial: false);
        }

        // 10.5 s later the first bucket has left the window: 1 call, 1 failure < minimum throughput.
        Assert.False(breaker.OnResult(10_500, failed: true, trial: false));
        Assert.Equal(CircuitState.Closed, breaker.State);
    }

    [Fact]
    public void Open_AfterBreak_AdmitsExactlyOneTrial_SuccessCloses()
    {
        var breaker = OpenBreaker(at: 0);

        Assert.True(breaker.TryAdmit(5000, out var trial));
        Assert.True(trial);
        Assert.False(breaker.TryAdmit(5001, out _)); // the trial is in flight
        Assert.False(breaker.OnResult(5100, failed: false, trial: true));
        Assert.Equal(CircuitState.Closed, breaker.State);
        Assert.True(breaker.TryAdmit(5101, out var afterwards));
        Assert.False(afterwards);

        // The window was cleared: one failure does not reopen it.
        Assert.False(breaker.OnResult(5200, failed: true, trial: false));
    }

    [Fact]
    public void HalfOpen_TrialFails_OpensForAnotherBreak()
    {
        var breaker = OpenBreaker(at: 0);

        Assert.True(breaker.TryAdmit(6000, out var trial));
        Assert.True(breaker.OnResult(6100, failed: true, trial));
        Assert.Equal(CircuitState.Open, breaker.State);
        Assert.False(breaker.TryAdmit(11_099, out _));
        Assert.True(breaker.TryAdmit(11_100, out var next));
        Assert.True(next);
    }

    [Fact]
    public void HalfOpen_TrialAbandoned_NextCallMayTry()
    {
        var breaker = OpenBreaker(at: 0);

        Assert.True(breaker.TryAdmit(5000, out var trial));
        breaker.OnAbandoned(trial);

        Assert.True(breaker.TryAdmit(5001, out var again));
        Assert.True(again);
    }

    [Fact]
    public void Open_LateResultOfAnEarlierCall_DoesNotCloseIt()
    {
        var breaker = OpenBreaker(at: 0);

        breaker.OnResult(100, failed: false, trial: false);

        Assert.Equal(CircuitState.Open, breaker.State);
    }

    private static CircuitBreaker OpenBreaker(long at)
    {
        var breaker = Breaker(ratio: 1.0, minimumThroughput: 2);
        breaker.OnResult(at, failed: true, trial: false);
        Assert.True(breaker.OnResult(at, failed: true, trial: false));
        return breaker;
    }
}
