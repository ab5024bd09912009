using System.Diagnostics;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The names of the mesh client's one <see cref="System.Diagnostics.Metrics.Meter"/> and one <see cref="ActivitySource"/>.
/// Listen with OpenTelemetry's <c>AddServiceMeshInstrumentation()</c> (or <c>AddMeter(MeshTelemetry.MeterName)</c>),
/// <c>dotnet-counters monitor --counters Mesh.Client</c>, or a <see cref="System.Diagnostics.Metrics.MeterListener"/>.
/// </summary>
public static class MeshTelemetry
{
    /// <summary>The name of the mesh client's meter: Istio's standard request metrics and the client's own instruments.</summary>
    public const string MeterName = "Mesh.Client";

    /// <summary>The name of the mesh client's activity source.</summary>
    public const string ActivitySourceName = "Mesh.Client";

    /// <summary>
    /// The logger category of the access log (<c>Mesh:Telemetry:AccessLog</c>): one Information entry per request, its
    /// fields named as the keys of Istio's JSON access log format (<c>response_code</c>, <c>upstream_cluster</c>, …).
    /// </summary>
    public const string AccessLogCategory = "Mesh.AccessLog";

    /// <summary>
    /// The label sets per instrument an OpenTelemetry View should allow Istio's series (<c>istio_*</c>), above the SDK's
    /// default of 2,000, past which a set loses every label: both reporters share each instrument and the mesh folds each
    /// at 1,024 sets, then keeps the folded ones. <c>metrics.AddView("istio_*", new MetricStreamConfiguration {
    /// CardinalityLimit = MeshTelemetry.IstioCardinalityLimit })</c>.
    /// </summary>
    public const int IstioCardinalityLimit = 4096;

    /// <summary>The one activity source, created once (an ActivitySource is cheap until something listens).</summary>
    internal static readonly ActivitySource ActivitySource = new(ActivitySourceName);
}
