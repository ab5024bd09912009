using Mesh.ControlPlane.Kubernetes;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Kubernetes;

public sealed class WatchBackoffTests
{
    [Fact]
    public void Next_RepeatedFailures_DoublesFrom800msWithJitterAndCapsAt30s()
    {
        var time = new FakeTimeProvider();
        var backoff = new WatchBackoff(time, new Random(7));

        var waits = Enumerable.Range(0, 10).Select(_ => { var w = backoff.Next(); time.Advance(w); return w; }).ToList();

        var bases = new[] { 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30, 30 };
        for (var i = 0; i < waits.Count; i++)
        {
            Assert.InRange(waits[i].TotalSeconds, Math.Min(bases[i], 15), Math.Min(2 * bases[i], 30));
        }

        Assert.NotEqual(waits[0], backoff.Next()); // jittered: not the same fixed number each time
    }

    [Fact]
    public void Next_AfterTwoHealthyMinutes_StartsAgainAt800ms()
    {
        var time = new FakeTimeProvider();
        var backoff = new WatchBackoff(time, new Random(7));
        for (var i = 0; i < 6; i++)
        {
            backoff.Next();
        }

        time.Advance(TimeSpan.FromMinutes(1));
        Assert.True(backoff.Next() >= TimeSpan.FromSeconds(15), "one healthy minute is not enough to reset");

        time.Advance(WatchBackoff.ResetAfter);
        Assert.InRange(backoff.Next().TotalSeconds, 0.8, 1.6);
    }

    [Fact]
    public void Reset_AfterAWatchThatDelivered_TheNextFailureWaitsTheInitialDelay()
    {
        var time = new FakeTimeProvider();
        var backoff = new WatchBackoff(time, new Random(7));
        for (var i = 0; i < 8; i++)
        {
            backoff.Next();
        }

        backoff.Reset();

        Assert.InRange(backoff.Next().TotalSeconds, 0.8, 1.6);
    }
}
