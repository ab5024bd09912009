using System.Reflection;
using Mesh.Client.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Grpc;

/// <summary>
/// Makes <c>AddGrpcClient&lt;T&gt;(o =&gt; o.Address = new Uri("http://inventory"))</c> balance per call through the mesh.
/// A gRPC channel whose handler chain ends in a <see cref="SocketsHttpHandler"/> runs its own single-address balancer
/// and dials <c>inventory:80</c> through DNS before any request reaches <see cref="Http.MeshHttpHandler"/>. For such
/// clients we switch the channel's balancer off (Grpc.Net.Client's <c>__GrpcLoadBalancingDisabled</c> handler property),
/// so each call is one HTTP/2 request that the mesh routes. <c>xds:///</c> clients keep the channel's balancer.
/// Mesh.Client does not reference Grpc.Net.ClientFactory, so its options are read by name when that assembly is loaded.
/// </summary>
internal static class GrpcClientFactorySupport
{
    private const string LoadBalancingDisabledProperty = "__GrpcLoadBalancingDisabled";

    private static readonly Lazy<(Type Monitor, MethodInfo Get, PropertyInfo Address)?> OptionsAccess = new(FindOptions);

    public static void DisableChannelBalancingForMeshAddress(IServiceProvider services, string clientName, HttpMessageHandler? primaryHandler, MeshRouter router, MeshHostNames names)
    {
        if (primaryHandler is not SocketsHttpHandler sockets || OptionsAccess.Value is not { } access)
        {
            return;
        }

        var monitor = services.GetService(access.Monitor);
        if (monitor is null || access.Get.Invoke(monitor, [clientName]) is not { } options || access.Address.GetValue(options) is not Uri address)
        {
            return;
        }

        var isHttp = address.Scheme == Uri.UriSchemeHttp || address.Scheme == Uri.UriSchemeHttps;
        if (isHttp && (router.Snapshot.IsMeshHost(address.IdnHost) || names.LooksLikeMeshHost(address.IdnHost)))
        {
            sockets.Properties[LoadBalancingDisabledProperty] = true;
        }
    }

    private static (Type Monitor, MethodInfo Get, PropertyInfo Address)? FindOptions()
    {
        var optionsType = Type.GetType("Grpc.Net.ClientFactory.GrpcClientFactoryOptions, Grpc.Net.ClientFactory", throwOnError: false);
        var address = optionsType?.GetProperty("Address", typeof(Uri));
        if (optionsType is null || address is null)
        {
            return null;
        }

        var monitor = typeof(Microsoft.Extensions.Options.IOptionsMonitor<>).MakeGenericType(optionsType);
        var get = monitor.GetMethod("Get", [typeof(string)]);
        return get is null ? null : (monitor, get, address);
    }
}
