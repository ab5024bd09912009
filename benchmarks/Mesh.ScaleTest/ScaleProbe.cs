using System.Diagnostics;

namespace Mesh.ScaleTest;

/// <summary>A count that completes a task when it reaches its target (every client synced, every subscriber reached).</summary>
internal sealed class Milestone(int target)
{
    private readonly TaskCompletionSource _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _count;

    public int Target { get; } = target;

    public int Count => Volatile.Read(ref _count);

    public Task Reached => Target == 0 ? Task.CompletedTask : _reached.Task;

    public void Signal()
    {
        if (Interlocked.Increment(ref _count) == Target)
        {
            _reached.TrySetResult();
        }
    }

    /// <summary>Waits for the target or the deadline, whichever comes first; true when the target was reached.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var delay = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var finished = await Task.WhenAny(Reached, Task.Delay(timeout, delay.Token)).ConfigureAwait(false);
        await delay.CancelAsync().ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        return finished == Reached;
    }
}

/// <summary>One endpoint change: which assignment, the address it moved to, when the file was written, who received it when.</summary>
internal sealed class EndpointChange(int service, string assignment, string address, long writtenAt, bool[] subscribers)
{
    private readonly long[] _receivedAt = new long[subscribers.Length];

    public int Service { get; } = service;

    public string Assignment { get; } = assignment;

    public string Address { get; } = address;

    /// <summary>When the rewritten file was written (a <see cref="Stopwatch"/> timestamp).</summary>
    public long WrittenAt { get; } = writtenAt;

    public Milestone Reached { get; } = new(subscribers.Count(s => s));

    /// <summary>The changed assignment's size as a client receives it (an <c>Any</c> in a response), once seen.</summary>
    public int ResourceBytes { get; set; }

    public bool IsSubscriber(int client) => subscribers[client];

    public void Observe(int client, ResourceVariant variant, int anyBytes, long now)
    {
        if (variant.Name != Assignment || !variant.Addresses.Contains(Address))
        {
            return;
        }

        ResourceBytes = anyBytes;
        if (Interlocked.CompareExchange(ref _receivedAt[client], now, 0) == 0 && subscribers[client])
        {
            Reached.Signal();
        }
    }

    /// <summary>Milliseconds from the write to each subscriber that received the change.</summary>
    public List<double> LatenciesMs() =>
        [.. Enumerable.Range(0, subscribers.Length)
            .Where(i => subscribers[i] && Volatile.Read(ref _receivedAt[i]) != 0)
            .Select(i => Stopwatch.GetElapsedTime(WrittenAt, _receivedAt[i]).TotalMilliseconds)];
}

/// <summary>What the simulated clients report to the run: syncs (cold and after a restart) and the change in flight.</summary>
internal sealed class ScaleProbe(int clients)
{
    private readonly long[] _firstSync = new long[clients];
    private readonly long[] _resync = new long[clients];
    private EndpointChange? _change;
    private long _restartedAt;
    private Milestone? _resynced;

    private readonly TaskCompletionSource<string> _fatal = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public XdsResourceCatalog Catalog { get; } = new();

    /// <summary>Completes with the reason when a client met an error no retry can fix (the control plane does not serve the call at all).</summary>
    public Task<string> Fatal => _fatal.Task;

    public void Fail(string reason) => _fatal.TrySetResult(reason);

    public Milestone Synced { get; } = new(clients);

    public EndpointChange? Change
    {
        get => Volatile.Read(ref _change);
        set => Volatile.Write(ref _change, value);
    }

    /// <summary>Starts watching for resyncs on streams opened after <paramref name="killedAt"/>.</summary>
    public Milestone WatchResync(long killedAt)
    {
        var milestone = new Milestone(clients);
        Volatile.Write(ref _restartedAt, killedAt);
        Volatile.Write(ref _resynced, milestone);
        return milestone;
    }

    /// <summary>A client has every subscribed resource on the stream it opened at <paramref name="streamOpenedAt"/>.</summary>
    public void OnStreamSynced(int client, long streamOpenedAt, long now)
    {
        if (Interlocked.CompareExchange(ref _firstSync[client], now, 0) == 0)
        {
            Synced.Signal();
        }

        var restartedAt = Volatile.Read(ref _restartedAt);
        if (restartedAt != 0 && streamOpenedAt > restartedAt && Interlocked.CompareExchange(ref _resync[client], now, 0) == 0)
        {
            Volatile.Read(ref _resynced)?.Signal();
        }
    }

    public long FirstSyncAt(int client) => Volatile.Read(ref _firstSync[client]);

    public long ResyncAt(int client) => Volatile.Read(ref _resync[client]);
}
