using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests;

/// <summary>Hosts built the way an app that only has an <see cref="IServiceCollection"/> adds the mesh.</summary>
internal static class MeshHosts
{
    /// <summary>
    /// A generic host (<see cref="HostBuilder"/>, not an IHostApplicationBuilder) with <paramref name="settings"/> as its app
    /// configuration: the mesh can only find it as the <see cref="IConfiguration"/> in the container.
    /// </summary>
    public static IHost WithServices(Dictionary<string, string?> settings, Action<IServiceCollection> addMesh) =>
        new HostBuilder()
            .ConfigureAppConfiguration(configuration => configuration.AddInMemoryCollection(settings))
            .ConfigureServices(services =>
            {
                services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
                addMesh(services);
            })
            .UseDefaultServiceProvider(options =>
            {
                // A type registration the container cannot construct fails the build, not the first request that needs it.
                options.ValidateOnBuild = true;
                options.ValidateScopes = true;
            })
            .Build();
}
