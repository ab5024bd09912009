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
    private readonly ConcurrentQueue<CancellationTokenSource> _sources = new();

    /// <summary>Gets the number of sources waiting to be reused (for tests and diagnostics).</summary>
    public int Count => _sources.Count;

    public CancellationTokenSource Rent() => _sources.TryDequeue(out var source) ? source : new CancellationTokenSource();

    /// <summary>Takes <paramref name="source"/> back; one that was cancelled or whose timer fired is disposed instead.</summary>
    public void Return(CancellationTokenSource source)
    {
        if (source.TryReset())
        {
            _sources.Enqueue(source);
            return;
        }

        source.Dispose();
    }
}
