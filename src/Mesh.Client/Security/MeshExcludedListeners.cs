using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.Client.Security;

/// <summary>
/// The Kestrel endpoints marked with <c>ExcludeFromServiceMesh()</c>: local listeners that are not mesh endpoints (no mesh
/// TLS, no PeerAuthentication or AuthorizationPolicy, no inbound metrics, never registered), as Istio's
/// <c>excludeInboundPorts</c>. Endpoints are compared as endpoints (address and port), never by port number alone: two
/// endpoints may share a port on different addresses. Bound ports are read when asked, so port-0 bindings count.
/// </summary>
internal sealed class MeshExcludedListeners
{
    private readonly Lock _gate = new();
    private ListenOptions[] _listeners = [];

    /// <summary>Gets whether any endpoint is excluded: the request path checks nothing more when none is.</summary>
    public bool Any => Volatile.Read(ref _listeners).Length > 0;

    public void Add(ListenOptions listen)
    {
        lock (_gate)
        {
            if (!_listeners.Contains(listen))
            {
                Volatile.Write(ref _listeners, [.. _listeners, listen]);
            }
        }
    }

    public bool Contains(ListenOptions listen) => Array.IndexOf(Volatile.Read(ref _listeners), listen) >= 0;

    /// <summary>
    /// Whether the server address <paramref name="address"/>:<paramref name="port"/> (as Kestrel reports its bindings) is
    /// an excluded endpoint's: the same port on the same address, or on the wildcard address the endpoint bound.
    /// </summary>
    public bool IsExcluded(System.Net.IPAddress address, int port)
    {
        foreach (var listen in Volatile.Read(ref _listeners))
        {
            if (Hosting.KestrelEndpoints.Binds(listen, address, port))
            {
                return true;
            }
        }

        return false;
    }
}
