using Mesh.Client.Authorization;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Security;

/// <summary>Registers workload identity, mTLS and inbound PeerAuthentication. Idempotent.</summary>
internal static class MeshSecurityRegistration
{
    public static IServiceCollection AddServiceMeshSecurity(this IServiceCollection services)
    {
        services.TryAddSingleton<WorkloadCertificateStore>();
        services.TryAddSingleton<MeshExcludedListeners>();
        services.TryAddSingleton<IWorkloadCertificateSource>(sp => sp.GetRequiredService<WorkloadCertificateStore>());

        // The control plane's inbound listener decides each port's mode; Mesh:Inbound:Mode applies until it has spoken.
        services.TryAddSingleton<InboundPolicyStore>();
        services.TryAddSingleton<IPeerAuthenticationModeSource, InboundPeerAuthenticationModeSource>();
        services.TryAddSingleton<WorkloadIdentityService>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, WorkloadIdentityService>(sp => sp.GetRequiredService<WorkloadIdentityService>()));
        services.TryAddEnumerable(ServiceDescriptor.Transient<IConfigureOptions<KestrelServerOptions>, MeshKestrelSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStartupFilter, MeshPeerIdentityStartupFilter>());
        return services;
    }

    /// <summary>
    /// Gives every Kestrel endpoint the mesh connection middleware (secure mode only). Endpoint defaults apply to
    /// endpoints created after this runs: AddServiceMesh must come before code that calls <c>Listen</c>.
    /// </summary>
    private sealed class MeshKestrelSetup(IServiceProvider services, IOptions<ServiceMeshOptions> options) : IConfigureOptions<KestrelServerOptions>
    {
        public void Configure(KestrelServerOptions kestrel)
        {
            if (!options.Value.ControlPlane.IsSecure)
            {
                return;
            }

            // Mesh clients keep http:// URIs over mTLS, so h2 requests arrive with :scheme http on a TLS connection.
            kestrel.AllowAlternateSchemes = true;
            kestrel.ConfigureEndpointDefaults(listen => UseMeshInbound(listen, services));
        }
    }

    public static void UseMeshInbound(ListenOptions listen, IServiceProvider services)
    {
        listen.Use(next => new MeshInboundConnectionMiddleware(
            next,
            listen,
            services.GetRequiredService<IWorkloadCertificateSource>(),
            services.GetRequiredService<IPeerAuthenticationModeSource>(),
            services.GetRequiredService<MeshExcludedListeners>(),
            services.GetRequiredService<TimeProvider>(),
            services.GetRequiredService<ILoggerFactory>().CreateLogger<MeshInboundConnectionMiddleware>()).OnConnectionAsync);
    }
}
