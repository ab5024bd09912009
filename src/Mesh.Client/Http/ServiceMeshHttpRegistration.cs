using Mesh.Client.Resilience;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Http;

namespace Mesh.Client.Http;

/// <summary>Registers the mesh's outbound handlers, and puts them into every IHttpClientFactory client. Idempotent.</summary>
internal static class ServiceMeshHttpRegistration
{
    /// <remarks>
    /// Expects <c>IMeshSnapshotSource</c>, <c>MeshRouter</c>, <c>MeshHostNames</c>, <c>TimeProvider</c> and
    /// <c>IOptions&lt;ServiceMeshOptions&gt;</c> to be registered by <c>AddServiceMesh()</c>.
    /// </remarks>
    public static IServiceCollection AddServiceMeshHttp(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddHttpClient();
        services.AddMeshTelemetry();
        services.TryAddSingleton<EndpointConnectionPools>();
        services.TryAddSingleton<MeshResiliencePolicies>();
        services.TryAddSingleton<MeshOutboundHandlerFactory>();
        services.TryAddSingleton<IMeshOutboundHandlerFactory>(sp => sp.GetRequiredService<MeshOutboundHandlerFactory>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHttpMessageHandlerBuilderFilter, MeshHttpMessageHandlerBuilderFilter>());
        return services;
    }
}
