using Grpc.Net.Client.Balancer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Mesh.Client.Grpc;

/// <summary>Registers the <c>xds</c> resolver that gRPC channels with a <c>ServiceProvider</c> use for <c>xds:///service</c> addresses. Idempotent.</summary>
internal static class ServiceMeshGrpcRegistration
{
    /// <remarks>Expects <c>IMeshSnapshotSource</c>, <c>MeshHostNames</c> and <c>TimeProvider</c> to be registered by <c>AddServiceMesh()</c>.</remarks>
    public static IServiceCollection AddServiceMeshGrpc(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ResolverFactory, XdsResolverFactory>());
        return services;
    }
}
