using System.Collections.Concurrent;

namespace Mesh.Client.Resilience;

/// <summary>
/// Reuses the <see cref="CancellationTokenSource"/> that carries each attempt's deadline, timer included, so a request
/// that completes in time allocates neither a source nor a timer. The pool never holds more sources than attempts were
/// in flight at once, so it needs no cap.
/// </summary>
/// <remarks>
/// A source comes back still armed when its timer is due later than <see cref="RearmMargin"/> from now and its caller
/// knows nothing is left registered on its token (a reset would drop such a registration): the next
/// attempt moves that due time in one timer change, where a reset and a new deadline would take two (each under the
/// runtime's timer-queue lock). A timer due sooner may already be firing, so such a source is reset
/// (<see cref="CancellationTokenSource.TryReset"/>) on its way back, and one that aged in the pool to within the margin
/// is disposed, never re-armed. A cancelled source is never reused.
/// </remarks>
internal sealed class CancellationSourcePool
{
    /// <summary>How far from its due time an armed source's timer must be to be moved in place: far longer than a timer fires late.</summary>
    internal static readonly TimeSpan RearmMargin = TimeSpan.FromSeconds(1);

    /// <summary>The longest delay a runtime timer takes (<see cref="uint.MaxValue"/> − 1 ms, about 49.7 days).</summary>
    internal static readonly TimeSpan MaxDelay = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private const long Disarmed = long.MaxValue;
    private static readonly long RearmMarginMs = (long)RearmMargin.TotalMilliseconds;

    // One slot per processor, at most eight (each on its own cache line), in front of a shared queue: an attempt usually takes and gives
    // back a source on the same processor, and a slot costs one uncontended exchange where the queue's head and tail are
    // shared by every thread (a contended compare-exchange on each side of every attempt).
    private const int SlotStride = 16; // 16 references apart: 128 bytes, so two slots never share a cache line
    private readonly DeadlineSource?[] _slots = new DeadlineSource?[Math.Clamp(Environment.ProcessorCount, 1, 8) * SlotStride];
    private readonly ConcurrentQueue<DeadlineSource> _sources = new();
    private readonly Func<long>? _clock;

    public CancellationSourcePool()
    {
    }

    /// <summary>A pool that reads the runtime timers' clock through <paramref name="clock"/> (milliseconds; for tests).</summary>
    internal CancellationSourcePool(Func<long> clock) => _clock = clock;

    /// <summary>Gets the number of sources waiting to be reused (for tests and diagnostics).</summary>
    public int Count
    {
        get
        {
            var count = _sources.Count;
            for (var i = 0; i < _slots.Length; i += SlotStride)
            {
                count += Volatile.Read(ref _slots[i]) is null ? 0 : 1;
            }

            return count;
        }
    }

    /// <summary>A source that cancels itself after <paramref name="timeout"/> (at most <see cref="uint.MaxValue"/> − 1 ms).</summary>
    public CancellationTokenSource Rent(TimeSpan timeout)
    {
        while (true)
        {
            var source = Take() ?? new DeadlineSource();
            var armedFor = source.DueAt;
            if (armedFor != Disarmed && armedFor - Now() < RearmMarginMs)
            {
                // It aged in the pool to within the margin of its due time (or past it): its timer may be firing.
                source.Dispose();
                continue;
            }

            source.CancelAfter(timeout);
            var now = Now();
            if (source.IsCancellationRequested || (armedFor != Disarmed && armedFor - now < RearmMarginMs / 2))
            {
                // This thread stalled between the check and the move (a GC pause, a starved pool) long enough that the old
                // timer may have fired, or been queued to fire, before the move: never hand such a source out.
                source.Dispose();
                continue;
            }

            source.DueAt = now + (long)timeout.TotalMilliseconds;
            return source;
        }
    }

    /// <summary>
    /// Takes <paramref name="source"/> back; one that was cancelled, or whose timer fired, is disposed instead. Unless
    /// <paramref name="keepArmed"/> (the caller knows no registration is left on its token), it is reset, which also drops
    /// any registration left on it, so none fires for a later request.
    /// </summary>
    public void Return(CancellationTokenSource source, bool keepArmed = false)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source is not DeadlineSource deadline || source.IsCancellationRequested)
        {
            source.Dispose();
            return;
        }

        if (!keepArmed || deadline.DueAt - Now() < RearmMarginMs)
        {
            if (!deadline.TryReset())
            {
                deadline.Dispose();
                return;
            }

            deadline.DueAt = Disarmed;
        }

        if (Interlocked.CompareExchange(ref _slots[Slot()], deadline, null) is not null)
        {
            _sources.Enqueue(deadline);
        }
    }

    private DeadlineSource? Take()
    {
        if (Interlocked.Exchange(ref _slots[Slot()], null) is { } mine)
        {
            return mine;
        }

        if (_sources.TryDequeue(out var queued))
        {
            return queued;
        }

        // An attempt that ended on another processor left its source in that processor's slot: take it rather than
        // make another, so the pool never holds more sources than attempts were in flight at once.
        for (var i = 0; i < _slots.Length; i += SlotStride)
        {
            if (Volatile.Read(ref _slots[i]) is not null && Interlocked.Exchange(ref _slots[i], null) is { } other)
            {
                return other;
            }
        }

        return null;
    }

    private long Now() => _clock is null ? Environment.TickCount64 : _clock();

    private int Slot() => Thread.GetCurrentProcessorId() % (_slots.Length / SlotStride) * SlotStride;

    /// <summary>A pooled source and when its timer fires.</summary>
    private sealed class DeadlineSource : CancellationTokenSource
    {
        /// <summary>Gets or sets the <see cref="Environment.TickCount64"/> (the runtime timers' clock) at which the timer fires; <see cref="Disarmed"/> when it does not.</summary>
        public long DueAt { get; set; } = Disarmed;
    }
}
