using System.Reflection;
using Mesh.Client.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Grpc;

/// <summary>
/// Makes <c>AddGrpcClient&lt;T&gt;(o =&gt; o.Address = new Uri("http://inventory"))</c> balance per call through the mesh.
/// A gRPC channel whose handler chain ends in a <see cref="SocketsHttpHandler"/> runs its own single-address balancer
/// and dials <c>inventory:80</c> through DNS before any request reaches <see cref="Http.MeshHttpHandler"/>. For such
/// clients we switch the channel's balancer off (Grpc.Net.Client's <c>__GrpcLoadBalancingDisabled</c> handler property),
/// so each call is one HTTP/2 request that the mesh routes. <c>xds:///</c> clients keep the channel's balancer, and
/// their primary handler is wrapped in an <see cref="XdsConnectionHandler"/> so its connections get mesh mTLS.
/// Mesh.Client does not reference Grpc.Net.ClientFactory, so its options are read by name when that assembly is loaded.
/// </summary>
internal static class GrpcClientFactorySupport
{
    private const string LoadBalancingDisabledProperty = "__GrpcLoadBalancingDisabled";

    private static readonly Lazy<(Type Monitor, MethodInfo Get, PropertyInfo Address)?> OptionsAccess = new(FindOptions);

    public static void DisableChannelBalancingForMeshAddress(IServiceProvider services, string clientName, HttpMessageHandler? primaryHandler, MeshRouter router, MeshHostNames names)
    {
        if (primaryHandler is not SocketsHttpHandler sockets || GetAddress(services, clientName) is not { } address)
        {
            return;
        }

        var isHttp = address.Scheme == Uri.UriSchemeHttp || address.Scheme == Uri.UriSchemeHttps;
        if (isHttp && (router.Snapshot.IsMeshHost(address.IdnHost) || names.LooksLikeMeshHost(address.IdnHost)))
        {
            sockets.Properties[LoadBalancingDisabledProperty] = true;
        }
    }

    /// <summary>
    /// Gives the client's connections mesh mTLS when it is a gRPC client of an <c>xds:///</c> address whose channel
    /// balances over a <see cref="SocketsHttpHandler"/>; returns the primary handler to use.
    /// </summary>
    public static HttpMessageHandler SecureXdsChannel(IServiceProvider services, string clientName, HttpMessageHandler primaryHandler)
    {
        if (primaryHandler is SocketsHttpHandler { ConnectCallback: null } sockets
            && GetAddress(services, clientName) is { Scheme: "xds" } address)
        {
            return XdsConnectionHandler.Create(services, address, sockets);
        }

        return primaryHandler;
    }

    private static Uri? GetAddress(IServiceProvider services, string clientName)
    {
        if (OptionsAccess.Value is not { } access)
        {
            return null;
        }

        var monitor = services.GetService(access.Monitor);
        return monitor is not null && access.Get.Invoke(monitor, [clientName]) is { } options ? access.Address.GetValue(options) as Uri : null;
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
