namespace Mesh.Xds.Retry;

/// <summary>
/// The mesh's two back-off rules, each written once: reconnecting a long-lived connection (the client's ADS stream,
/// certificate renewal and registration; the control plane's Kubernetes watches) and Envoy's retry back-off.
/// </summary>
internal static class Backoff
{
    /// <summary>
    /// Reconnect delay after <paramref name="attempt"/> failures in a row (1-based): exponential, capped, jittered —
    /// uniformly in [<paramref name="minShare"/> × c, c) where c = min(<paramref name="max"/>, <paramref name="initial"/> × 2^(attempt−1))
    /// and <paramref name="random"/> is a draw in [0, 1). A <paramref name="minShare"/> of 0 is full jitter (gRPC, AWS).
    /// </summary>
    public static TimeSpan Reconnect(TimeSpan initial, TimeSpan max, int attempt, double random, double minShare = 0)
    {
        var ceiling = Math.Min(max.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt - 1, 0, 30)));
        return TimeSpan.FromMilliseconds(ceiling * (minShare + ((1 - minShare) * random)));
    }

    /// <summary>
    /// Envoy's back-off before retry <paramref name="retry"/> (1-based): uniformly random in [0, min((2^n − 1) × base, max)),
    /// saturating at <paramref name="max"/> rather than overflowing for long bases (durations up to 49 days are valid).
    /// Envoy's default maximum is 10 × base.
    /// </summary>
    public static TimeSpan Retry(TimeSpan baseInterval, TimeSpan max, int retry, double random)
    {
        var factor = (1L << Math.Clamp(retry, 1, 30)) - 1;
        var ceiling = baseInterval.Ticks > max.Ticks / factor ? max.Ticks : baseInterval.Ticks * factor;
        return TimeSpan.FromTicks(ceiling) * random;
    }
}
