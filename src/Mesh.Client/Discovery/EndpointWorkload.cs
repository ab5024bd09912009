using Mesh.Xds.Wire;

namespace Mesh.Client.Discovery;

/// <summary>
/// Who an endpoint is, for telemetry: the workload, namespace, canonical service and revision (and cluster, when known)
/// that istiod's endpoint metadata names (<see cref="EndpointWorkloadMetadata"/>). A caller reports them as the
/// <c>destination_*</c> labels of the request its last attempt sent there, as Istio's client side does without a peer
/// exchange. Values from the network: each is kept only when it is a valid label value, else <c>unknown</c>. Compared by
/// value with a hash computed once, since a request's label set is looked up by it.
/// </summary>
internal sealed class EndpointWorkload : IEquatable<EndpointWorkload>
{
    private const string Unknown = "unknown";
    private readonly int _hash;

    private EndpointWorkload(string workload, string @namespace, string canonicalService, string canonicalRevision, string? cluster)
    {
        Workload = workload;
        Namespace = @namespace;
        CanonicalService = canonicalService;
        CanonicalRevision = canonicalRevision;
        Cluster = cluster;
        _hash = HashCode.Combine(workload, @namespace, canonicalService, canonicalRevision, cluster);
    }

    public string Workload { get; }

    /// <summary>Gets the workload's namespace (<c>unknown</c> when the metadata had none valid).</summary>
    public string Namespace { get; }

    public string CanonicalService { get; }

    public string CanonicalRevision { get; }

    /// <summary>Gets the endpoint's cluster, or null when the metadata left it empty (the caller's own cluster then stands).</summary>
    public string? Cluster { get; }

    /// <summary>Reads an endpoint's encoded metadata; null when there is none or it is malformed (fewer than five parts).</summary>
    public static EndpointWorkload? Parse(string? encoded)
    {
        if (!EndpointWorkloadMetadata.TryParse(encoded, out var workload, out var ns, out var service, out var revision, out var cluster))
        {
            return null;
        }

        return new EndpointWorkload(
            Telemetry.LabelRules.IsLabelValue(workload) ? workload : Unknown,
            Telemetry.LabelRules.IsDnsLabel(ns) ? ns : Unknown,
            Telemetry.LabelRules.IsLabelValue(service) ? service : Unknown,
            Telemetry.LabelRules.IsLabelValue(revision) ? revision : EndpointWorkloadMetadata.DefaultRevision,
            Telemetry.LabelRules.IsLabelValue(cluster) ? cluster : null);
    }

    public bool Equals(EndpointWorkload? other) =>
        other is not null
        && (ReferenceEquals(this, other)
            || (_hash == other._hash
                && Workload == other.Workload
                && Namespace == other.Namespace
                && CanonicalService == other.CanonicalService
                && CanonicalRevision == other.CanonicalRevision
                && Cluster == other.Cluster));

    public override bool Equals(object? obj) => Equals(obj as EndpointWorkload);

    public override int GetHashCode() => _hash;

    public override string ToString() => EndpointWorkloadMetadata.Format(Workload, Namespace, CanonicalService, CanonicalRevision, Cluster ?? string.Empty);
}
