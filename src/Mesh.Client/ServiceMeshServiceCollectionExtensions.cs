using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Grpc;
using Mesh.Client.Hosting;
using Mesh.Client.Http;
using Mesh.Client.Registration;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the proxyless service mesh to an <see cref="IServiceCollection"/>.</summary>
public static class ServiceMeshServiceCollectionExtensions
{
    /// <summary>
    /// Adds the service mesh with its options bound from the <c>Mesh</c> section of the <c>IConfiguration</c> in the
    /// container, where unknown keys are errors: <see cref="AddServiceMeshCore"/> plus that configuration. Calling it more
    /// than once, or together with <see cref="AddServiceMeshCore"/>, registers once.
    /// </summary>
    /// <param name="services">The service collection; its provider must be able to resolve <c>IConfiguration</c>, as every host's does.</param>
    /// <returns>The service collection, for chaining.</returns>
    public static IServiceCollection AddServiceMesh(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        AddConfiguration(services);
        return services.AddServiceMeshCore();
    }

    /// <summary>
    /// Adds the service mesh as <see cref="AddServiceMesh(IServiceCollection)"/> does, then applies
    /// <paramref name="configure"/> after the configuration binding.
    /// </summary>
    /// <param name="services">The service collection; its provider must be able to resolve <c>IConfiguration</c>, as every host's does.</param>
    /// <param name="configure">Sets options in code; runs after the <c>Mesh</c> section was bound, before validation.</param>
    /// <returns>The service collection, for chaining.</returns>
    public static IServiceCollection AddServiceMesh(this IServiceCollection services, Action<ServiceMeshOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddServiceMesh();
        services.Configure(configure);
        return services;
    }

    /// <summary>
    /// Adds the service mesh's services without reading configuration, for hosts that set <see cref="ServiceMeshOptions"/>
    /// themselves (<c>services.Configure&lt;ServiceMeshOptions&gt;(…)</c> or a binding of their own): the xDS client, workload
    /// identity and inbound mTLS, the <c>mesh</c> readiness health check (tag <c>ready</c>), self-registration, inbound
    /// authorization and the mesh request path for IHttpClientFactory and gRPC clients. The options are validated when the
    /// host starts, each error naming its key. Calling it more than once registers once.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <returns>The service collection, for chaining.</returns>
    public static IServiceCollection AddServiceMeshCore(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);

        // The health check registration is not idempotent by itself: a second one named "mesh" would fail the health service.
        if (services.Any(d => d.ServiceType == typeof(ServiceMeshMarker)))
        {
            return services;
        }

        services.AddSingleton<ServiceMeshMarker>();
        services.AddOptions<ServiceMeshOptions>().ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<ServiceMeshOptions>, ServiceMeshOptionsValidator>());
        services.AddLogging();
        services.TryAddSingleton(TimeProvider.System);

        services.AddServiceMeshSecurity();
        services.TryAddSingleton<ControlPlaneChannel>();
        services.TryAddSingleton<XdsClient>();
        services.TryAddSingleton<IMeshSnapshotSource>(sp => sp.GetRequiredService<XdsClient>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, XdsClient>(sp => sp.GetRequiredService<XdsClient>()));
        services.TryAddSingleton<MeshHostNames>();
        services.TryAddSingleton<MeshRouter>();

        services.TryAddSingleton<MeshPortNames>();
        services.TryAddSingleton<WorkloadRegistrationService>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, WorkloadRegistrationService>(sp => sp.GetRequiredService<WorkloadRegistrationService>()));

        services.AddHealthChecks().AddCheck<MeshReadinessHealthCheck>(MeshReadinessHealthCheck.Name, tags: [MeshReadinessHealthCheck.ReadyTag]);

        services.AddServiceMeshHttp();
        services.AddServiceMeshGrpc();
        services.AddMeshAuthorization();
        return services;
    }

    private static void AddConfiguration(IServiceCollection services)
    {
        if (services.Any(d => d.ServiceType == typeof(ServiceMeshConfigurationSection)))
        {
            return;
        }

        // Its presence also turns on the validator's unknown-key check of the section.
        services.AddSingleton<ServiceMeshConfigurationSection>();
        services.AddOptions<ServiceMeshOptions>().BindConfiguration(ServiceMeshOptions.SectionName);
    }

    /// <summary>Marks a service collection the mesh was added to, so a second call adds nothing.</summary>
    private sealed class ServiceMeshMarker;
}
