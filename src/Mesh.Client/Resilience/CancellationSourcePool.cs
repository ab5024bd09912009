using System.Collections.Concurrent;

namespace Mesh.Client.Resilience;

/// <summary>
/// Reuses the <see cref="CancellationTokenSource"/> that carries each attempt's deadline, timer included: a source
/// that was never cancelled and whose timer never fired is reset (<see cref="CancellationTokenSource.TryReset"/>) and
/// kept, so a request that completes in time allocates neither a source nor a timer. The pool never holds more
/// sources than attempts were in flight at once, so it needs no cap.
/// </summary>
internal sealed class CancellationSourcePool
{
    // One slot per processor, at most eight (each on its own cache line), in front of a shared queue: an attempt usually takes and gives
    // back a source on the same processor, and a slot costs one uncontended exchange where the queue's head and tail are
    // shared by every thread (a contended compare-exchange on each side of every attempt).
    private const int SlotStride = 16; // 16 references apart: 128 bytes, so two slots never share a cache line
    private readonly CancellationTokenSource?[] _slots = new CancellationTokenSource?[Math.Clamp(Environment.ProcessorCount, 1, 8) * SlotStride];
    private readonly ConcurrentQueue<CancellationTokenSource> _sources = new();

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

    public CancellationTokenSource Rent()
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

        return new CancellationTokenSource();
    }

    /// <summary>Takes <paramref name="source"/> back; one that was cancelled or whose timer fired is disposed instead.</summary>
    public void Return(CancellationTokenSource source)
    {
        if (!source.TryReset())
        {
            source.Dispose();
            return;
        }

        if (Interlocked.CompareExchange(ref _slots[Slot()], source, null) is not null)
        {
            _sources.Enqueue(source);
        }
    }

    private int Slot() => Thread.GetCurrentProcessorId() % (_slots.Length / SlotStride) * SlotStride;
}
