namespace Mesh.Client.Discovery;

/// <summary>Passive health checking of a cluster's endpoints (Envoy outlier detection, consecutive failures).</summary>
internal sealed record OutlierDetectionSettings
{
    /// <summary>Envoy's and Istio's defaults: 5 consecutive failures, 30 s base ejection, 300 s maximum.</summary>
    public static readonly OutlierDetectionSettings Default = new();

    /// <summary>Gets the number of consecutive 5xx or timeout failures that ejects an endpoint.</summary>
    public int ConsecutiveFailures { get; init; } = 5;

    public TimeSpan BaseEjectionTime { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan MaxEjectionTime { get; init; } = TimeSpan.FromSeconds(300);
}
