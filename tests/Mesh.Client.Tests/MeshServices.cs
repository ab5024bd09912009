using Mesh.Client.Discovery;
using Mesh.Client.Grpc;
using Mesh.Client.Http;
using Mesh.Client.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests;

/// <summary>Registers what AddServiceMesh() would (fixed snapshot source, router, names, time, options) plus HTTP and gRPC.</summary>
internal static class MeshServices
{
    public const string ControlPlane = "http://127.0.0.1:15010/";

    public static ServiceCollection Create(FixedSnapshotSource source, Action<ServiceMeshOptions>? configure = null)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<IMeshSnapshotSource>(source);
        services.AddSingleton(TestSnapshots.Names);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(sp => new MeshRouter(sp.GetRequiredService<IMeshSnapshotSource>(), sp.GetRequiredService<MeshHostNames>()));
        services.AddOptions<ServiceMeshOptions>().Configure(options =>
        {
            options.ControlPlane.Address = new Uri(ControlPlane);
            options.Resilience.RetryDelay = TimeSpan.FromMilliseconds(1);
            configure?.Invoke(options);
        });
        services.AddServiceMeshHttp();
        services.AddServiceMeshGrpc();
        return services;
    }
}
