namespace Mesh.ControlPlane.Xds;

/// <summary>What one ADS stream may hold: requests waiting to be handled and names subscribed per type.</summary>
internal sealed record AdsLimits(int MaxPendingRequests, int MaxResourceNamesPerType)
{
    public static AdsLimits Default { get; } = new(64, 10_000);

    /// <summary>How long one response may take to be written (ControlPlane:AdsWriteTimeout); past it the stream ends.</summary>
    public TimeSpan WriteTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Responses being written at once, across every stream that shares these limits; null: no limit. Each write holds a
    /// serialized response until the client has taken most of it, so without a limit a thousand clients syncing from cold
    /// hold a thousand full snapshots at once (gigabytes at 5,000 services).
    /// </summary>
    public SemaphoreSlim? PushThrottle { get; init; }

    /// <summary>
    /// istiod's default for concurrent pushes, PILOT_PUSH_THROTTLE: min(15 + 5 × cores, 100) — 25 on two cores.
    /// </summary>
    public static int DefaultPushThrottle => Math.Min(15 + (5 * Environment.ProcessorCount), 100);

    /// <summary>The limits <paramref name="options"/> set, with a push throttle of <see cref="DefaultPushThrottle"/> shared by the streams that use them.</summary>
    public static AdsLimits From(Configuration.ControlPlaneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new AdsLimits(options.AdsMaxPendingRequests, options.AdsMaxResourceNamesPerType)
        {
            WriteTimeout = options.AdsWriteTimeout,
            PushThrottle = new SemaphoreSlim(DefaultPushThrottle, DefaultPushThrottle),
        };
    }
}
