using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>One debounce as istiod's: a quiet period each change restarts, capped by a maximum delay.</summary>
public sealed class XdsPublisherDebounceTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Changes_WithinTheQuietPeriod_RestartItAndMakeOneSnapshot()
    {
        var time = new TimerCountingTime();
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions { DebounceInterval = TimeSpan.FromMilliseconds(100), DebounceMax = TimeSpan.FromSeconds(10) }, time, NullLogger<XdsPublisher>.Instance);
        using var published = new Published(publisher);
        await publisher.StartAsync(CancellationToken.None);

        store.SetRegistrations([]);
        await time.WaitForTimersAsync(1);
        time.Advance(TimeSpan.FromMilliseconds(80));
        store.SetRegistrations([]);
        await time.WaitForTimersAsync(2);
        time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(0, published.Count); // 179 ms after the first change, 99 ms after the last: still quiet-waiting

        time.Advance(TimeSpan.FromMilliseconds(1));
        await published.WaitForAsync(1);
        Assert.Equal(2, publisher.Current.Version);

        await publisher.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task ChangesThatNeverStop_PublishedAtTheMaximumDelay()
    {
        var time = new TimerCountingTime();
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions { DebounceInterval = TimeSpan.FromMilliseconds(100), DebounceMax = TimeSpan.FromMilliseconds(250) }, time, NullLogger<XdsPublisher>.Instance);
        using var published = new Published(publisher);
        await publisher.StartAsync(CancellationToken.None);

        store.SetRegistrations([]);
        await time.WaitForTimersAsync(1);
        time.Advance(TimeSpan.FromMilliseconds(90));
        store.SetRegistrations([]);
        await time.WaitForTimersAsync(2);
        time.Advance(TimeSpan.FromMilliseconds(90));
        store.SetRegistrations([]);
        await time.WaitForTimersAsync(3);
        time.Advance(TimeSpan.FromMilliseconds(69));
        Assert.Equal(0, published.Count); // 249 ms after the first change

        time.Advance(TimeSpan.FromMilliseconds(1)); // 250 ms: DebounceMax, although the last change was 70 ms ago
        await published.WaitForAsync(1);

        await publisher.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Schedule_ABurst_RefreshRunsOnceAfterTheQuietPeriodWithItsChangeInThatSnapshot()
    {
        var time = new TimerCountingTime();
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions { DebounceInterval = TimeSpan.FromMilliseconds(100) }, time, NullLogger<XdsPublisher>.Instance);
        using var published = new Published(publisher);
        var refreshes = 0;
        void Refresh()
        {
            refreshes++;
            store.ApplyYaml(new YamlLoadResult(new Model.YamlConfig([TestModels.Service()], [], []), []));
        }

        // An editor's save: temp file, rename, touch.
        publisher.Schedule(Refresh);
        publisher.Schedule(Refresh);
        publisher.Schedule(Refresh);
        await publisher.StartAsync(CancellationToken.None);
        await time.WaitForTimersAsync(1);
        time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(0, refreshes);
        time.Advance(TimeSpan.FromMilliseconds(1));
        await published.WaitForAsync(1);

        Assert.Equal(1, refreshes);
        Assert.Single(publisher.Current.Clusters);
        Assert.Equal(2, publisher.Current.Version);

        await publisher.StopAsync(CancellationToken.None);
    }

    /// <summary>A fake clock that says how many timers were created, so a test advances it only once the publisher waits.</summary>
    private sealed class TimerCountingTime : FakeTimeProvider
    {
        private int _timers;

        public TimerCountingTime()
            : base(DateTimeOffset.UnixEpoch)
        {
        }

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = base.CreateTimer(callback, state, dueTime, period);
            Interlocked.Increment(ref _timers);
            return timer;
        }

        public Task WaitForTimersAsync(int count) =>
            Support.Poll.UntilAsync(() => Volatile.Read(ref _timers) >= count, $"the publisher did not start waiting (timer {count})", Wait);
    }

    private sealed class Published : IDisposable
    {
        private readonly IDisposable _subscription;
        private int _count;

        public Published(XdsPublisher publisher) => _subscription = publisher.Subscribe(() => Interlocked.Increment(ref _count));

        public int Count => Volatile.Read(ref _count);

        public Task WaitForAsync(int count) => Support.Poll.UntilAsync(() => Count >= count, $"{count} snapshot(s) not published", Wait);

        public void Dispose() => _subscription.Dispose();
    }
}
