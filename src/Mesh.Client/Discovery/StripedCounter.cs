namespace Mesh.Client.Discovery;

/// <summary>
/// A count that many threads change at once and few read, and only approximately (never for an exact limit): one cell
/// per processor (at most four), each on its own cache line, so an increment on one core never invalidates the line another core is counting on. A read sums the
/// cells, so it sees every change that finished before it and may see one in progress half-way (a decrement on one
/// cell before the increment it undoes on another): <see cref="Sum"/> never reports less than zero for that reason.
/// The cells are made at the first change: a snapshot holds a counter per cluster, and most clusters carry no traffic.
/// A mutable struct: keep it in a (non-readonly) field and change it there, never through a copy.
/// </summary>
internal struct StripedCounter
{
    private const int Stride = 8; // longs between two cells: 64 bytes, one cache line each (256 bytes at most per counter)
    private static readonly int Cells = Math.Clamp(Environment.ProcessorCount, 1, 4);
    private long[]? _cells;

    /// <summary>Adds <paramref name="value"/> (negative to subtract) on the current processor's cell.</summary>
    public void Add(long value)
    {
        var cells = Volatile.Read(ref _cells) ?? Create();
        Interlocked.Add(ref cells[Thread.GetCurrentProcessorId() % Cells * Stride], value);
    }

    /// <summary>Sets every cell to zero. A change racing with it may survive it (the count stays approximate).</summary>
    public void Reset()
    {
        var cells = Volatile.Read(ref _cells);
        if (cells is null)
        {
            return;
        }

        for (var i = 0; i < cells.Length; i += Stride)
        {
            Volatile.Write(ref cells[i], 0);
        }
    }

    /// <summary>Gets the total of the cells, at least zero.</summary>
    public readonly long Sum()
    {
        var cells = Volatile.Read(in _cells);
        if (cells is null)
        {
            return 0;
        }

        long sum = 0;
        for (var i = 0; i < cells.Length; i += Stride)
        {
            sum += Volatile.Read(ref cells[i]);
        }

        return Math.Max(0, sum);
    }

    private long[] Create()
    {
        var created = new long[Cells * Stride];
        return Interlocked.CompareExchange(ref _cells, created, null) ?? created;
    }
}
