using Grpc.Net.Client.Balancer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Mesh.Client.Grpc;

/// <summary>
/// Registers what <c>xds:///</c> gRPC clients need: the rewrite of <c>AddGrpcClient</c> xds addresses, and an <c>xds</c>
/// resolver that refuses hand-built channels with a message saying how to create a mesh channel. Idempotent.
/// </summary>
internal static class ServiceMeshGrpcRegistration
{
    public static IServiceCollection AddServiceMeshGrpc(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (services.Any(d => d.ServiceType == typeof(XdsGrpcClients)))
        {
            return services;
        }

        services.AddSingleton<XdsGrpcClients>();
        GrpcClientFactorySupport.AddXdsAddressRewrite(services);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ResolverFactory, XdsResolverFactory>());
        return services;
    }
}
