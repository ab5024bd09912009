using System.Collections.Concurrent;

namespace Mesh.Client.Resilience;

/// <summary>
/// Reuses the <see cref="CancellationTokenSource"/> that carries each attempt's deadline, timer included: a source
/// that was never cancelled and whose timer never fired is reset (<see cref="CancellationTokenSource.TryReset"/>) and
/// kept, so a request that completes in time allocates neither a source nor a timer.
/// </summary>
internal sealed class CancellationSourcePool
{
    private readonly ConcurrentQueue<CancellationTokenSource> _sources = new();
    private readonly int _capacity;
    private int _count;

    public CancellationSourcePool(int capacity) => _capacity = capacity;

    public CancellationTokenSource Rent()
    {
        if (_sources.TryDequeue(out var source))
        {
            Interlocked.Decrement(ref _count);
            return source;
        }

        return new CancellationTokenSource();
    }

    /// <summary>Takes <paramref name="source"/> back; a cancelled one (or one beyond capacity) is disposed.</summary>
    public void Return(CancellationTokenSource source)
    {
        if (source.TryReset())
        {
            if (Interlocked.Increment(ref _count) <= _capacity)
            {
                _sources.Enqueue(source);
                return;
            }

            Interlocked.Decrement(ref _count);
        }

        source.Dispose();
    }
}
