using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Grpc;
using Mesh.Client.Http;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Creates gRPC channels to mesh services by <c>xds:///</c> address.</summary>
public static class ServiceMeshGrpcChannelExtensions
{
    /// <summary>
    /// Creates a channel to a mesh service, <c>xds:///inventory</c> or <c>xds:///inventory:9090</c>. Each call is
    /// routed by the mesh as an IHttpClientFactory request is: the service's route table (path and header matches,
    /// weighted clusters, subsets), the cluster's load-balancing policy, the route's timeout and retries, and mTLS
    /// (this workload's current SVID, the server's SPIFFE ID checked against the cluster's expected identities) when
    /// the cluster asks for it. The server sees the target's name as :authority. Requires <c>AddServiceMesh()</c>.
    /// </summary>
    /// <param name="services">The application's services, e.g. <c>app.Services</c>.</param>
    /// <param name="address">An <c>xds:///</c> address naming a mesh service.</param>
    /// <param name="configure">
    /// Other channel settings (message sizes, retries, service config, logging). The mesh sets
    /// <see cref="GrpcChannelOptions.ServiceProvider"/>, <see cref="GrpcChannelOptions.Credentials"/> (insecure: the
    /// mesh runs TLS itself, per connection), <see cref="GrpcChannelOptions.HttpHandler"/> (the mesh's routing handler
    /// over its per-endpoint connection pools) and <see cref="GrpcChannelOptions.DisposeHttpClient"/>. Leave
    /// Credentials, HttpHandler and HttpClient unset.
    /// </param>
    /// <returns>A channel the caller disposes.</returns>
    public static GrpcChannel CreateMeshGrpcChannel(this IServiceProvider services, string address, Action<GrpcChannelOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(address);
        if (!Uri.TryCreate(address, UriKind.Absolute, out var target) || target.Scheme != "xds")
        {
            throw new ArgumentException(
                $"'{address}' is not an xds:/// address such as xds:///inventory. For http://inventory use AddGrpcClient, which goes through the mesh's IHttpClientFactory pipeline.",
                nameof(address));
        }

        var httpAddress = XdsTarget.ToHttpAddress(target);
        var options = new GrpcChannelOptions();
        configure?.Invoke(options);
        if (options.HttpClient is not null || options.HttpHandler is not null)
        {
            throw new ArgumentException("GrpcChannelOptions.HttpClient and HttpHandler must be left unset for a mesh channel: its calls go through the mesh's routing handler and per-endpoint connection pools (routes, retries, mTLS).", nameof(configure));
        }

        if (options.Credentials is not null && !ReferenceEquals(options.Credentials, ChannelCredentials.Insecure))
        {
            throw new ArgumentException("GrpcChannelOptions.Credentials must be left unset (or Insecure) for a mesh channel: the mesh runs mTLS itself on each connection whose cluster asks for it. Send call credentials as call metadata.", nameof(configure));
        }

        var factory = services.GetService<IMeshOutboundHandlerFactory>()
            ?? throw new InvalidOperationException("The service mesh is not registered: call builder.AddServiceMesh() or services.AddServiceMesh() before creating mesh gRPC channels.");

        // Why not a Grpc.Net.Client LoadBalancer whose picker routes: its BalancerHttpHandler picks once, outside any
        // handler the app or the mesh can add, so a route retry could not pick another endpoint (nor a route timeout
        // span the attempts), and LEAST_REQUEST, subsets' mTLS pools and outlier ejection would need a second copy.
        // Without the channel's balancer every call is one request through the same handler as IHttpClientFactory
        // clients (measured: that path was also the faster one, 0.90× vs 0.71× of a plain channel before this change).
        // The chain ends in MeshServiceOnlyHandler, not a SocketsHttpHandler, so Grpc.Net.Client's balancer opens no
        // connections of its own: its BalancerHttpHandler still runs on each call, as on every GrpcChannel built from a
        // handler (a plain channel's included), but only picks the one static address, http://<service>.
        var handler = factory.CreateHandler();
        options.HttpHandler = handler;
        options.Credentials = ChannelCredentials.Insecure;
        options.ServiceProvider = services;
        options.DisposeHttpClient = true;
        try
        {
            return GrpcChannel.ForAddress(httpAddress, options);
        }
        catch
        {
            handler.Dispose();
            throw;
        }
    }
}
