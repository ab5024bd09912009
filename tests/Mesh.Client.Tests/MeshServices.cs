using Mesh.Client.Discovery;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Mesh.Client.Tests;

/// <summary>
/// The real registrations of <c>AddServiceMeshCore()</c> with a fixed snapshot in place of the xDS client's. Nothing is
/// started: the provider is not a host's, so no hosted service (xDS, identity, registration) runs.
/// </summary>
internal static class MeshServices
{
    public const string ControlPlane = "http://127.0.0.1:15010/";

    public static ServiceCollection Create(FixedSnapshotSource source, Action<ServiceMeshOptions>? configure = null)
    {
        var services = new ServiceCollection();
        services.AddServiceMeshCore();
        services.Configure<ServiceMeshOptions>(options =>
        {
            options.ControlPlane.Address = new Uri(ControlPlane);
            options.Resilience.RetryDelay = TimeSpan.FromMilliseconds(1);
            configure?.Invoke(options);
        });
        services.Replace(ServiceDescriptor.Singleton<IMeshSnapshotSource>(source));
        return services;
    }
}
