using Mesh.Client.Authorization;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Inbound authorization (PeerAuthentication + AuthorizationPolicy) for Kestrel mesh ports.</summary>
internal static class MeshAuthorizationServiceCollectionExtensions
{
    /// <summary>Registers the inbound policy store (fed by the xDS client) and the authorization middleware; idempotent.</summary>
    public static IServiceCollection AddMeshAuthorization(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddOptions();
        services.TryAddSingleton<InboundPolicyStore>();
        services.AddMeshTelemetry();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStartupFilter, MeshAuthorizationStartupFilter>());
        return services;
    }
}
