using System.Collections.Immutable;
using System.Runtime.InteropServices;

namespace Mesh.Client.Discovery;

/// <summary>
/// Envoy's outlier detection for one cluster (consecutive 5xx and consecutive gateway errors; envoy
/// <c>intro/arch_overview/upstream/outlier.rst</c>, "Ejection algorithm"):
/// an endpoint is ejected the moment its streak reaches the threshold, unless that would take the ejected share of
/// the cluster above <c>max_ejection_percent</c>; every ejection raises its multiplier by one, an ejection lasts
/// <c>min(base × multiplier, max(base, max_ejection_time))</c> and ends at the first <c>interval</c> sweep after
/// that; each sweep that finds an endpoint in rotation lowers its multiplier by one. The sweep runs lazily, from the
/// first pick at or after it is due, so an idle client runs no timer; a sweep that comes late decays the
/// multipliers by every interval that passed. Below the panic threshold, picks ignore health and ejection.
/// </summary>
internal sealed class OutlierDetector
{
    // Created at the first ejection: a snapshot holds a detector per cluster, and most never eject.
    private Lock? _lock;
    private readonly MeshEndpoint[] _endpoints;
    private readonly int _healthy;
    private readonly int _maxMultiplier;
    private long _nextSweep = long.MinValue;
    private long _intervalTicks;
    private long _baseTicks;
    private long _capTicks;
    private int _ejectedHealthy;
    private int _ejected;
    private int _sweeping;

    public OutlierDetector(OutlierDetectionSettings settings, ImmutableArray<MeshEndpoint> endpoints)
    {
        ArgumentNullException.ThrowIfNull(settings);
        Settings = settings;
        // The cluster's own array (immutable), not a copy: a snapshot holds one per cluster.
        _endpoints = ImmutableCollectionsMarshal.AsArray(endpoints) ?? [];
        foreach (var endpoint in _endpoints)
        {
            _healthy += endpoint.IsHealthy ? 1 : 0;
        }

        var cap = Math.Max(settings.BaseEjectionTime.Ticks, settings.MaxEjectionTime.Ticks);
        _maxMultiplier = (int)Math.Min(int.MaxValue, (cap / Math.Max(1, settings.BaseEjectionTime.Ticks)) + 1);
        Count();
    }

    public OutlierDetectionSettings Settings { get; }

    private Lock Gate => Volatile.Read(ref _lock) ?? Interlocked.CompareExchange(ref _lock, new Lock(), null) ?? _lock;

    /// <summary>Gets how many endpoints are ejected now.</summary>
    public int EjectedCount => Volatile.Read(ref _ejected);

    /// <summary>
    /// Gets whether fewer than <see cref="OutlierDetectionSettings.PanicThresholdPercent"/> of the endpoints are healthy
    /// and in rotation: then a pick balances over all of them (Envoy's panic mode).
    /// </summary>
    public bool IsPanicking
    {
        get
        {
            var threshold = Settings.PanicThresholdPercent;
            var available = _healthy - Volatile.Read(ref _ejectedHealthy);
            return threshold > 0 && _endpoints.Length > 0 && available * 100d < threshold * _endpoints.Length;
        }
    }

    /// <summary>Runs the sweep if it is due at <paramref name="now"/>; one comparison when it is not.</summary>
    public void Sweep(long now, long timestampFrequency)
    {
        var next = Volatile.Read(ref _nextSweep);
        if (now < next || Interlocked.CompareExchange(ref _sweeping, 1, 0) != 0)
        {
            return;
        }

        try
        {
            if (next == long.MinValue)
            {
                // The first call starts the clock: ticks of the caller's TimeProvider are known from here on.
                _intervalTicks = Math.Max(1, ToTicks(Settings.Interval, timestampFrequency));
                _baseTicks = ToTicks(Settings.BaseEjectionTime, timestampFrequency);
                _capTicks = ToTicks(Settings.MaxEjectionTime > Settings.BaseEjectionTime ? Settings.MaxEjectionTime : Settings.BaseEjectionTime, timestampFrequency);
                Volatile.Write(ref _nextSweep, now + _intervalTicks);
                return;
            }

            var intervals = (int)Math.Min(int.MaxValue, ((now - next) / _intervalTicks) + 1);
            foreach (var endpoint in _endpoints)
            {
                if (!endpoint.IsEjected(now))
                {
                    endpoint.DecayMultiplier(intervals);
                    continue;
                }

                var duration = _baseTicks > _capTicks / Math.Max(1, endpoint.EjectionMultiplier)
                    ? _capTicks
                    : Math.Min(_baseTicks * endpoint.EjectionMultiplier, _capTicks);
                if (now - endpoint.EjectedAt >= duration)
                {
                    endpoint.Uneject();
                }
            }

            Recount();
            Volatile.Write(ref _nextSweep, next + ((long)intervals * _intervalTicks));
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    /// <summary>A non-5xx answer from <paramref name="endpoint"/>.</summary>
    public static void OnSuccess(MeshEndpoint endpoint) => endpoint.RecordSuccess();

    /// <summary>
    /// A 5xx answer from <paramref name="endpoint"/>, or a local-origin failure counted as Envoy counts it when local and
    /// external errors are not split (failed connection or reset as 503, timeout as 504).
    /// </summary>
    /// <returns>true when this error ejected the endpoint.</returns>
    public bool OnError(MeshEndpoint endpoint, int statusCode, long now)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var (fiveXx, gateway) = endpoint.RecordError(statusCode is 502 or 503 or 504);
        var settings = Settings;
        var tripped = (settings.Consecutive5xx > 0 && fiveXx == settings.Consecutive5xx)
            || (settings.ConsecutiveGatewayFailure > 0 && gateway == settings.ConsecutiveGatewayFailure);
        if (!tripped)
        {
            return false;
        }

        // As Envoy: a tripped streak starts over whether or not the ejection is allowed.
        endpoint.ResetStreaks();
        return TryEject(endpoint, now);
    }

    private bool TryEject(MeshEndpoint endpoint, long now)
    {
        if (endpoint.IsEjected(now) || _endpoints.Length == 0)
        {
            return false;
        }

        // Envoy's rule: eject only if the ejected share, counting this one, stays within max_ejection_percent. A lock
        // makes check-and-eject one step, so concurrent ejections never pass the limit together (ejections are rare).
        lock (Gate)
        {
            var ejected = Volatile.Read(ref _ejected);
            if (100L * (ejected + 1) > (long)Settings.MaxEjectionPercent * _endpoints.Length
                && !(Settings.AlwaysEjectOneHost && ejected == 0))
            {
                return false;
            }

            if (!endpoint.TryEject(now, _maxMultiplier))
            {
                return false;
            }

            Interlocked.Increment(ref _ejected);
            if (endpoint.IsHealthy)
            {
                Interlocked.Increment(ref _ejectedHealthy);
            }

            return true;
        }
    }

    private void Recount()
    {
        lock (Gate)
        {
            Count();
        }
    }

    // Endpoints outlive snapshots: a new cluster starts from the ejections they carry. The constructor counts without the
    // lock: nothing else sees this detector yet (another snapshot's detector ejecting the same endpoints holds its own lock).
    private void Count()
    {
        int ejected = 0, ejectedHealthy = 0;
        foreach (var endpoint in _endpoints)
        {
            if (endpoint.IsEjected(0))
            {
                ejected++;
                ejectedHealthy += endpoint.IsHealthy ? 1 : 0;
            }
        }

        Volatile.Write(ref _ejected, ejected);
        Volatile.Write(ref _ejectedHealthy, ejectedHealthy);
    }

    private static long ToTicks(TimeSpan value, long frequency) =>
        value.TotalSeconds * frequency >= long.MaxValue / 4 ? long.MaxValue / 4 : (long)(value.TotalSeconds * frequency);
}
