using System.Collections.Concurrent;
using System.Reflection;
using Mesh.Client.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Grpc;

/// <summary>
/// Makes <c>AddGrpcClient&lt;T&gt;(o =&gt; o.Address = new Uri("http://inventory"))</c> and <c>…"xds:///inventory"</c>
/// clients route per call through the mesh. A gRPC channel whose handler chain ends in a <see cref="SocketsHttpHandler"/>
/// runs its own balancer and dials <c>inventory:80</c> through DNS before any request reaches
/// <see cref="Http.MeshHttpHandler"/>. For mesh addresses we switch the channel's balancer off (Grpc.Net.Client's
/// <c>__GrpcLoadBalancingDisabled</c> handler property), so each call is one HTTP/2 request that the mesh routes
/// (route match, weighted cluster, the cluster's balancer, route retries and timeout, mTLS). An <c>xds:///</c> address
/// is rewritten to <c>http://</c> after the app's configuration ran (<see cref="XdsAddressRewrite{TOptions}"/>), since a
/// channel without its balancer accepts only http(s) addresses.
/// Mesh.Client does not reference Grpc.Net.ClientFactory, so its options are read by name when that assembly is loaded.
/// </summary>
internal static class GrpcClientFactorySupport
{
    private const string LoadBalancingDisabledProperty = "__GrpcLoadBalancingDisabled";

    private static readonly Lazy<(Type Options, Type Monitor, MethodInfo Get, PropertyInfo Address)?> OptionsAccess = new(FindOptions);

    /// <summary>Registers the rewrite of <c>xds:///</c> client addresses when Grpc.Net.ClientFactory is present.</summary>
    public static void AddXdsAddressRewrite(IServiceCollection services)
    {
        if (OptionsAccess.Value is not { } access)
        {
            return;
        }

        var rewrite = typeof(XdsAddressRewrite<>).MakeGenericType(access.Options);
        var contract = typeof(IPostConfigureOptions<>).MakeGenericType(access.Options);
        services.Add(ServiceDescriptor.Singleton(contract, sp => Activator.CreateInstance(rewrite, sp.GetRequiredService<XdsGrpcClients>(), access.Address)!));
    }

    /// <summary>Switches the channel's own balancer off for a mesh address; returns whether the client targets <c>xds:///</c>.</summary>
    public static bool DisableChannelBalancingForMeshAddress(IServiceProvider services, string clientName, HttpMessageHandler? primaryHandler, MeshRouter router, MeshHostNames names)
    {
        if (GetAddress(services, clientName) is not { } address)
        {
            return false;
        }

        var xds = services.GetService<XdsGrpcClients>()?.Contains(clientName) == true;
        var isHttp = address.Scheme == Uri.UriSchemeHttp || address.Scheme == Uri.UriSchemeHttps;
        if (primaryHandler is SocketsHttpHandler sockets
            && (xds || (isHttp && (router.Snapshot.IsMeshHost(address.IdnHost) || names.LooksLikeMeshHost(address.IdnHost)))))
        {
            sockets.Properties[LoadBalancingDisabledProperty] = true;
        }

        return xds;
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

    private static (Type Options, Type Monitor, MethodInfo Get, PropertyInfo Address)? FindOptions()
    {
        var optionsType = Type.GetType("Grpc.Net.ClientFactory.GrpcClientFactoryOptions, Grpc.Net.ClientFactory", throwOnError: false);
        var address = optionsType?.GetProperty("Address", typeof(Uri));
        if (optionsType is null || address is null)
        {
            return null;
        }

        var monitor = typeof(IOptionsMonitor<>).MakeGenericType(optionsType);
        var get = monitor.GetMethod("Get", [typeof(string)]);
        return get is null ? null : (optionsType, monitor, get, address);
    }
}

/// <summary>The names of the gRPC factory clients whose address was <c>xds:///</c>.</summary>
internal sealed class XdsGrpcClients
{
    private readonly ConcurrentDictionary<string, byte> _names = new(StringComparer.Ordinal);

    public void Add(string name) => _names.TryAdd(name, 0);

    public bool Contains(string name) => _names.ContainsKey(name);
}

/// <summary>Rewrites a gRPC factory client's <c>xds:///service</c> address to <c>http://service</c> (see <see cref="XdsTarget.ToHttpAddress"/>).</summary>
internal sealed class XdsAddressRewrite<TOptions>(XdsGrpcClients clients, PropertyInfo address) : IPostConfigureOptions<TOptions>
    where TOptions : class
{
    public void PostConfigure(string? name, TOptions options)
    {
        if (address.GetValue(options) is Uri { Scheme: "xds" } target)
        {
            address.SetValue(options, XdsTarget.ToHttpAddress(target));
            clients.Add(name ?? Options.DefaultName);
        }
    }
}
