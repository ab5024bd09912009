namespace Mesh.Client.Discovery;

/// <summary>
/// When a service subscribed on demand was last called. Written by requests without a lock, at most once a second per
/// service (a read of a shared cache line otherwise), and read by the sweep that unsubscribes unused services.
/// </summary>
internal class ServiceUsage
{
    private long _lastUsed;

    /// <summary>Gets the timestamp (of the mesh's <see cref="TimeProvider"/>) of the last call.</summary>
    public long LastUsed => Volatile.Read(ref _lastUsed);

    /// <summary>Records a call at <paramref name="now"/>; a write only when the last one is over a second old.</summary>
    public void Touch(long now, long timestampFrequency)
    {
        if (now - Volatile.Read(ref _lastUsed) > timestampFrequency)
        {
            Volatile.Write(ref _lastUsed, now);
        }
    }

    protected void Reset(long now) => Volatile.Write(ref _lastUsed, now);
}
