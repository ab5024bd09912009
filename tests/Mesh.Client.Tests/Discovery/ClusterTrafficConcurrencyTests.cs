using Mesh.Client.Discovery;

namespace Mesh.Client.Tests;

/// <summary>
/// A cluster's request count without a limit is striped per processor (no shared cache line per request): it must still
/// be exact once the threads are done. Under <c>max_requests</c> it is one exact count, never exceeded while they race.
/// </summary>
public sealed class ClusterTrafficConcurrencyTests
{
    [Fact]
    public async Task StartAndEnd_FromManyThreadsAtOnce_CountBackToZero()
    {
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { HasRetryBudget = true };
        using var start = new Barrier(8);

        // A request may end on another thread (and processor) than it started on, as an awaited one does.
        var workers = Enumerable.Range(0, 8).Select(_ => Task.Factory.StartNew(
            () =>
            {
                start.SignalAndWait();
                for (var i = 0; i < 20_000; i++)
                {
                    Assert.True(traffic.TryStartRequest(limits));
                    if (i % 7 == 0)
                    {
                        Thread.Yield();
                    }

                    traffic.EndRequest(limits.MaxRequests);
                }
            },
            TaskCreationOptions.LongRunning)).ToArray();
        await Task.WhenAll(workers);

        Assert.Equal(0, traffic.ActiveRequests);

        // And the count goes on from there: what is in flight now is exactly what started.
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(traffic.TryStartRequest(limits));
        }

        Assert.Equal(1000, traffic.ActiveRequests);
    }

    [Fact]
    public async Task TryStartRequest_RacingAtTheLimit_NeverAdmitsMoreThanMaxRequests()
    {
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { MaxRequests = 2 };
        var inFlight = 0;
        var most = 0;
        var refused = 0;
        var racing = System.Diagnostics.Stopwatch.StartNew();
        using var start = new Barrier(8);
        var workers = Enumerable.Range(0, 8).Select(_ => Task.Factory.StartNew(
            () =>
            {
                start.SignalAndWait();

                // Until the threads have met at the limit (a loaded machine may run them one at a time for a while).
                for (var i = 0; i < 20_000 || (Volatile.Read(ref refused) == 0 && racing.Elapsed < TimeSpan.FromSeconds(30)); i++)
                {
                    if (!traffic.TryStartRequest(limits))
                    {
                        Interlocked.Increment(ref refused);
                        continue;
                    }

                    var now = Interlocked.Increment(ref inFlight);
                    InterlockedMax(ref most, now);
                    Thread.SpinWait(200); // holds the slot long enough for the other threads to race for it
                    Interlocked.Decrement(ref inFlight);
                    traffic.EndRequest(limits.MaxRequests);
                }
            },
            TaskCreationOptions.LongRunning)).ToArray();
        await Task.WhenAll(workers);

        Assert.InRange(most, 1, 2);
        Assert.True(refused > 0 || Environment.ProcessorCount == 1, "eight threads on two slots were never refused");
        Assert.Equal(0, traffic.ActiveRequests);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
