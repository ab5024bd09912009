using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Identity;

namespace Mesh.ControlPlane.Xds;

/// <summary>Which route configurations a connection gets: Mesh clients, standard gRPC clients (grpc-js-xds…), other xDS clients.</summary>
internal enum RouteClientKind
{
    Standard,
    Mesh,
    StandardGrpc,
}

/// <summary>The route configurations of one snapshot for each kind of client.</summary>
internal sealed record RouteSet(
    FrozenDictionary<string, XdsResource> Routes,
    FrozenDictionary<string, XdsResource> StandardClientRoutes,
    FrozenDictionary<string, XdsResource>? StandardGrpcRoutes)
{
    public FrozenDictionary<string, XdsResource> For(RouteClientKind kind) => kind switch
    {
        RouteClientKind.Mesh => Routes,
        RouteClientKind.StandardGrpc => StandardGrpcRoutes ?? StandardClientRoutes,
        _ => StandardClientRoutes,
    };
}

/// <summary>
/// The calling workload as source selectors see it: its namespace and its labels. The labels are what the client claims in
/// its node metadata (LABELS); the namespace is the one its certificate was issued for when the stream is mTLS (the
/// NAMESPACE metadata is then not believed), else its NAMESPACE metadata. Routing by it is routing, never authorization.
/// </summary>
internal sealed record ClientSource(string Namespace, IReadOnlyDictionary<string, string> Labels)
{
    /// <summary>The source of a client from its node and, on the secure port, the SPIFFE ID of its certificate.</summary>
    public static ClientSource FromNode(Node node, string? identity)
    {
        ArgumentNullException.ThrowIfNull(node);
        // On the secure port only the certificate speaks for the namespace: an identity that is not a workload's selects
        // no sourceNamespace rather than falling back to what the node claims.
        var ns = identity is null ? AdsNode.NamespaceOf(node)
            : SpiffeId.TryParseWorkload(identity, out _) is { } workload ? workload.Namespace : string.Empty;
        var labels = AdsNode.LabelsOf(node);
        return new ClientSource(ns, labels);
    }
}

/// <summary>
/// The route configurations of the services whose VirtualService selects callers (<c>sourceLabels</c>,
/// <c>sourceNamespace</c>), built per distinct outcome of the snapshot's selectors rather than per client: clients that
/// the same selectors select share one set of serialized resources, cached for the life of the snapshot, and clients that
/// no selector selects get the snapshot's shared resources.
/// </summary>
internal sealed class SourceScopedRoutes
{
    /// <summary>More distinct outcomes than this (claimed label combinations) are built per request rather than kept.</summary>
    internal const int MaxCachedVariants = 256;

    private readonly ImmutableArray<SourceSelector> _selectors;
    private readonly RouteSet _shared;
    private readonly Func<Func<SourceSelector, bool>, IReadOnlyList<(string Name, (XdsResource Mesh, XdsResource Standard, XdsResource? StandardGrpc) Resources)>> _build;
    private readonly ConcurrentDictionary<string, Lazy<RouteSet>> _variants = new(StringComparer.Ordinal);

    public SourceScopedRoutes(
        ImmutableArray<SourceSelector> selectors,
        RouteSet shared,
        Func<Func<SourceSelector, bool>, IReadOnlyList<(string Name, (XdsResource Mesh, XdsResource Standard, XdsResource? StandardGrpc) Resources)>> build)
    {
        ArgumentNullException.ThrowIfNull(shared);
        ArgumentNullException.ThrowIfNull(build);
        _selectors = selectors;
        _shared = shared;
        _build = build;
    }

    /// <summary>Gets the distinct selectors of the snapshot.</summary>
    public ImmutableArray<SourceSelector> Selectors => _selectors;

    /// <summary>Gets how many variants have been built and kept (for tests and /debug).</summary>
    public int VariantCount => _variants.Count;

    /// <summary>The route configurations <paramref name="source"/> gets: the shared ones when no selector selects it.</summary>
    public RouteSet For(ClientSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        Span<char> outcome = _selectors.Length <= 256 ? stackalloc char[_selectors.Length] : new char[_selectors.Length];
        var any = false;
        for (var i = 0; i < _selectors.Length; i++)
        {
            var selected = _selectors[i].Selects(source.Namespace, source.Labels);
            outcome[i] = selected ? '1' : '0';
            any |= selected;
        }

        if (!any)
        {
            return _shared;
        }

        var key = new string(outcome);
        if (_variants.TryGetValue(key, out var cached))
        {
            return cached.Value;
        }

        var variant = new Lazy<RouteSet>(() => Build(key), LazyThreadSafetyMode.ExecutionAndPublication);
        return _variants.Count < MaxCachedVariants ? _variants.GetOrAdd(key, variant).Value : variant.Value;
    }

    private RouteSet Build(string outcome)
    {
        var selected = new HashSet<SourceSelector>();
        for (var i = 0; i < outcome.Length; i++)
        {
            if (outcome[i] == '1')
            {
                selected.Add(_selectors[i]);
            }
        }

        var mesh = new Dictionary<string, XdsResource>(_shared.Routes, StringComparer.Ordinal);
        var standard = new Dictionary<string, XdsResource>(_shared.StandardClientRoutes, StringComparer.Ordinal);
        var grpc = new Dictionary<string, XdsResource>(_shared.For(RouteClientKind.StandardGrpc), StringComparer.Ordinal);
        foreach (var (name, resources) in _build(selected.Contains))
        {
            mesh[name] = resources.Mesh;
            standard[name] = resources.Standard;
            grpc[name] = resources.StandardGrpc ?? resources.Standard;
        }

        return new RouteSet(mesh.ToFrozenDictionary(StringComparer.Ordinal), standard.ToFrozenDictionary(StringComparer.Ordinal), grpc.ToFrozenDictionary(StringComparer.Ordinal));
    }
}
