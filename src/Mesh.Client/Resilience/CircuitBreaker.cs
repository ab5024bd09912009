namespace Mesh.Client.Resilience;

/// <summary>
/// One destination service's circuit: it opens when, within the sampling window, at least the minimum throughput of
/// calls was seen and the failure ratio reached the threshold; it rejects calls for the break duration; then one trial
/// call (half-open) decides between closing and opening again. The same semantics as Polly's circuit breaker, kept in
/// ten rolling buckets; a closed circuit admits a call with one volatile read and counts a success with one atomic
/// add on the current processor's cell (<see cref="Discovery.StripedCounter"/>: cores calling one service at once do not
/// pass one cache line back and forth); failures, bucket turnover and state changes take a short lock.
/// </summary>
internal sealed class CircuitBreaker
{
    private const int BucketCount = 10;

    private readonly Lock _lock = new();
    private readonly Bucket[] _buckets = new Bucket[BucketCount];
    private readonly double _failureRatio;
    private readonly int _minimumThroughput;
    private readonly long _bucketLength;
    private readonly long _breakLength;

    private volatile CircuitState _state;
    private long _openUntil;
    private bool _trialInFlight;

    /// <summary>Gets the policies that made this breaker (what <see cref="Discovery.MeshService.CachedBreaker"/> is checked against).</summary>
    internal object? Owner { get; init; }

    /// <param name="failureRatio">Failure ratio that opens the circuit (0–1].</param>
    /// <param name="minimumThroughput">Calls in the window before the circuit may open.</param>
    /// <param name="samplingDuration">The rolling window.</param>
    /// <param name="breakDuration">How long an open circuit rejects calls.</param>
    /// <param name="timestampFrequency">Ticks per second of the timestamps passed in (<see cref="TimeProvider.TimestampFrequency"/>).</param>
    public CircuitBreaker(double failureRatio, int minimumThroughput, TimeSpan samplingDuration, TimeSpan breakDuration, long timestampFrequency)
    {
        _failureRatio = failureRatio;
        _minimumThroughput = minimumThroughput;
        _bucketLength = Math.Max(1, (long)(samplingDuration.TotalSeconds * timestampFrequency / BucketCount));
        _breakLength = (long)(breakDuration.TotalSeconds * timestampFrequency);
    }

    public CircuitState State => _state;

    /// <summary>
    /// Whether a call may go out now. <paramref name="trial"/> is true for the one call a half-open circuit lets
    /// through; its result must be reported with <see cref="OnResult"/> or <see cref="OnAbandoned"/>.
    /// </summary>
    public bool TryAdmit(long now, out bool trial)
    {
        trial = false;
        if (_state == CircuitState.Closed)
        {
            return true;
        }

        lock (_lock)
        {
            if (_state == CircuitState.Closed)
            {
                return true;
            }

            if (_trialInFlight || now < _openUntil)
            {
                return false;
            }

            _state = CircuitState.HalfOpen;
            _trialInFlight = true;
            trial = true;
            return true;
        }
    }

    /// <summary>Records a call's outcome; returns true when this failure opened the circuit.</summary>
    public bool OnResult(long now, bool failed, bool trial)
    {
        if (!failed && !trial && _state == CircuitState.Closed)
        {
            // The common case takes no lock: one atomic add to this processor's cell of the current bucket. A bucket that
            // turns over between the check and the add may count this call in the new interval; the window is
            // approximate by one call per processor.
            var index = now / _bucketLength;
            ref var current = ref _buckets[(int)(index % BucketCount)];
            if (Volatile.Read(ref current.Index) == index)
            {
                current.Successes.Add(1);
                return false;
            }
        }

        lock (_lock)
        {
            if (trial)
            {
                _trialInFlight = false;
                if (failed)
                {
                    Open(now);
                    return true;
                }

                Array.Clear(_buckets);
                _state = CircuitState.Closed;
                return false;
            }

            if (_state != CircuitState.Closed)
            {
                // A call admitted before the circuit opened: its result belongs to a window that is over.
                return false;
            }

            var index = now / _bucketLength;
            ref var bucket = ref _buckets[(int)(index % BucketCount)];
            if (Volatile.Read(ref bucket.Index) != index)
            {
                // Counts first, index last: a lock-free success that sees the new index adds to the new counts.
                bucket.Successes.Reset();
                bucket.Calls = 0;
                bucket.Failures = 0;
                Volatile.Write(ref bucket.Index, index);
            }

            Interlocked.Increment(ref bucket.Calls);
            if (!failed)
            {
                return false;
            }

            bucket.Failures++;
            long calls = 0, failures = 0;
            for (var i = 0; i < BucketCount; i++)
            {
                ref var b = ref _buckets[i];
                if (Volatile.Read(ref b.Index) > index - BucketCount)
                {
                    calls += Volatile.Read(ref b.Calls) + b.Successes.Sum();
                    failures += b.Failures;
                }
            }

            if (calls < _minimumThroughput || failures < _failureRatio * calls)
            {
                return false;
            }

            Open(now);
            return true;
        }
    }

    /// <summary>The trial call ended without an outcome (the caller cancelled): the next call may try again.</summary>
    public void OnAbandoned(bool trial)
    {
        if (!trial)
        {
            return;
        }

        lock (_lock)
        {
            _trialInFlight = false;
        }
    }

    private void Open(long now)
    {
        _openUntil = now + _breakLength;
        _state = CircuitState.Open;
    }

    private struct Bucket
    {
        public long Index;
        // Calls counted under the lock (failures, and successes that turned the bucket over) and lock-free successes.
        public int Calls;
        public int Failures;
        public Discovery.StripedCounter Successes;
    }
}

internal enum CircuitState
{
    Closed,
    Open,
    HalfOpen,
}
