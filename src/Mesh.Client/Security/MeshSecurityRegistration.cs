using Mesh.Client.Authorization;
using Mesh.Client.Xds;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Security;

/// <summary>Registers workload identity, mTLS and inbound PeerAuthentication. Idempotent.</summary>
internal static partial class MeshSecurityRegistration
{
    public static IServiceCollection AddServiceMeshSecurity(this IServiceCollection services)
    {
        services.TryAddSingleton(sp => CreateStore(sp.GetRequiredService<IOptions<ServiceMeshOptions>>().Value, sp.GetRequiredService<ILoggerFactory>()));
        services.TryAddSingleton<IWorkloadCertificateSource>(sp => sp.GetRequiredService<WorkloadCertificateStore>());

        // The control plane's inbound listener decides each port's mode; Mesh:Inbound:Mode applies until it has spoken.
        services.TryAddSingleton(sp => new InboundPolicyStore(InboundPolicyStore.ServesMeshTraffic(sp.GetRequiredService<IOptions<ServiceMeshOptions>>().Value)));
        services.TryAddSingleton<IPeerAuthenticationModeSource>(sp =>
        {
            var configured = sp.GetRequiredService<IOptions<ServiceMeshOptions>>().Value.Inbound.Mode;
            var fallback = PeerAuthenticationModes.TryParse(configured, out var mode) ? mode : PeerAuthenticationMode.Permissive;
            return new InboundPeerAuthenticationModeSource(sp.GetRequiredService<InboundPolicyStore>(), fallback);
        });
        services.TryAddSingleton(sp => new WorkloadIdentityService(
            sp.GetRequiredService<IOptions<ServiceMeshOptions>>(),
            sp.GetRequiredService<WorkloadCertificateStore>(),
            sp.GetRequiredService<ControlPlaneChannel>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<WorkloadIdentityService>>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, WorkloadIdentityService>(sp => sp.GetRequiredService<WorkloadIdentityService>()));
        services.TryAddEnumerable(ServiceDescriptor.Transient<IConfigureOptions<KestrelServerOptions>, MeshKestrelSetup>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IStartupFilter, MeshPeerIdentityStartupFilter>());
        return services;
    }

    private static WorkloadCertificateStore CreateStore(ServiceMeshOptions options, ILoggerFactory loggers)
    {
        var secure = options.ControlPlane.Address?.Scheme == Uri.UriSchemeHttps;
        var bundle = TrustBundle.Empty;
        if (secure && options.ControlPlane.RootCertificate is { Length: > 0 } rootFile)
        {
            try
            {
                bundle = TrustBundle.FromPem(File.ReadAllText(rootFile), rootFile);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or System.Security.Cryptography.CryptographicException)
            {
                // Readiness reports the missing certificate; the handshake with the control plane names the empty bundle.
                Log.RootUnreadable(loggers.CreateLogger<WorkloadCertificateStore>(), rootFile, ex);
            }
        }

        return new WorkloadCertificateStore(secure, options.Identity.TrustDomain, bundle);
    }

    /// <summary>
    /// Gives every Kestrel endpoint the mesh connection middleware (secure mode only). Endpoint defaults apply to
    /// endpoints created after this runs: AddServiceMesh must come before code that calls <c>Listen</c>.
    /// </summary>
    private sealed class MeshKestrelSetup(IServiceProvider services, IOptions<ServiceMeshOptions> options) : IConfigureOptions<KestrelServerOptions>
    {
        public void Configure(KestrelServerOptions kestrel)
        {
            if (options.Value.ControlPlane.Address?.Scheme != Uri.UriSchemeHttps)
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
            services.GetRequiredService<TimeProvider>(),
            services.GetRequiredService<ILoggerFactory>().CreateLogger<MeshInboundConnectionMiddleware>()).OnConnectionAsync);
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Error, "Cannot read Mesh:ControlPlane:RootCertificate {File}.")]
        public static partial void RootUnreadable(ILogger logger, string file, Exception exception);
    }
}
