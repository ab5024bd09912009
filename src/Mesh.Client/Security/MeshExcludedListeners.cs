using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.Client.Security;

/// <summary>
/// The Kestrel endpoints marked with <c>ExcludeFromServiceMesh()</c>: local listeners that are not mesh endpoints (no mesh
/// TLS, no PeerAuthentication or AuthorizationPolicy, no inbound metrics, never registered), as Istio's
/// <c>excludeInboundPorts</c>. Ports are read from the endpoints when asked, so a port-0 binding counts by its bound port.
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

    /// <summary>Whether <paramref name="localPort"/> is the (bound) port of an excluded TCP endpoint.</summary>
    public bool IsExcludedPort(int localPort)
    {
        foreach (var listen in Volatile.Read(ref _listeners))
        {
            if (listen.IPEndPoint?.Port == localPort)
            {
                return true;
            }
        }

        return false;
    }
}
