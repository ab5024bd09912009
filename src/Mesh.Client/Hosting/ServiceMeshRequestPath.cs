using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Hosting;

/// <summary>Hook for the request path (HTTP and gRPC): the request path registers itself here.</summary>
internal static class ServiceMeshRequestPath
{
    public static void Add(IServiceCollection services)
    {
    }
}
