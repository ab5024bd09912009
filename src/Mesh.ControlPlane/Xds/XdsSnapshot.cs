using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Xds;

/// <summary>One named xDS resource, packed (serialized) once and shared by every client that gets it.</summary>
/// <remarks>
/// <see cref="Version"/> is a digest of the packed bytes: equal resources have equal versions across snapshots and control
/// plane restarts, which is what incremental xDS needs for <c>Resource.version</c> and <c>initial_resource_versions</c>.
/// </remarks>
internal sealed record XdsResource(string Name, Any Resource)
{
    public string Version { get; } = DigestOf(Resource);

    private static string DigestOf(Any resource)
    {
        ArgumentNullException.ThrowIfNull(resource);
        Span<byte> digest = stackalloc byte[System.Security.Cryptography.SHA256.HashSizeInBytes];
        System.Security.Cryptography.SHA256.HashData(resource.Value.Span, digest);
        return Convert.ToHexStringLower(digest[..12]);
    }
}

internal sealed record ResolvedEndpoint(uint ServicePort, string Address, uint Port, WorkloadInstance Workload);

internal sealed record ResolvedService(
    ServiceEntryModel Entry,
    string Host,
    LoadBalancerKind LoadBalancer,
    ImmutableArray<ResolvedEndpoint> Endpoints)
{
    /// <summary>The DestinationRule that applies to this host (the one the properties below come from); null when none does.</summary>
    public DestinationRuleModel? Rule { get; init; }

    /// <summary>The DestinationRule's <c>tls.mode</c> for this host; null means auto mTLS (see <see cref="XdsTranslator.UsesMutualTls"/>).</summary>
    public UpstreamTlsMode? TlsMode { get; init; }

    /// <summary>The DestinationRule's subsets for this host; each becomes its own cluster.</summary>
    public ImmutableArray<SubsetModel> Subsets { get; init; } = [];

    /// <summary>The DestinationRule's top-level <c>consistentHash</c>, when <see cref="LoadBalancer"/> is <see cref="LoadBalancerKind.ConsistentHash"/>.</summary>
    public ConsistentHashModel? ConsistentHash { get; init; }
    /// <summary>The DestinationRule's traffic policy for this host (load balancer, resilience, port-level settings).</summary>
    public TrafficPolicyModel Traffic { get; init; } = TrafficPolicyModel.None;

    /// <summary>The DestinationRule's top-level <c>localityLbSetting</c>; null when unset (the mesh default applies).</summary>
    public LocalityLbSettingModel? LocalityLb { get; init; }
}

/// <summary>A listener target: the service host and one of its ports.</summary>
internal sealed record ListenerTarget(string Host, ServicePort Port, string RouteName);

/// <summary>Every xDS resource for one <see cref="ModelSnapshot"/>; listeners are built per requested name.</summary>
internal sealed class XdsSnapshot
{
    private readonly ConcurrentDictionary<(string Name, string RouteName), XdsResource> _listeners = new();

    public XdsSnapshot(
        long version,
        ImmutableArray<ResolvedService> services,
        FrozenDictionary<string, XdsResource> clusters,
        FrozenDictionary<string, XdsResource> endpoints,
        FrozenDictionary<string, XdsResource> routes,
        FrozenDictionary<string, ListenerTarget> listenerTargets)
    {
        Version = version;
        Services = services;
        Clusters = clusters;
        Endpoints = endpoints;
        Routes = routes;
        ListenerTargets = listenerTargets;
    }

    public static XdsSnapshot Empty { get; } = new(0, [], FrozenDictionary<string, XdsResource>.Empty, FrozenDictionary<string, XdsResource>.Empty,
        FrozenDictionary<string, XdsResource>.Empty, FrozenDictionary<string, ListenerTarget>.Empty);

    public long Version { get; }

    /// <summary>What changed since the snapshot this one was built after; null for a snapshot built without one (the first).</summary>
    public XdsChanges? Changes { get; init; }

    /// <summary>Route configuration names whose content depends on the caller (source-scoped VirtualServices).</summary>
    public FrozenSet<string> SourceScopedRouteNames { get; init; } = FrozenSet<string>.Empty;

    /// <summary>Istio's Sidecar scoping: which services each client sees (<see cref="EgressScopes.None"/> when there is no Sidecar).</summary>
    public EgressScopes EgressScopes { get; init; } = EgressScopes.None;

    /// <summary>The Sidecars and VirtualServices <see cref="EgressScopes"/> was built from (to tell whether scopes may differ from the previous snapshot's).</summary>
    internal (ImmutableArray<SidecarModel> Sidecars, ImmutableArray<VirtualServiceModel> VirtualServices, long ServiceNamespaces) ScopeInputs { get; init; }

    /// <summary>
    /// When the config change this snapshot carries happened (a <see cref="TimeProvider.GetTimestamp"/> value, before the
    /// debounce); set by <see cref="XdsPublisher"/> before publishing, 0 for a snapshot it did not publish.
    /// </summary>
    public long ChangedAt { get; internal set; }

    public ImmutableArray<ResolvedService> Services { get; }

    public FrozenDictionary<string, XdsResource> Clusters { get; }

    public FrozenDictionary<string, XdsResource> Endpoints { get; }

    public FrozenDictionary<string, XdsResource> Routes { get; }

    /// <summary>
    /// Gets the route configurations for standard gRPC clients (grpc-js-xds and the like): <see cref="StandardClientRoutes"/>, except that
    /// a redirect or direct response (which they NACK with the whole configuration) is a fault abort with its status;
    /// see <see cref="RouteTranslator.ForStandardGrpcClients"/>.
    /// </summary>
    public FrozenDictionary<string, XdsResource> StandardGrpcRoutes
    {
        get => _standardGrpcRoutes ?? StandardClientRoutes;
        init => _standardGrpcRoutes = value;
    }

    private readonly FrozenDictionary<string, XdsResource>? _standardGrpcRoutes;

    /// <summary>
    /// Gets <see cref="Routes"/> as standard xDS clients (any node whose user agent is not Mesh's) get them: with istiod's
    /// default retry policy on routes that set none (<see cref="RouteTranslator.WithIstioDefaultRetries"/>).
    /// </summary>
    public FrozenDictionary<string, XdsResource> StandardClientRoutes
    {
        get => _standardClientRoutes ?? Routes;
        init => _standardClientRoutes = value;
    }

    private readonly FrozenDictionary<string, XdsResource>? _standardClientRoutes;

    /// <summary>Gets the route configurations that depend on the caller (VirtualServices with <c>sourceLabels</c>/<c>sourceNamespace</c>); null when none do.</summary>
    public SourceScopedRoutes? SourceScopedRoutes { get; init; }

    /// <summary>
    /// The route configurations a client of <paramref name="kind"/> gets: the shared dictionaries, unless a source selector
    /// of this snapshot selects <paramref name="source"/> (then a variant built once per distinct outcome and cached here).
    /// </summary>
    public FrozenDictionary<string, XdsResource> RoutesFor(RouteClientKind kind, ClientSource? source)
    {
        if (SourceScopedRoutes is { } scoped && source is not null)
        {
            return scoped.For(source).For(kind);
        }

        return kind switch
        {
            RouteClientKind.Mesh => Routes,
            RouteClientKind.StandardGrpc => StandardGrpcRoutes,
            _ => StandardClientRoutes,
        };
    }

    /// <summary>Canonical listener names <c>host:port</c>.</summary>
    public FrozenDictionary<string, ListenerTarget> ListenerTargets { get; }

    /// <summary>Clusters whose load assignment depends on the client's locality (DestinationRule <c>localityLbSetting</c>), by name.</summary>
    public FrozenDictionary<string, LocalityLbPlan> LocalityLbClusters { get; init; } = FrozenDictionary<string, LocalityLbPlan>.Empty;

    /// <summary>
    /// The ClusterLoadAssignment <paramref name="resource"/> as <paramref name="client"/> gets it: the shared resource, unless
    /// its cluster is locality-aware; then one resource per distinct client locality (and failoverPriority label values),
    /// built and serialized once per snapshot and shared by every client with the same key.
    /// </summary>
    public XdsResource EndpointsFor(XdsResource resource, ClientTopology client)
    {
        ArgumentNullException.ThrowIfNull(resource);
        if (LocalityLbClusters.Count == 0 || !LocalityLbClusters.TryGetValue(resource.Name, out var plan))
        {
            return resource;
        }

        var key = (resource.Name, plan.KeyFor(client));
        if (_localityEndpoints.TryGetValue(key, out var cached))
        {
            return cached;
        }

        var built = new XdsResource(resource.Name, Any.Pack(plan.Build(client)));

        // Same bytes as the previous snapshot's variant for this key: that instance, so clients holding it see no change.
        if (_previousLocalityEndpoints is { } previous && previous.TryGetValue(key, out var before) && XdsChanges.SameContent(before, built))
        {
            built = before;
        }

        // Client-chosen keys: bounded, so a stream of made-up localities cannot grow the snapshot without limit.
        return _localityEndpoints.Count < MaxLocalityVariants ? _localityEndpoints.GetOrAdd(key, built) : built;
    }

    /// <summary>The most per-locality assignments one snapshot caches (beyond it they are built per request).</summary>
    internal const int MaxLocalityVariants = 4096;

    private readonly ConcurrentDictionary<(string Cluster, string Key), XdsResource> _localityEndpoints = new();

    // The previous snapshot's variants (only the dictionary: holding the snapshot would chain every snapshot ever built).
    private ConcurrentDictionary<(string Cluster, string Key), XdsResource>? _previousLocalityEndpoints;

    /// <summary>
    /// Takes over what <paramref name="previous"/> built lazily and is still valid here: its listeners whose route
    /// configuration still exists (a listener is a pure function of its name and route name) and, for comparison, its
    /// per-locality assignments. Called once, before the snapshot is published.
    /// </summary>
    internal void CarryOver(XdsSnapshot previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        _previousLocalityEndpoints = previous._localityEndpoints.IsEmpty ? null : previous._localityEndpoints;

        // Client spellings are carried too, bounded so that made-up spellings cannot accumulate across snapshots.
        var room = (2 * ListenerTargets.Count) + 1024;
        foreach (var (key, listener) in previous._listeners)
        {
            if (room-- <= 0)
            {
                break;
            }

            if (Routes.ContainsKey(key.RouteName))
            {
                _listeners.TryAdd(key, listener);
            }
        }
    }

    /// <summary>What each service was translated from and into: the next snapshot reuses the services whose inputs did not change.</summary>
    internal ServiceTranslations? Translations { get; init; }

    /// <summary>Server-side listeners by name <c>xds.istio.io/grpc/lds/inbound/&lt;ip&gt;:&lt;port&gt;</c>, each with the identities it may be served to.</summary>
    public InboundListenerSet InboundListeners { get; init; } = InboundListenerSet.Empty;

    public string VersionInfo => Version.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Resolves an LDS name as a client wrote it (<c>orders</c>, <c>orders.ns:80</c>, FQDN…).</summary>
    public ListenerTarget? ResolveListener(string name, string clientNamespace)
    {
        if (ListenerTargets.TryGetValue(name, out var exact))
        {
            return exact;
        }

        var host = name;
        uint? port = null;
        var colon = name.LastIndexOf(':');
        if (colon > 0 && uint.TryParse(name.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var parsed))
        {
            host = name[..colon];
            port = parsed;
        }

        host = host.ToLowerInvariant();
        foreach (var candidate in Candidates(host, clientNamespace))
        {
            if (!ByHost.TryGetValue(candidate, out var targets))
            {
                continue;
            }

            if (port is { } number)
            {
                return targets.FirstOrDefault(t => t.Port.Number == number);
            }

            // No port: the one port of a single-port service; of several, port 80, else the lowest — the port a Mesh client
            // calling http://host/ picks (MeshRouter), so a portless name means the same on both sides.
            return targets.Length == 1 ? targets[0] : targets.FirstOrDefault(t => t.Port.Number == 80) ?? targets.MinBy(t => t.Port.Number);
        }

        return null;
    }

    /// <summary>Listener targets by service host (built on first use): resolving a short name costs a lookup, not a scan of every service.</summary>
    private FrozenDictionary<string, ListenerTarget[]> ByHost =>
        LazyInitializer.EnsureInitialized(ref _byHost, () => ListenerTargets.Values.GroupBy(t => t.Host, StringComparer.Ordinal)
            .ToFrozenDictionary(g => g.Key, g => g.ToArray(), StringComparer.Ordinal));

    private FrozenDictionary<string, ListenerTarget[]>? _byHost;

    /// <summary>The Listener resource for <paramref name="requestedName"/> (the client's own spelling).</summary>
    public XdsResource Listener(string requestedName, ListenerTarget target) =>
        _listeners.GetOrAdd((requestedName, target.RouteName), key => new XdsResource(key.Name, Any.Pack(XdsTranslator.BuildListener(key.Name, key.RouteName))));

    /// <summary>Gets the cluster domain the services' short names resolve in (<see cref="YamlConfig.ClusterDomain"/>).</summary>
    public string ClusterDomain { get; init; } = HostNames.DefaultClusterDomain;

    private IEnumerable<string> Candidates(string host, string clientNamespace)
    {
        yield return host;
        var dots = host.Count(c => c == '.');
        if (dots == 0)
        {
            yield return $"{host}.{clientNamespace}{HostNames.ServiceSuffix(ClusterDomain)}";
        }
        else if (dots == 1)
        {
            yield return host + HostNames.ServiceSuffix(ClusterDomain);
        }
        else if (dots == 2 && host.EndsWith(".svc", StringComparison.Ordinal))
        {
            yield return $"{host}.{ClusterDomain}";
        }
    }
}
