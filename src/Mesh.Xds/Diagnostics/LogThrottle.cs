namespace Mesh.Xds.Diagnostics;

/// <summary>
/// The mesh's rule for a log line a remote peer can cause at will (a refused CSR at the control plane, a denied tunnel
/// connection at a sidecar), written once: a key's first line, then at most one per <see cref="Interval"/>, which says how
/// many were left out, so a flood of refusals is not a flood of log lines. At most <see cref="MaxKeys"/> keys are
/// remembered: when the table is full, the keys whose interval has passed are forgotten (one sweep per interval at most,
/// not one per new key), and a new key that still finds no room shares one entry with every other such key, whose line
/// must then not name one key for all (<c>shared</c>).
/// </summary>
internal sealed class LogThrottle
{
    /// <summary>Keys remembered at most, unless the constructor says otherwise.</summary>
    public const int DefaultMaxKeys = 10_000;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private long _sweptAt = long.MinValue;

    public LogThrottle(TimeProvider time, TimeSpan interval, int maxKeys = DefaultMaxKeys)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeys, 1);
        _time = time;
        Interval = interval;
        MaxKeys = maxKeys;
    }

    /// <summary>Gets the least time between two lines of one key.</summary>
    public TimeSpan Interval { get; }

    /// <summary>Gets how many keys are remembered at most (one more is shared by the keys that found no room).</summary>
    public int MaxKeys { get; }

    /// <summary>
    /// Whether a line for <paramref name="key"/> is written now: its first, then one per <see cref="Interval"/>;
    /// <paramref name="suppressed"/> is how many of its lines since the last written one were not; <paramref name="shared"/>:
    /// the key found no room and shares its entry, so <paramref name="suppressed"/> counts the lines of several keys.
    /// </summary>
    public bool TryTake(string key, out int suppressed, out bool shared)
    {
        ArgumentNullException.ThrowIfNull(key);
        var now = _time.GetTimestamp();
        shared = false;
        lock (_lock)
        {
            if (!_entries.TryGetValue(key, out var entry))
            {
                // A flood of new keys while nothing is quiet would scan the whole table under the lock for each of them.
                if (_entries.Count >= MaxKeys && (_sweptAt == long.MinValue || _time.GetElapsedTime(_sweptAt, now) >= Interval))
                {
                    _sweptAt = now;
                    ForgetQuiet(now);
                }

                if (_entries.Count >= MaxKeys)
                {
                    key = string.Empty;
                    shared = true;
                }

                if (!_entries.TryGetValue(key, out entry))
                {
                    entry = new Entry();
                    _entries[key] = entry;
                }
            }

            if (entry.WrittenAt != long.MinValue && _time.GetElapsedTime(entry.WrittenAt, now) < Interval)
            {
                entry.Suppressed++;
                suppressed = 0;
                return false;
            }

            entry.WrittenAt = now;
            suppressed = entry.Suppressed;
            entry.Suppressed = 0;
            return true;
        }
    }

    // Under the lock: forgets the keys whose interval has passed (a count of lines left out since goes with them).
    private void ForgetQuiet(long now)
    {
        foreach (var (key, entry) in _entries)
        {
            if (_time.GetElapsedTime(entry.WrittenAt, now) >= Interval)
            {
                // Removing the current entry while enumerating is allowed (Dictionary, .NET Core 3.0 and later).
                _entries.Remove(key);
            }
        }
    }

    private sealed class Entry
    {
        public long WrittenAt = long.MinValue;
        public int Suppressed;
    }
}
