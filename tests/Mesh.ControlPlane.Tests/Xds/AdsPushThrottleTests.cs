using Grpc.Core;
using Mesh.ControlPlane.Xds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>The push throttle: at most N responses are being written at once across streams, as istiod's PILOT_PUSH_THROTTLE.</summary>
public sealed class AdsPushThrottleTests
{
    [Fact]
    public async Task WriteAsync_ThrottleOfOne_SecondWriteStartsOnlyAfterTheFirstFinishes()
    {
        var time = new FakeTimeProvider(); // never advanced: the first write keeps its slot
        var limits = AdsLimits.Default with { PushThrottle = new SemaphoreSlim(1, 1), WriteTimeout = TimeSpan.FromSeconds(30) };
        var slow = new BlockingWriter();
        var fast = new BlockingWriter();
        var first = AdsResponseWriter.WriteAsync(slow, "a", TypeUrls.Cluster, limits, time, null, NullLogger.Instance, "one", "peer", CancellationToken.None);
        await slow.Started.Task.WaitAsync(TimeSpan.FromSeconds(30));

        var second = AdsResponseWriter.WriteAsync(fast, "b", TypeUrls.Cluster, limits, time, null, NullLogger.Instance, "two", "peer", CancellationToken.None);
        Assert.False(fast.Started.Task.IsCompleted);

        slow.Release.SetResult();
        await first.WaitAsync(TimeSpan.FromSeconds(30));
        await fast.Started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        fast.Release.SetResult();
        await second.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(1, limits.PushThrottle!.CurrentCount);
    }

    [Fact]
    public async Task WriteAsync_ClientNotReading_GivesUpItsSlotAfterSlotHoldSoOthersAreNotStalled()
    {
        var time = new FakeTimeProvider();
        var limits = AdsLimits.Default with { PushThrottle = new SemaphoreSlim(1, 1), WriteTimeout = TimeSpan.FromSeconds(30) };
        var stuck = new BlockingWriter();
        var other = new BlockingWriter();
        var stuckWrite = AdsResponseWriter.WriteAsync(stuck, "a", TypeUrls.Cluster, limits, time, null, NullLogger.Instance, "stuck", "peer", CancellationToken.None);
        await stuck.Started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var otherWrite = AdsResponseWriter.WriteAsync(other, "b", TypeUrls.Cluster, limits, time, null, NullLogger.Instance, "other", "peer", CancellationToken.None);
        Assert.False(other.Started.Task.IsCompleted);

        time.Advance(AdsResponseWriter.SlotHold);
        await other.Started.Task.WaitAsync(TimeSpan.FromSeconds(30));
        other.Release.SetResult();
        await otherWrite.WaitAsync(TimeSpan.FromSeconds(30));

        // The stuck write still ends at the write timeout, counted from when it could go.
        Assert.False(stuckWrite.IsCompleted);
        time.Advance(limits.WriteTimeout - AdsResponseWriter.SlotHold);
        var ended = await Assert.ThrowsAsync<RpcException>(() => stuckWrite.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(StatusCode.DeadlineExceeded, ended.StatusCode);
        Assert.Equal(1, limits.PushThrottle!.CurrentCount);
    }

    [Fact]
    public void DefaultPushThrottle_IsIstiodsFormula()
    {
        Assert.Equal(Math.Min(15 + (5 * Environment.ProcessorCount), 100), AdsLimits.DefaultPushThrottle);
        Assert.Null(AdsLimits.Default.PushThrottle);
    }

    private sealed class BlockingWriter : IServerStreamWriter<string>
    {
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(string message)
        {
            Started.TrySetResult();
            return Release.Task;
        }
    }
}
