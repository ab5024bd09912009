using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Istio's Sidecar <c>egress</c> scoping for one snapshot: which Sidecar applies to a client, and which services (host and
/// port) it lets that client see. Out-of-scope services are neither in a wildcard LDS/CDS response nor served by name, as
/// if they did not exist; services that an in-scope VirtualService routes or mirrors to are in scope, as in istiod.
/// </summary>
/// <remarks>
/// Which Sidecar applies (istiod's order): one in the client's namespace whose <c>workloadSelector</c> selects the client's
/// labels (the first by name when several do — Istio leaves that case undefined and picks the oldest), else the client's
/// namespace-wide one, else the root namespace's namespace-wide one, else none (the client sees everything). Scoping is
/// config visibility, not authorization: it trusts the labels the client claims, as istiod does.
/// </remarks>
internal sealed class EgressScopes
{
    /// <summary>More distinct (Sidecar, client namespace) scopes than this are computed per request rather than kept.</summary>
    internal const int MaxCachedScopes = 1024;

    private readonly ImmutableArray<SidecarModel> _sidecars;
    private readonly ImmutableArray<ResolvedService> _services;
    private readonly ImmutableArray<VirtualServiceModel> _virtualServices;
    private readonly string _rootNamespace;
    private readonly ConcurrentDictionary<(SidecarModel Sidecar, string Namespace), EgressScope> _scopes = new();

    private EgressScopes(ImmutableArray<SidecarModel> sidecars, ImmutableArray<ResolvedService> services, ImmutableArray<VirtualServiceModel> virtualServices, string rootNamespace)
    {
        _sidecars = [.. sidecars.OrderBy(s => s.Namespace, StringComparer.Ordinal).ThenBy(s => s.Name, StringComparer.Ordinal)];
        _services = services;
        _virtualServices = virtualServices;
        _rootNamespace = rootNamespace;
    }

    /// <summary>No Sidecar anywhere: every client sees every service.</summary>
    public static EgressScopes None { get; } = new([], [], [], string.Empty);

    public bool IsEmpty => _sidecars.IsEmpty;

    public static EgressScopes Build(ImmutableArray<SidecarModel> sidecars, ImmutableArray<ResolvedService> services, ImmutableArray<VirtualServiceModel> virtualServices, string rootNamespace) =>
        sidecars.IsDefaultOrEmpty ? None : new EgressScopes(sidecars, services, virtualServices, rootNamespace);

    /// <summary>The scope of a client in <paramref name="clientNamespace"/> with <paramref name="labels"/>; null when no Sidecar applies.</summary>
    public EgressScope? For(string clientNamespace, IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (_sidecars.IsEmpty)
        {
            return null;
        }

        var sidecar = _sidecars.FirstOrDefault(s => s.Namespace == clientNamespace && s.WorkloadSelector is { } selector && HostNames.LabelsMatch(selector, labels))
            ?? _sidecars.FirstOrDefault(s => s.Namespace == clientNamespace && s.WorkloadSelector is null)
            ?? _sidecars.FirstOrDefault(s => s.Namespace == _rootNamespace && s.WorkloadSelector is null);
        if (sidecar is null)
        {
            return null;
        }

        var key = (sidecar, clientNamespace);
        if (_scopes.TryGetValue(key, out var scope))
        {
            return scope;
        }

        scope = EgressScope.Build(sidecar, clientNamespace, _services, _virtualServices);

        // Client-claimed namespaces (plaintext port): bounded, so made-up namespaces cannot grow the snapshot without limit.
        return _scopes.Count < MaxCachedScopes ? _scopes.GetOrAdd(key, scope) : scope;
    }
}

/// <summary>The services one Sidecar lets a client of one namespace see: host → the visible ports (null: every port).</summary>
internal sealed class EgressScope
{
    private readonly FrozenDictionary<string, FrozenSet<uint>?> _visible;

    private EgressScope(string sidecar, FrozenDictionary<string, FrozenSet<uint>?> visible)
    {
        Sidecar = sidecar;
        _visible = visible;
    }

    /// <summary>The Sidecar as <c>namespace/name</c>, for logs and /debug.</summary>
    public string Sidecar { get; }

    public static EgressScope Build(SidecarModel sidecar, string clientNamespace, ImmutableArray<ResolvedService> services, ImmutableArray<VirtualServiceModel> virtualServices)
    {
        ArgumentNullException.ThrowIfNull(sidecar);
        var visible = new Dictionary<string, HashSet<uint>?>(StringComparer.Ordinal);
        var namespaces = services.GroupBy(s => s.Host, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Entry.Namespace, StringComparer.Ordinal);
        foreach (var listener in sidecar.Egress)
        {
            foreach (var service in services)
            {
                if (listener.Hosts.Any(h => h.Matches(service.Host, service.Entry.Namespace, clientNamespace)))
                {
                    Add(visible, service.Host, listener.Port);
                }
            }

        }

        // istiod adds the destinations of the VirtualServices in scope: a route must not point at a cluster the client lacks.
        // A VirtualService is in scope when an egress host selects it, or when it routes a visible host: the route
        // configuration of that host carries its routes whatever namespace it was written in.
        foreach (var virtualService in virtualServices)
        {
            // exportTo ["."]: clients of other namespaces do not see it (their routes keep the default), nor its destinations.
            if (virtualService.ExportedTo is { } exportedTo && exportedTo != clientNamespace)
            {
                continue;
            }

            var inScope = virtualService.Hosts.Any(host => visible.ContainsKey(host)
                || sidecar.Egress.Any(listener => listener.Hosts.Any(h => h.Matches(host, virtualService.Namespace, clientNamespace))));
            if (!inScope)
            {
                continue;
            }

            foreach (var route in virtualService.Http)
            {
                foreach (var destination in route.Destinations.Concat(route.Mirrors.Select(m => m.Destination)))
                {
                    if (namespaces.ContainsKey(destination.Host))
                    {
                        Add(visible, destination.Host, destination.Port);
                    }
                }
            }
        }

        return new EgressScope(
            $"{sidecar.Namespace}/{sidecar.Name}",
            visible.ToFrozenDictionary(p => p.Key, p => p.Value?.ToFrozenSet(), StringComparer.Ordinal));
    }

    /// <summary>Whether the client sees port <paramref name="port"/> of the service <paramref name="host"/> (FQDN).</summary>
    public bool Allows(string host, uint port) =>
        _visible.TryGetValue(host, out var ports) && (ports is null || ports.Contains(port));

    /// <summary>
    /// Whether the client may get the outbound resource <paramref name="name"/> of a cluster, route configuration or load
    /// assignment (Istio's <c>outbound|port|subset|fqdn</c>). Other names (inbound listeners) are not egress: allowed.
    /// </summary>
    public bool AllowsResourceName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        const string Prefix = "outbound|";
        if (!name.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return true;
        }

        var rest = name.AsSpan(Prefix.Length);
        var portEnd = rest.IndexOf('|');
        var hostStart = rest.LastIndexOf('|');
        if (portEnd <= 0 || hostStart == portEnd || !uint.TryParse(rest[..portEnd], NumberStyles.None, CultureInfo.InvariantCulture, out var port))
        {
            return true;
        }

        var host = rest[(hostStart + 1)..];
        return _visible.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(host, out var ports) && (ports is null || ports.Contains(port));
    }

    private static void Add(Dictionary<string, HashSet<uint>?> visible, string host, uint? port)
    {
        if (port is not { } number)
        {
            visible[host] = null;
        }
        else if (!visible.TryGetValue(host, out var ports))
        {
            visible[host] = [number];
        }
        else
        {
            ports?.Add(number);
        }
    }
}
