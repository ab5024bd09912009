using Mesh.Client.Telemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace OpenTelemetry;

/// <summary>Subscribes OpenTelemetry providers to the mesh client's meter and activity source.</summary>
public static class ServiceMeshInstrumentationExtensions
{
    /// <summary>
    /// Collects the mesh client's metrics: Istio's standard request metrics (<c>istio_requests_total</c>,
    /// <c>istio_request_duration_milliseconds</c>, <c>istio_request_bytes</c>, <c>istio_response_bytes</c>) for both
    /// reporters, and the client's own instruments.
    /// </summary>
    /// <param name="builder">The meter provider builder.</param>
    /// <returns>The same builder.</returns>
    public static MeterProviderBuilder AddServiceMeshInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter(MeshTelemetry.MeterName);
    }

    /// <summary>Collects the mesh client's spans.</summary>
    /// <param name="builder">The tracer provider builder.</param>
    /// <returns>The same builder.</returns>
    public static TracerProviderBuilder AddServiceMeshInstrumentation(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddSource(MeshTelemetry.ActivitySourceName);
    }
}
