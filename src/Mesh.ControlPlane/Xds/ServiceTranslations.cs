using System.Collections.Immutable;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Xds;

/// <summary>One cluster of a service port (the whole service or a subset) and its assignment, as translated.</summary>
internal sealed record ClusterTranslation(string Name, XdsResource Cluster, XdsResource Endpoints, LocalityLbPlan? LocalityPlan);

/// <summary>Everything one service port translates to.</summary>
internal sealed record PortTranslation(
    ListenerTarget Target,
    IReadOnlyList<ClusterTranslation> Clusters,
    XdsResource Routes,
    XdsResource StandardRoutes,
    XdsResource? StandardGrpcRoutes);

/// <summary>
/// What a destination of a VirtualService contributes to the routes that name it: the first service with its host (its
/// ports pick the cluster's port; its DestinationRule's subsets and consistent hash shape the hash policy).
/// </summary>
internal readonly record struct DestinationInputs(string Host, ResolvedService? Service)
{
    /// <summary>Whether routes built against <paramref name="other"/> come out as routes built against this.</summary>
    public bool SameAs(DestinationInputs other) =>
        Host == other.Host
        && (ReferenceEquals(Service, other.Service)
            || (Service is not null && other.Service is not null
                && ReferenceEquals(Service.Rule, other.Service.Rule)
                && Service.Entry.Ports.SequenceEqual(other.Service.Entry.Ports)));
}

/// <summary>
/// One service's resources and every input they were made from: the resolved service (its ServiceEntry, endpoints and
/// DestinationRule, by instance), the VirtualService for its host, the destinations that VirtualService routes to, and
/// (for auto mTLS) the PeerAuthentications. Equal inputs give equal resources, so a snapshot reuses the translation.
/// </summary>
internal sealed record ServiceTranslation(
    ResolvedService Service,
    VirtualServiceModel? VirtualService,
    ImmutableArray<DestinationInputs> Destinations,
    bool DependsOnPeerAuthentications,
    bool SourceScoped,
    IReadOnlyList<PortTranslation> Ports);

/// <summary>
/// The per-service translations of one snapshot, with the mesh-wide inputs they share (PeerAuthentications, root
/// namespace, trust domain); the next translation takes from it every service whose inputs are unchanged.
/// </summary>
internal sealed class ServiceTranslations(ImmutableArray<PeerAuthenticationModel> peerAuthentications, string rootNamespace, string trustDomain)
{
    private readonly Dictionary<string, ServiceTranslation> _byHost = new(StringComparer.Ordinal);

    public ImmutableArray<PeerAuthenticationModel> PeerAuthentications { get; } = peerAuthentications.IsDefault ? [] : peerAuthentications;

    public string RootNamespace { get; } = rootNamespace;

    public string TrustDomain { get; } = trustDomain;

    public int Count => _byHost.Count;

    /// <summary>The translation kept for the service of <paramref name="host"/>; null when there is none.</summary>
    public ServiceTranslation? Of(string host) => _byHost.GetValueOrDefault(host);

    public void Add(ServiceTranslation translation)
    {
        ArgumentNullException.ThrowIfNull(translation);
        _byHost[translation.Service.Host] = translation;
    }

    /// <summary>
    /// What the translation into <paramref name="next"/> may take from this one: null when a mesh-wide input that every
    /// service depends on (root namespace, trust domain) changed.
    /// </summary>
    public Reuse? For(ServiceTranslations next)
    {
        ArgumentNullException.ThrowIfNull(next);
        if (RootNamespace != next.RootNamespace || TrustDomain != next.TrustDomain)
        {
            return null;
        }

        // By value (a reloaded file gives new instances; a record of the same fields is the same policy).
        var samePeerAuthentications = PeerAuthentications.SequenceEqual(next.PeerAuthentications);
        return new Reuse(_byHost, samePeerAuthentications);
    }

    internal sealed class Reuse(Dictionary<string, ServiceTranslation> byHost, bool samePeerAuthentications)
    {
        /// <summary>The previous translation of <paramref name="service"/> when every input it was made from is unchanged; else null.</summary>
        public ServiceTranslation? Find(ResolvedService service, RouteTranslator routing)
        {
            if (!byHost.TryGetValue(service.Host, out var translation)
                || !ReferenceEquals(translation.Service, service)
                || (translation.DependsOnPeerAuthentications && !samePeerAuthentications)
                || !ReferenceEquals(translation.VirtualService, routing.Find(service.Host)))
            {
                return null;
            }

            foreach (var destination in translation.Destinations)
            {
                if (!destination.SameAs(routing.DestinationInputs(destination.Host)))
                {
                    return null;
                }
            }

            return translation;
        }
    }
}
