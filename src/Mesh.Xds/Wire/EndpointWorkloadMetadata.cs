namespace Mesh.Xds.Wire;

/// <summary>
/// Istio's telemetry metadata on an EDS endpoint: <c>metadata.filter_metadata["istio"]["workload"]</c> =
/// <c>&lt;workload&gt;;&lt;namespace&gt;;&lt;canonical service&gt;;&lt;canonical revision&gt;;&lt;cluster&gt;</c>, which istiod puts on
/// every endpoint (pilot's <c>AppendLbEndpointMetadata</c>) and Istio's client-side stats read when no peer metadata
/// came (istio/proxy <c>convertEndpointMetadata</c>): the caller's <c>destination_workload</c>,
/// <c>destination_canonical_service</c>, <c>destination_canonical_revision</c> and <c>destination_cluster</c>. The
/// canonical-label rules of Istio's injector live here too, so that a workload reports the same names for itself (the
/// destination reporter) as its callers read for it (the source reporter).
/// </summary>
internal static class EndpointWorkloadMetadata
{
    /// <summary>The filter-metadata key of the endpoint's Istio metadata.</summary>
    public const string FilterName = "istio";

    /// <summary>The field of <see cref="FilterName"/> that holds the encoded workload.</summary>
    public const string WorkloadField = "workload";

    /// <summary>The label that names a WorkloadEntry's workload for telemetry (Istio's <c>service.istio.io/workload-name</c>).</summary>
    public const string WorkloadNameLabel = "service.istio.io/workload-name";

    /// <summary>Istio's canonical revision when no label gives one.</summary>
    public const string DefaultRevision = "latest";

    /// <summary>The encoded value; a part containing ';' would shift the others, so it is left empty.</summary>
    public static string Format(string workload, string @namespace, string canonicalService, string canonicalRevision, string cluster) =>
        string.Join(';', Part(workload), Part(@namespace), Part(canonicalService), Part(canonicalRevision), Part(cluster));

    /// <summary>Splits an encoded value into its five parts (as istio/proxy: fewer than five is no metadata; more are ignored).</summary>
    public static bool TryParse(string? value, out string workload, out string @namespace, out string canonicalService, out string canonicalRevision, out string cluster)
    {
        workload = @namespace = canonicalService = canonicalRevision = cluster = string.Empty;
        var parts = (value ?? string.Empty).Split(';');
        if (parts.Length < 5)
        {
            return false;
        }

        (workload, @namespace, canonicalService, canonicalRevision, cluster) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
        return true;
    }

    /// <summary>Istio's injector: <c>service.istio.io/canonical-name</c>, else <c>app.kubernetes.io/name</c>, else <c>app</c>; null when none is set.</summary>
    public static string? CanonicalService(IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return Label(labels, "service.istio.io/canonical-name") ?? Label(labels, "app.kubernetes.io/name") ?? Label(labels, "app");
    }

    /// <summary>Istio's injector: <c>service.istio.io/canonical-revision</c>, else <c>app.kubernetes.io/version</c>, else <c>version</c>, else <c>latest</c>.</summary>
    public static string CanonicalRevision(IReadOnlyDictionary<string, string> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        return Label(labels, "service.istio.io/canonical-revision") ?? Label(labels, "app.kubernetes.io/version") ?? Label(labels, "version") ?? DefaultRevision;
    }

    private static string? Label(IReadOnlyDictionary<string, string> labels, string name) =>
        labels.TryGetValue(name, out var value) && value.Length > 0 ? value : null;

    private static string Part(string value) => value.Contains(';', StringComparison.Ordinal) ? string.Empty : value;
}
