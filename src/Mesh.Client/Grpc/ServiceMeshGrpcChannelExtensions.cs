using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Grpc;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Creates gRPC channels to mesh services by <c>xds:///</c> address.</summary>
public static class ServiceMeshGrpcChannelExtensions
{
    /// <summary>
    /// Creates a channel to a mesh service, <c>xds:///inventory</c> or <c>xds:///inventory:9090</c>: the channel
    /// balances per call over the service's endpoints from the mesh snapshot, and each connection uses mTLS (this
    /// workload's current SVID, the server's SPIFFE ID checked against the cluster's expected identities) when the
    /// endpoint's cluster asks for it, plaintext otherwise. Requires <c>AddServiceMesh()</c>.
    /// </summary>
    /// <param name="services">The application's services, e.g. <c>app.Services</c>.</param>
    /// <param name="address">An <c>xds:///</c> address naming a mesh service.</param>
    /// <param name="configure">
    /// Other channel settings (message sizes, retries, service config, logging). The mesh sets
    /// <see cref="GrpcChannelOptions.ServiceProvider"/>, <see cref="GrpcChannelOptions.Credentials"/> (insecure: the
    /// mesh runs TLS itself, per connection) and <see cref="GrpcChannelOptions.DisposeHttpClient"/>. Leave
    /// Credentials and HttpClient unset; HttpHandler may be a <see cref="SocketsHttpHandler"/> without ConnectCallback,
    /// which the channel then owns.
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

        var options = new GrpcChannelOptions();
        configure?.Invoke(options);
        if (options.HttpClient is not null)
        {
            throw new ArgumentException("GrpcChannelOptions.HttpClient must be left unset for a mesh channel: the mesh needs the channel's SocketsHttpHandler to secure its connections.", nameof(configure));
        }

        if (options.Credentials is not null && !ReferenceEquals(options.Credentials, ChannelCredentials.Insecure))
        {
            throw new ArgumentException("GrpcChannelOptions.Credentials must be left unset (or Insecure) for a mesh channel: the mesh runs mTLS itself on each connection whose cluster asks for it. Send call credentials as call metadata.", nameof(configure));
        }

        SocketsHttpHandler sockets;
        if (options.HttpHandler is null)
        {
            sockets = XdsConnectionHandler.CreateSocketsHandler();
        }
        else if (options.HttpHandler is SocketsHttpHandler { ConnectCallback: null } own)
        {
            sockets = own;
        }
        else
        {
            throw new ArgumentException("GrpcChannelOptions.HttpHandler of a mesh channel must be a SocketsHttpHandler without ConnectCallback (or unset): the channel's balancer dials through it and the mesh secures what it dials.", nameof(configure));
        }

        var handler = XdsConnectionHandler.Create(services, target, sockets);
        options.HttpHandler = handler;
        options.Credentials = ChannelCredentials.Insecure;
        options.ServiceProvider = services;

        // The mesh handler holds a snapshot subscription; disposing the channel releases it.
        options.DisposeHttpClient = true;
        try
        {
            return GrpcChannel.ForAddress(target, options);
        }
        catch
        {
            handler.Dispose();
            throw;
        }
    }
}
