namespace Mesh.Client.Discovery;

/// <summary>
/// A cluster's passive health checking (Envoy <c>outlier_detection</c>, consecutive errors only: Istio turns
/// success-rate ejection off) and its panic threshold (<c>common_lb_config.healthy_panic_threshold</c>).
/// </summary>
internal sealed record OutlierDetectionSettings
{
    /// <summary>
    /// What a cluster without <c>outlier_detection</c> gets: Envoy's field defaults, except that at most half of the
    /// endpoints (not 10 %) may be ejected, so that a dead instance of a two- or three-instance service still leaves
    /// rotation. Envoy would not eject at all; this client always has, and an app without a DestinationRule keeps it.
    /// </summary>
    public static readonly OutlierDetectionSettings Default = new() { MaxEjectionPercent = 50 };

    /// <summary>The settings of an <c>outlier_detection</c> that sets nothing: Envoy's defaults.</summary>
    public static readonly OutlierDetectionSettings EnvoyDefaults = new();

    /// <summary>Gets the consecutive 5xx (or local-origin failures) that eject an endpoint; 0: never (enforcing 0).</summary>
    public int Consecutive5xx { get; init; } = 5;

    /// <summary>Gets the consecutive 502/503/504 (or local-origin failures) that eject an endpoint; 0: never (Envoy enforces it at 0 % by default).</summary>
    public int ConsecutiveGatewayFailure { get; init; }

    /// <summary>Gets the period of the sweep that un-ejects endpoints and lets the ejection multiplier decay.</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan BaseEjectionTime { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan MaxEjectionTime { get; init; } = TimeSpan.FromSeconds(300);

    /// <summary>Gets the share of the cluster's endpoints that may be ejected at once (0–100); 0: none ever.</summary>
    public int MaxEjectionPercent { get; init; } = 10;

    /// <summary>
    /// Gets the panic threshold (0–100): when fewer than this share of endpoints is healthy and not ejected, requests
    /// are balanced over all endpoints. 0 disables panic mode: with no endpoint left a request fails.
    /// </summary>
    public double PanicThresholdPercent { get; init; } = 50;

    /// <summary>Gets whether one endpoint may always be ejected whatever <see cref="MaxEjectionPercent"/> says (<c>always_eject_one_host</c>).</summary>
    public bool AlwaysEjectOneHost { get; init; }
}
