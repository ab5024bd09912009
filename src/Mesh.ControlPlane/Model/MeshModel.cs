using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>Load balancing algorithms a DestinationRule may select.</summary>
internal enum LoadBalancerKind
{
    RoundRobin,
    LeastRequest,
    Random,

    /// <summary><c>consistentHash</c>: a ring hash (or Maglev) keyed by the route's hash policy; see <see cref="ConsistentHashModel"/>.</summary>
    ConsistentHash,
}

/// <summary>DestinationRule <c>spec.trafficPolicy.tls.mode</c> values Mesh supports.</summary>
internal enum UpstreamTlsMode
{
    /// <summary>mTLS with mesh certificates; the server must present one of the service's SPIFFE IDs.</summary>
    IstioMutual,

    /// <summary>Plaintext, even for mesh workloads.</summary>
    Disable,
}

internal sealed record ServicePort(uint Number, string Name, string Protocol, uint? TargetPort);

/// <summary>Where an endpoint came from: YAML (static) or a runtime registration.</summary>
internal static class EndpointSources
{
    public const string Static = "static";
    public const string Registration = "registration";
}

/// <summary>A WorkloadEntry, from YAML, from a ServiceEntry's inline endpoints, or from a registration.</summary>
internal sealed record WorkloadInstance(
    string Namespace,
    string Name,
    string Address,
    ImmutableSortedDictionary<string, uint> Ports,
    ImmutableSortedDictionary<string, string> Labels,
    string ServiceAccount,
    string Locality,
    uint Weight,
    string Source,
    string? LeaseId)
{
    /// <summary>
    /// A registration made by a caller that proved <see cref="Namespace"/>/<see cref="ServiceAccount"/> with a credential
    /// (the TLS port); false for static config and for plaintext registrations, whose service account is only a claim.
    /// </summary>
    public bool CertifiedIdentity { get; init; }

    /// <summary>
    /// The workload this instance belongs to, when its source knows it (a Pod's controller: its Deployment, StatefulSet…);
    /// telemetry names the instance by it (<see cref="TelemetryWorkloadName"/>).
    /// </summary>
    public string? WorkloadName { get; init; }

    /// <summary>
    /// The workload name of Istio's telemetry: the <c>service.istio.io/workload-name</c> label, else <see cref="WorkloadName"/>,
    /// else the instance's name, else its <c>app</c> label (a registration carries no name; its <c>app</c> is its service,
    /// what the registering client reports for itself), else <c>unknown</c>.
    /// </summary>
    public string TelemetryWorkloadName =>
        Labels.TryGetValue(Mesh.Xds.Wire.EndpointWorkloadMetadata.WorkloadNameLabel, out var label) && label.Length > 0 ? label
        : !string.IsNullOrEmpty(WorkloadName) ? WorkloadName
        : !string.IsNullOrEmpty(Name) ? Name
        : Labels.TryGetValue("app", out var app) && app.Length > 0 ? app
        : "unknown";
}

internal sealed record ServiceEntryModel(
    string Namespace,
    string Name,
    ImmutableArray<string> Hosts,
    ImmutableArray<ServicePort> Ports,
    ImmutableSortedDictionary<string, string>? WorkloadSelector,
    ImmutableArray<WorkloadInstance> StaticEndpoints,
    string Resolution,
    ImmutableArray<string> SubjectAltNames = default)
{
    /// <summary>Istio's <c>spec.subjectAltNames</c>: the SPIFFE IDs the service's workloads run as (empty = unset).</summary>
    public ImmutableArray<string> SubjectAltNames { get; init; } = SubjectAltNames.IsDefault ? [] : SubjectAltNames;
}

/// <summary>A DestinationRule; <paramref name="TlsMode"/> is null when it has no <c>spec.trafficPolicy.tls</c> (auto mTLS applies).</summary>
internal sealed record DestinationRuleModel(string Namespace, string Name, string Host, LoadBalancerKind LoadBalancer, UpstreamTlsMode? TlsMode = null)
{
    /// <summary>Istio's <c>spec.subsets</c>, in the order written.</summary>
    public ImmutableArray<SubsetModel> Subsets { get; init; } = [];

    /// <summary>The hash key when <see cref="LoadBalancer"/> is <see cref="LoadBalancerKind.ConsistentHash"/>.</summary>
    public ConsistentHashModel? ConsistentHash { get; init; }
    /// <summary>Gets <c>spec.trafficPolicy</c>'s load balancer, resilience blocks and port-level settings.</summary>
    public TrafficPolicyModel Traffic { get; init; } = TrafficPolicyModel.None;

    /// <summary>Gets <c>spec.trafficPolicy.loadBalancer.localityLbSetting</c>; null when unset (the mesh default applies).</summary>
    public LocalityLbSettingModel? LocalityLb { get; init; }
}

/// <summary>One problem found in the config folder. Warnings do not reject the config.</summary>
/// <param name="Kind">The resource kind the problem is in; null when it is in no resource (an unreadable file, invalid YAML).</param>
internal sealed record ConfigError(string File, int Line, string Message, bool IsWarning = false, string? Kind = null)
{
    public override string ToString() => $"{File}:{Line}: {(IsWarning ? "warning: " : string.Empty)}{Message}";
}

/// <summary>Everything read from the config folder, validated as a whole.</summary>
internal sealed record YamlConfig(
    ImmutableArray<ServiceEntryModel> ServiceEntries,
    ImmutableArray<WorkloadInstance> WorkloadEntries,
    ImmutableArray<DestinationRuleModel> DestinationRules)
{
    public static YamlConfig Empty { get; } = new([], [], []);

    public ImmutableArray<PeerAuthenticationModel> PeerAuthentications { get; init; } = [];

    public ImmutableArray<AuthorizationPolicyModel> AuthorizationPolicies { get; init; } = [];

    public ImmutableArray<RequestAuthenticationModel> RequestAuthentications { get; init; } = [];

    public ImmutableArray<VirtualServiceModel> VirtualServices { get; init; } = [];

    public ImmutableArray<LocalRateLimitPolicyModel> LocalRateLimitPolicies { get; init; } = [];

    /// <summary>Istio's Sidecar resources: which services the workloads they select see.</summary>
    public ImmutableArray<SidecarModel> Sidecars { get; init; } = [];

    /// <summary>
    /// Workloads that are no endpoint of any service but still serve (Kubernetes Pods not ready yet, or terminating):
    /// only their inbound listeners are built from them, never an endpoint.
    /// </summary>
    public ImmutableArray<WorkloadInstance> InboundOnlyWorkloads { get; init; } = [];

    /// <summary>The cluster domain short hosts were qualified in (<c>Kubernetes:ClusterDomain</c>); their aliases are served in it.</summary>
    public string ClusterDomain { get; init; } = HostNames.DefaultClusterDomain;
}

/// <summary>The immutable model the translator works from; replaced as a whole on every change.</summary>
internal sealed record ModelSnapshot(long Version, YamlConfig Config, ImmutableArray<WorkloadInstance> Registrations)
{
    public static ModelSnapshot Empty { get; } = new(0, YamlConfig.Empty, []);
}

internal static class HostNames
{
    /// <summary>Kubernetes' default cluster domain (<c>Kubernetes:ClusterDomain</c>, istiod's <c>--domain</c>).</summary>
    public const string DefaultClusterDomain = "cluster.local";

    /// <summary>The suffix of a Kubernetes service name in <paramref name="clusterDomain"/>: <c>.svc.cluster.local</c> by default.</summary>
    public static string ServiceSuffix(string clusterDomain) => $".svc.{clusterDomain}";

    /// <summary>Istio treats a host without dots as relative to the resource's namespace, in the cluster's domain (ResolveShortnameToFQDN).</summary>
    public static string Qualify(string host, string ns, string clusterDomain = DefaultClusterDomain) =>
        host.Contains('.', StringComparison.Ordinal)
            ? host.ToLowerInvariant()
            : $"{host.ToLowerInvariant()}.{ns}{ServiceSuffix(clusterDomain)}";

    /// <summary>Every name a client may use for <paramref name="fqdn"/> (without port).</summary>
    public static IReadOnlyList<string> Aliases(string fqdn, string clusterDomain = DefaultClusterDomain)
    {
        var suffix = ServiceSuffix(clusterDomain);
        if (fqdn.EndsWith(suffix, StringComparison.Ordinal))
        {
            var parts = fqdn[..^suffix.Length].Split('.');
            if (parts.Length == 2)
            {
                var name = parts[0];
                var ns = parts[1];
                return [name, $"{name}.{ns}", $"{name}.{ns}.svc", fqdn];
            }
        }

        return [fqdn];
    }

    public static bool LabelsMatch(IReadOnlyDictionary<string, string> selector, IReadOnlyDictionary<string, string> labels)
    {
        foreach (var (key, value) in selector)
        {
            if (!labels.TryGetValue(key, out var actual) || !string.Equals(actual, value, StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }
}
