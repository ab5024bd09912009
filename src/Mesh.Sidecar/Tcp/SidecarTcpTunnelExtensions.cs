using System.Collections.Immutable;
using System.Net;
using Mesh.Client.Registration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tcp;

/// <summary>The sidecar's opaque TCP tunnels (<c>Sidecar:Tcp</c>).</summary>
internal static class SidecarTcpTunnelExtensions
{
    /// <summary>
    /// Adds one Kestrel endpoint per tunnel of <paramref name="options"/> (<c>Sidecar:Tcp</c>, read and validated with the
    /// rest of the sidecar's options), each served by a connection handler: outbound tunnels listen on
    /// <c>127.0.0.1:LocalPort</c>, outside the mesh; inbound tunnels are mesh ports on <paramref name="inboundAddress"/>
    /// (mTLS per PeerAuthentication by Mesh.Client's connection middleware), registered with the workload under their
    /// ServiceEntry port name. Adds the service mesh when not added yet. Writes one stdout line per tunnel once bound.
    /// </summary>
    /// <param name="builder">The sidecar's builder.</param>
    /// <param name="options">The tunnels.</param>
    /// <param name="inboundAddress">The address of the sidecar's mesh ports (<c>Sidecar:InboundAddress</c>).</param>
    /// <returns>The builder, for chaining.</returns>
    public static WebApplicationBuilder AddSidecarTcpTunnels(this WebApplicationBuilder builder, SidecarTcpOptions options, IPAddress inboundAddress)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        if (builder.Services.Any(d => d.ServiceType == typeof(SidecarTcpOptions)))
        {
            return builder;
        }

        // Before the endpoints below: the mesh's endpoint defaults (its connection middleware) apply to endpoints made after it.
        builder.AddServiceMesh();
        builder.Services.AddSingleton(options);
        var listeners = new TcpTunnelListeners();
        builder.Services.AddSingleton(listeners);
        builder.Services.AddHostedService<TcpTunnelAnnouncer>();
        if (options.Outbound.IsEmpty && options.Inbound.IsEmpty)
        {
            return builder;
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            var services = kestrel.ApplicationServices;
            foreach (var tunnel in options.Outbound)
            {
                kestrel.Listen(IPAddress.Loopback, tunnel.LocalPort, listen =>
                {
                    listen.ExcludeFromServiceMesh();
                    var handler = ActivatorUtilities.CreateInstance<TcpOutboundConnectionHandler>(services, tunnel);
                    listen.Use(_ => handler.OnConnectedAsync);
                    listeners.Add($"Sidecar tcp outbound {tunnel}", listen);
                });
            }

            // Not opened in secure mode by a sidecar that neither registers nor names the address the control plane knows it
            // by: no inbound policy would arrive for it (SidecarListeners.OpensInbound).
            var inbound = Hosting.SidecarListeners.OpensInbound(services.GetRequiredService<IOptions<Mesh.Client.ServiceMeshOptions>>().Value) ? options.Inbound : ImmutableArray<TcpInboundTunnel>.Empty;
            foreach (var tunnel in options.Inbound.Except(inbound))
            {
                listeners.Add($"Sidecar tcp inbound {tunnel.Name} not opened: the sidecar does not register and names no address the control plane knows it by (Mesh:Service unset, or Mesh:Registration:Enabled=false without Mesh:Registration:Address), so no inbound policy would apply to it", listen: null);
            }

            foreach (var tunnel in inbound)
            {
                kestrel.Listen(inboundAddress, tunnel.Port, listen =>
                {
                    listen.WithMeshPortName(tunnel.Name);
                    var handler = ActivatorUtilities.CreateInstance<TcpInboundConnectionHandler>(services, tunnel);
                    listen.Use(_ => handler.OnConnectedAsync);
                    listeners.Add($"Sidecar tcp inbound {tunnel.Name}", listen);
                });
            }
        });
        return builder;
    }
}
