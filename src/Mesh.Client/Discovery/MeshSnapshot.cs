using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;

namespace Mesh.Client.Discovery;

/// <summary>
/// Everything the control plane told this client, validated as a whole and swapped in atomically.
/// Readers take <see cref="IMeshSnapshotSource.Current"/> once per request and never see a half-applied update.
/// </summary>
internal sealed class MeshSnapshot
{
    private readonly FrozenDictionary<string, MeshHost> _hosts;
    private readonly FrozenDictionary<string, MeshHost>.AlternateLookup<ReadOnlySpan<char>> _hostLookup;

    private MeshSnapshot()
    {
        Version = string.Empty;
        _hosts = FrozenDictionary<string, MeshHost>.Empty.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase);
        _hostLookup = _hosts.GetAlternateLookup<ReadOnlySpan<char>>();
        Services = [];
        Clusters = FrozenDictionary<string, MeshCluster>.Empty;
    }

    /// <param name="version">A label for logs and the health check (the xDS versions it was built from).</param>
    /// <param name="hostBindings">Every name a service answers to (RDS virtual host domains without port) and the service.</param>
    /// <param name="clusters">Every cluster by name.</param>
    public MeshSnapshot(
        string version,
        IEnumerable<KeyValuePair<string, MeshService>> hostBindings,
        IEnumerable<MeshCluster> clusters)
    {
        ArgumentNullException.ThrowIfNull(version);
        ArgumentNullException.ThrowIfNull(hostBindings);
        ArgumentNullException.ThrowIfNull(clusters);
        Version = version;
        IsSynced = true;

        var byHost = new Dictionary<string, List<MeshService>>(StringComparer.OrdinalIgnoreCase);
        var services = new HashSet<MeshService>();
        foreach (var (host, service) in hostBindings)
        {
            if (!byHost.TryGetValue(host, out var list))
            {
                byHost[host] = list = [];
            }

            if (!list.Contains(service))
            {
                list.Add(service);
            }

            services.Add(service);
        }

        // A service answers to several names (orders, orders.ns, orders.ns.svc, the FQDN): they share one entry.
        var shared = new Dictionary<MeshService, MeshHost>();
        _hosts = byHost.ToFrozenDictionary(
            pair => pair.Key,
            pair => pair.Value.Count == 1
                ? shared.TryGetValue(pair.Value[0], out var one) ? one : shared[pair.Value[0]] = new MeshHost([pair.Value[0]])
                : new MeshHost([.. pair.Value.OrderBy(s => s.Port)]),
            StringComparer.OrdinalIgnoreCase);
        _hostLookup = _hosts.GetAlternateLookup<ReadOnlySpan<char>>();
        Services = [.. services.OrderBy(s => s.ListenerName, StringComparer.Ordinal)];
        HasRouteFeatures = services.Any(s => s.HasRouteFeatures);
        Clusters = clusters.ToFrozenDictionary(c => c.Name, StringComparer.Ordinal);
    }

    /// <summary>Gets the snapshot used before the control plane answered: it knows no service.</summary>
    public static MeshSnapshot Empty { get; } = new();

    public string Version { get; }

    /// <summary>Gets whether any service has a route with features (fault, mirror…); when none has, requests skip that handler at once.</summary>
    public bool HasRouteFeatures { get; }

    /// <summary>Gets whether this snapshot came from the control plane (false only for <see cref="Empty"/>).</summary>
    public bool IsSynced { get; }

    public ImmutableArray<MeshService> Services { get; }

    public FrozenDictionary<string, MeshCluster> Clusters { get; }

    /// <summary>Gets whether <paramref name="host"/> is any name of a mesh service, whatever the port.</summary>
    public bool IsMeshHost(ReadOnlySpan<char> host) => _hostLookup.ContainsKey(host);

    /// <summary>
    /// Finds the service for a request's host and port. A request without an explicit port
    /// (<paramref name="isDefaultPort"/>) goes to the service port equal to the scheme's default port,
    /// else to the service's only (or lowest) port.
    /// </summary>
    public bool TryGetService(ReadOnlySpan<char> host, int port, bool isDefaultPort, [NotNullWhen(true)] out MeshService? service)
    {
        if (!_hostLookup.TryGetValue(host, out var entry))
        {
            service = null;
            return false;
        }

        var ports = entry.Services;
        foreach (var candidate in ports)
        {
            if (candidate.Port == port)
            {
                service = candidate;
                return true;
            }
        }

        service = isDefaultPort ? ports[0] : null;
        return service is not null;
    }

    private sealed record MeshHost(ImmutableArray<MeshService> Services);
}
