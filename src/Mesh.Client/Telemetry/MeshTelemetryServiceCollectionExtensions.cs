using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the mesh client's instruments and access log; idempotent.</summary>
internal static class MeshTelemetryServiceCollectionExtensions
{
    public static IServiceCollection AddMeshTelemetry(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions();
        services.AddMetrics();
        services.AddLogging();
        services.TryAddSingleton<MeshMetrics>();
        services.TryAddSingleton<IstioRequestMetrics>();
        services.TryAddSingleton<MeshAccessLog>();
        return services;
    }
}
