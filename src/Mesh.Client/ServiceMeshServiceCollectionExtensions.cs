using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Grpc;
using Mesh.Client.Http;
using Mesh.Client.Hosting;
using Mesh.Client.Registration;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.Hosting;

/// <summary>Adds the proxyless service mesh to an application.</summary>
public static class ServiceMeshHostingExtensions
{
    /// <summary>
    /// Adds the service mesh: options from the <c>Mesh</c> configuration section (validated at startup),
    /// the xDS client, the <c>mesh</c> readiness health check (tag <c>ready</c>), self-registration and the
    /// mesh request path for IHttpClientFactory and gRPC clients. Calling it more than once registers once.
    /// </summary>
    public static TBuilder AddServiceMesh<TBuilder>(this TBuilder builder)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        AddCore(builder);
        return builder;
    }

    /// <summary>Adds the service mesh, then applies <paramref name="configure"/> after configuration binding.</summary>
    public static TBuilder AddServiceMesh<TBuilder>(this TBuilder builder, Action<ServiceMeshOptions> configure)
        where TBuilder : IHostApplicationBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        AddCore(builder);
        builder.Services.Configure(configure);
        return builder;
    }

    private static void AddCore(IHostApplicationBuilder builder)
    {
        var services = builder.Services;
        if (services.Any(d => d.ServiceType == typeof(ServiceMeshMarker)))
        {
            return;
        }

        services.AddSingleton<ServiceMeshMarker>();
        services.AddOptions<ServiceMeshOptions>()
            .BindConfiguration(ServiceMeshOptions.SectionName)
            .ValidateOnStart();
        var configuration = builder.Configuration;
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ServiceMeshOptions>, ServiceMeshOptionsValidator>(
            _ => new ServiceMeshOptionsValidator(configuration)));

        services.TryAddSingleton(TimeProvider.System);
        services.AddServiceMeshSecurity();
        services.TryAddSingleton(sp => new ControlPlaneChannel(
            sp.GetRequiredService<IOptions<ServiceMeshOptions>>(),
            sp.GetRequiredService<WorkloadCertificateStore>(),
            sp.GetRequiredService<TimeProvider>()));
        services.TryAddSingleton(sp => new XdsClient(
            sp.GetRequiredService<IOptions<ServiceMeshOptions>>(),
            sp.GetRequiredService<ControlPlaneChannel>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<XdsClient>>(),
            sp.GetService<IHostEnvironment>()?.ApplicationName ?? "app",
            inbound: sp.GetRequiredService<Mesh.Client.Authorization.InboundPolicyStore>()));
        services.TryAddSingleton<IMeshSnapshotSource>(sp => sp.GetRequiredService<XdsClient>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, XdsClient>(sp => sp.GetRequiredService<XdsClient>()));
        services.TryAddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<ServiceMeshOptions>>().Value;
            return new MeshHostNames(options.Namespace, options.ClusterDomain);
        });
        services.TryAddSingleton(sp => new MeshRouter(sp.GetRequiredService<IMeshSnapshotSource>(), sp.GetRequiredService<MeshHostNames>()));

        services.TryAddSingleton<WorkloadRegistrationService>(sp => new WorkloadRegistrationService(
            sp.GetRequiredService<IOptions<ServiceMeshOptions>>(),
            sp,
            sp.GetRequiredService<ControlPlaneChannel>(),
            sp.GetRequiredService<IHostApplicationLifetime>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetRequiredService<ILogger<WorkloadRegistrationService>>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, WorkloadRegistrationService>(sp => sp.GetRequiredService<WorkloadRegistrationService>()));

        services.AddHealthChecks().AddCheck<MeshReadinessHealthCheck>(MeshReadinessHealthCheck.Name, tags: [MeshReadinessHealthCheck.ReadyTag]);

        services.AddServiceMeshHttp();
        services.AddServiceMeshGrpc();
        services.AddMeshAuthorization();
    }

    /// <summary>Marks a service collection the mesh was added to, so a second call adds nothing.</summary>
    private sealed class ServiceMeshMarker;
}
