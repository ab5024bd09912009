using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.Sidecar.Hosting;

/// <summary>Which of the sidecar's HTTP listeners a request came in on.</summary>
internal enum SidecarListener
{
    Inbound,
    Outbound,
    Admin,
}

/// <summary>
/// The sidecar's three HTTP endpoints. A request's listener is its connection's endpoint; ports are read from the endpoints
/// when asked, so a port-0 binding counts by the port Kestrel bound.
/// </summary>
internal sealed class SidecarListeners
{
    public ListenOptions? Inbound { get; set; }

    public ListenOptions? Outbound { get; set; }

    public ListenOptions? Admin { get; set; }

    /// <summary>
    /// Whether the sidecar opens its inbound ports (HTTP and TCP tunnels) for <paramref name="mesh"/>: always over a
    /// plaintext control plane (no identity, so no policy either way); in secure mode when the control plane knows the
    /// workload's address, so that it sends the ports' inbound policy: the sidecar registers, or names the address it is
    /// known by (<c>Mesh:Registration:Address</c>, a Pod's EndpointSlice address on Kubernetes). Otherwise (<c>Mesh:Service</c>
    /// unset, or not registering without an address) no policy would ever arrive and the ports could only answer 503, so an
    /// outbound-only sidecar opens none.
    /// </summary>
    public static bool OpensInbound(Mesh.Client.ServiceMeshOptions mesh)
    {
        ArgumentNullException.ThrowIfNull(mesh);
        return !mesh.ControlPlane.IsSecure
            || (Mesh.Client.Authorization.InboundPolicyStore.ServesMeshTraffic(mesh)
                && (mesh.Registration.Enabled || !string.IsNullOrEmpty(mesh.Registration.Address)));
    }

    /// <summary>The line said instead of the inbound one when <see cref="OpensInbound"/> is false.</summary>
    public const string InboundNotOpened = "Sidecar inbound not opened: the sidecar does not register and names no address the control plane knows it by (Mesh:Service unset, or Mesh:Registration:Enabled=false without Mesh:Registration:Address), so no inbound policy would arrive for it";

    public SidecarListener Of(HttpContext context)
    {
        // The endpoint itself when the mesh's connection middleware runs (secure mode); by port otherwise, which the
        // option checks keep unambiguous (no two of the sidecar's fixed ports are equal).
        if (context.Features.Get<Mesh.Client.Security.MeshEndpointFeature>()?.Endpoint is { } endpoint)
        {
            return ReferenceEquals(endpoint, Admin) ? SidecarListener.Admin
                : ReferenceEquals(endpoint, Outbound) ? SidecarListener.Outbound
                : SidecarListener.Inbound;
        }

        var port = context.Connection.LocalPort;
        return port == Admin?.IPEndPoint?.Port ? SidecarListener.Admin
            : port == Outbound?.IPEndPoint?.Port ? SidecarListener.Outbound
            : SidecarListener.Inbound;
    }

    /// <summary>The lines that tell tests and the demo where each listener is (ports may be ephemeral).</summary>
    public IEnumerable<string> StartupLines()
    {
        yield return Inbound is null ? InboundNotOpened : $"Sidecar inbound listening on {Url(Inbound)}";
        yield return $"Sidecar outbound listening on {Url(Outbound)}";
        yield return $"Sidecar admin listening on {Url(Admin)}";
    }

    private static string Url(ListenOptions? listen) =>
        listen?.IPEndPoint is { } endpoint ? $"http://{endpoint}" : "(not bound)";
}
