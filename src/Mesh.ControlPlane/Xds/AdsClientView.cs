using System.Collections.Immutable;
using Mesh.Xds.Envoy.Config.Core.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// One ADS client as the control plane sees it (namespace, kind of client, locality, source labels, certificate identity)
/// and the rule for which resources of a snapshot it gets. Shared by the state-of-the-world and the incremental stream,
/// so both serve exactly the same resources.
/// </summary>
/// <remarks>
/// Mesh clients (user agent "mesh-dotnet") get routes without istiod's default retry policy
/// (<see cref="XdsSnapshot.StandardClientRoutes"/>); other gRPC xDS clients (grpc-js-xds…) get only the routes they can take
/// (<see cref="XdsSnapshot.StandardGrpcRoutes"/>). Inbound listeners are served only to the identity they belong to, so a
/// null identity (the plaintext port) never receives one.
/// </remarks>
internal sealed partial class AdsClientView
{
    private const int MaxDeniedNamesLogged = 32;

    private readonly ILogger _logger;
    private static readonly IReadOnlyDictionary<string, string> NoLabels = new Dictionary<string, string>();

    private readonly HashSet<string> _deniedLogged = new(StringComparer.Ordinal);
    private ScopeOf? _scope;

    private AdsClientView(string clientId, string? identity, ILogger logger)
    {
        ClientId = clientId;
        Identity = identity;
        _logger = logger;
    }

    /// <summary>The view of a stream whose node is not known yet.</summary>
    public static AdsClientView Unknown(string clientId, string? identity, ILogger logger) => new(clientId, identity, logger);

    /// <summary>The view of the client that sent <paramref name="node"/> on a stream authenticated as <paramref name="identity"/>.</summary>
    public static AdsClientView For(Node node, string? identity, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(node);
        var nodeId = AdsNode.Printable(node.Id);
        return new AdsClientView(nodeId, identity, logger)
        {
            NodeId = nodeId,
            Namespace = AdsNode.Printable(AdsNode.NamespaceOf(node)),
            Kind = AdsNode.IsMeshClient(node) ? RouteClientKind.Mesh : AdsNode.IsStandardGrpcClient(node) ? RouteClientKind.StandardGrpc : RouteClientKind.Standard,
            Topology = ClientTopology.From(node),
            Source = ClientSource.FromNode(node, identity),
        };
    }

    /// <summary>The node id as sent (printable), or empty when the stream has not sent one.</summary>
    public string NodeId { get; private init; } = string.Empty;

    /// <summary>How logs name this client: its node id, else the stream.</summary>
    public string ClientId { get; }

    public string? Identity { get; }

    public string Namespace { get; private init; } = "default";

    public RouteClientKind Kind { get; private init; } = RouteClientKind.Standard;

    public ClientTopology Topology { get; private init; } = ClientTopology.None;

    /// <summary>The caller as VirtualService sourceLabels/sourceNamespace see it (<see cref="XdsSnapshot.RoutesFor"/>).</summary>
    public ClientSource? Source { get; private init; }

    /// <summary>
    /// The resources of <paramref name="typeUrl"/> this client gets for a subscription to <paramref name="names"/> (plus
    /// everything, when <paramref name="wildcard"/>), ordered by name.
    /// </summary>
    public ImmutableArray<XdsResource> Select(string typeUrl, bool wildcard, IReadOnlyCollection<string> names, XdsSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(snapshot);
        if (typeUrl == TypeUrls.Listener)
        {
            var builder = ImmutableArray.CreateBuilder<XdsResource>();
            if (wildcard)
            {
                // Every outbound listener in the client's Sidecar scope, plus what is asked for by name: "*" plus a name is
                // both subscriptions, so an inbound listener (a wildcard does not cover those) or a listener named in
                // another spelling ("orders" for "orders.default.svc.cluster.local:80") is served next to the canonical ones.
                var scope = Scope(snapshot);
                builder.AddRange(snapshot.ListenerTargets
                    .Where(t => scope is null || scope.Allows(t.Value.Host, t.Value.Port.Number))
                    .OrderBy(t => t.Key, StringComparer.Ordinal)
                    .Select(t => snapshot.Listener(t.Key, t.Value)));
                foreach (var name in names.Order(StringComparer.Ordinal))
                {
                    if (!snapshot.ListenerTargets.ContainsKey(name) && Resolve(typeUrl, name, snapshot) is { } named)
                    {
                        builder.Add(named);
                    }
                }

                return builder.ToImmutable();
            }

            foreach (var name in names.Order(StringComparer.Ordinal))
            {
                if (Resolve(typeUrl, name, snapshot) is { } resource)
                {
                    builder.Add(resource);
                }
            }

            return builder.ToImmutable();
        }

        var all = All(typeUrl, snapshot);
        var scoped = Scope(snapshot);
        if (wildcard)
        {
            return [.. all.Where(r => scoped is null || scoped.AllowsResourceName(r.Key)).OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => ForClient(typeUrl, r.Value, snapshot))];
        }

        return [.. names.Order(StringComparer.Ordinal).Where(n => all.ContainsKey(n) && (scoped is null || scoped.AllowsResourceName(n))).Select(n => ForClient(typeUrl, all[n], snapshot))];
    }

    /// <summary>The one resource <paramref name="name"/> of <paramref name="typeUrl"/> as this client gets it; null when it does not exist for this client.</summary>
    public XdsResource? Resolve(string typeUrl, string name, XdsSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (typeUrl == TypeUrls.Listener)
        {
            if (name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal))
            {
                return Inbound(snapshot, name);
            }

            return snapshot.ResolveListener(name, Namespace) is { } target && Scope(snapshot) is var scope && (scope is null || scope.Allows(target.Host, target.Port.Number))
                ? snapshot.Listener(name, target)
                : null;
        }

        return All(typeUrl, snapshot).TryGetValue(name, out var resource) && (Scope(snapshot) is not { } scoped || scoped.AllowsResourceName(name))
            ? ForClient(typeUrl, resource, snapshot)
            : null;
    }

    /// <summary>
    /// Whether <paramref name="name"/> names a resource of <paramref name="typeUrl"/> in <paramref name="snapshot"/> (any
    /// spelling of a listener, any inbound listener whoever it belongs to), without building it.
    /// </summary>
    public bool Exists(string typeUrl, string name, XdsSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (typeUrl == TypeUrls.Listener)
        {
            return name.StartsWith(InboundListenerTranslator.NamePrefix, StringComparison.Ordinal)
                ? snapshot.InboundListeners.IdentitiesOf(name) is not null
                : snapshot.ResolveListener(name, Namespace) is not null;
        }

        return All(typeUrl, snapshot).ContainsKey(name);
    }

    /// <summary>
    /// This client's Sidecar scope in <paramref name="snapshot"/> (null: no Sidecar applies, everything is visible): looked
    /// up by the namespace the source selectors use (the certificate's on the secure port) and the labels it claims.
    /// </summary>
    public EgressScope? Scope(XdsSnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (snapshot.EgressScopes.IsEmpty)
        {
            return null;
        }

        if (Volatile.Read(ref _scope) is { } cached && cached.Version == snapshot.Version)
        {
            return cached.Scope;
        }

        var scope = snapshot.EgressScopes.For(Source?.Namespace ?? Namespace, Source?.Labels ?? NoLabels);
        Volatile.Write(ref _scope, new ScopeOf(snapshot.Version, scope));
        return scope;
    }

    private System.Collections.Frozen.FrozenDictionary<string, XdsResource> All(string typeUrl, XdsSnapshot snapshot) =>
        typeUrl == TypeUrls.Cluster ? snapshot.Clusters
        : typeUrl == TypeUrls.RouteConfiguration ? snapshot.RoutesFor(Kind, Source)
        : snapshot.Endpoints;

    // Locality LB: an assignment depends on this client's locality (one shared resource per locality, see XdsSnapshot).
    private XdsResource ForClient(string typeUrl, XdsResource resource, XdsSnapshot snapshot) =>
        typeUrl == TypeUrls.ClusterLoadAssignment ? snapshot.EndpointsFor(resource, Topology) : resource;

    /// <summary>
    /// The inbound listener <paramref name="name"/> when this stream's identity is the one it belongs to; otherwise
    /// nothing, exactly as for a name that does not exist (its RBAC is the workload's business only).
    /// </summary>
    private XdsResource? Inbound(XdsSnapshot snapshot, string name)
    {
        // Who may get it is decided before the listener is built: asking for other workloads' listeners costs no builds.
        if (snapshot.InboundListeners.IdentitiesOf(name) is not { } identities)
        {
            return null;
        }

        if (Identity is not null && identities.Contains(Identity, StringComparer.Ordinal))
        {
            return snapshot.InboundListeners.TryGetValue(name, out var inbound) ? inbound.Xds : null;
        }

        // Once per name and stream, and a bounded number of names: a client asking in a loop cannot flood the log.
        lock (_deniedLogged)
        {
            if (_deniedLogged.Count < MaxDeniedNamesLogged && _deniedLogged.Add(name))
            {
                LogInboundDenied(_logger, ClientId, Identity ?? "no identity (plaintext port)", AdsNode.Printable(name),
                    identities.IsEmpty ? "no identity" : string.Join(" or ", identities));
            }
        }

        return null;
    }

    [LoggerMessage(EventId = 1, EventName = "AdsInboundListenerDenied", Level = LogLevel.Warning, Message = "ADS client {ClientId} ({Identity}) asked for inbound listener {Name}, which belongs to {Owner}: not served")]
    private static partial void LogInboundDenied(ILogger logger, string clientId, string identity, string name, string owner);

    private sealed record ScopeOf(long Version, EgressScope? Scope);
}
