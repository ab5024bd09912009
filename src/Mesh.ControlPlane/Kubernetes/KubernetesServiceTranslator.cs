using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using k8s.Models;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>
/// What the Kubernetes API says about services, as the control plane's model: one <see cref="ServiceEntryModel"/> per
/// Service and one <see cref="WorkloadInstance"/> per (Service, endpoint address) that may take requests.
/// </summary>
/// <remarks>
/// The services go with the folder's ServiceEntries and the workloads with its WorkloadEntries (both
/// <see cref="EndpointSources.Static"/>): each Service selects exactly its own endpoints through
/// <see cref="KubernetesServiceTranslator.ServiceNameLabel"/>, which every workload of it carries.
/// </remarks>
internal sealed record KubernetesServices(ImmutableArray<ServiceEntryModel> Services, ImmutableArray<WorkloadInstance> Workloads, ImmutableArray<ConfigError> Errors)
{
    public static KubernetesServices Empty { get; } = new([], [], []);

    /// <summary>
    /// The Pods of endpoints that take no new request (not ready yet, or terminating): no endpoint of any Service, but
    /// still workloads whose inbound policy is sent (<see cref="YamlConfig.InboundOnlyWorkloads"/>).
    /// </summary>
    public ImmutableArray<WorkloadInstance> InboundOnly { get; init; } = [];
}

/// <summary>
/// Pure translation of Services, EndpointSlices, Pods and Nodes to the mesh model, following Istio's Kubernetes registry
/// (pilot/pkg/serviceregistry/kube): host <c>name.namespace.svc.domain</c>, protocols from <c>appProtocol</c> or the port
/// name, endpoints from every EndpointSlice labelled <c>kubernetes.io/service-name</c> in the Service's namespace, labels and
/// identity from the endpoint's Pod, locality from the Pod's label or its Node.
/// </summary>
/// <remarks>
/// Decisions (see each method): a terminating endpoint is never sent, whatever its <c>ready</c> says (Istio checks
/// <c>ready</c> first, which keeps terminating pods of a <c>publishNotReadyAddresses</c> Service); a not-ready endpoint is
/// not sent (Istio's default, without <c>PILOT_SEND_UNHEALTHY_ENDPOINTS</c>); an endpoint whose Pod is not (yet) known is
/// sent with what the slice says and no identity claim (Istio waits for the Pod). Headless Services are served like
/// ClusterIP ones (clients balance over the pods, as Istio's proxyless clients do); ExternalName Services become a DNS
/// endpoint outside the mesh (Istio before its <c>ENABLE_EXTERNAL_NAME_ALIAS</c> default).
/// </remarks>
internal static class KubernetesServiceTranslator
{
    /// <summary>The EndpointSlice label naming its Service; also the label by which a Service's entry selects its workloads.</summary>
    public const string ServiceNameLabel = "kubernetes.io/service-name";

    private const string PodLocalityLabel = "topology.istio.io/locality";
    private const string LegacyPodLocalityLabel = "istio-locality";
    private const string RegionLabel = "topology.kubernetes.io/region";
    private const string ZoneLabel = "topology.kubernetes.io/zone";
    private const string BetaRegionLabel = "failure-domain.beta.kubernetes.io/region";
    private const string BetaZoneLabel = "failure-domain.beta.kubernetes.io/zone";
    private const string SubzoneLabel = "topology.istio.io/subzone";

    internal static KubernetesServices Translate(
        IReadOnlyCollection<V1Service> services,
        IReadOnlyCollection<V1EndpointSlice> slices,
        IReadOnlyCollection<V1Pod> pods,
        IReadOnlyCollection<V1Node> nodes,
        string clusterDomain)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(slices);
        ArgumentNullException.ThrowIfNull(pods);
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentException.ThrowIfNullOrEmpty(clusterDomain);

        var errors = new List<ConfigError>();
        var entries = new SortedDictionary<(string Namespace, string Name), ServiceEntryModel>();
        foreach (var service in services)
        {
            if (TranslateService(service, clusterDomain, errors) is { } entry && !entries.TryAdd((entry.Namespace, entry.Name), entry))
            {
                errors.Add(Warning("Service", entry.Namespace, entry.Name, "metadata.name", "appears twice in the list; the first is used"));
            }
        }

        var podIndex = new PodIndex(pods);
        var nodeLabels = new Dictionary<string, IDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var node in nodes)
        {
            if (node.Metadata?.Name is { Length: > 0 } name)
            {
                nodeLabels[name] = node.Metadata.Labels ?? new Dictionary<string, string>();
            }
        }

        // Every slice of a Service, merged: the same endpoint may sit in two slices (the controller moves endpoints). An
        // endpoint is an address with its ports (kube-proxy's ip:port): one address on other ports is another endpoint.
        var endpoints = new Dictionary<(string Namespace, string Service), SortedDictionary<string, EndpointState>>();
        foreach (var slice in slices.OrderBy(s => s.Metadata?.NamespaceProperty, StringComparer.Ordinal).ThenBy(s => s.Metadata?.Name, StringComparer.Ordinal))
        {
            if (ReadSlice(slice, errors) is not { } read || !entries.TryGetValue((read.Namespace, read.Service), out var entry) || entry.Resolution == ExternalNameResolution)
            {
                // A slice of a Service not seen (yet, or elsewhere filtered) is nobody's endpoints; an ExternalName has none.
                continue;
            }

            if (!endpoints.TryGetValue((read.Namespace, read.Service), out var merged))
            {
                endpoints[(read.Namespace, read.Service)] = merged = new SortedDictionary<string, EndpointState>(StringComparer.Ordinal);
            }

            foreach (var endpoint in read.Endpoints)
            {
                var key = endpoint.Key;
                merged[key] = merged.TryGetValue(key, out var seen) ? seen.Merge(endpoint) : endpoint;
            }
        }

        var workloads = ImmutableArray.CreateBuilder<WorkloadInstance>();
        var inboundOnly = ImmutableArray.CreateBuilder<WorkloadInstance>();
        foreach (var ((ns, serviceName), merged) in endpoints.OrderBy(e => e.Key.Namespace, StringComparer.Ordinal).ThenBy(e => e.Key.Service, StringComparer.Ordinal))
        {
            foreach (var endpoint in merged.Values)
            {
                if (BuildWorkload(ns, serviceName, endpoint, podIndex, nodeLabels, errors, out var routable) is { } workload)
                {
                    (routable ? workloads : inboundOnly).Add(workload);
                }
            }
        }

        return new KubernetesServices([.. entries.Values], workloads.ToImmutable(), [.. errors]) { InboundOnly = inboundOnly.ToImmutable() };
    }

    /// <summary>The model's resolution for an ExternalName Service: one DNS endpoint, the external name.</summary>
    internal const string ExternalNameResolution = "DNS";

    /// <summary>
    /// Istio's <c>ConvertProtocol</c> (pkg/config/kube/conversion.go): UDP by the port's protocol; else <c>appProtocol</c> when
    /// set (with Kubernetes' <c>kubernetes.io/h2c</c>, <c>/ws</c>, <c>/wss</c>), else the port name; <c>grpc-web</c> as a
    /// prefix, else the part before the first '-', case-insensitive. What Istio leaves to sniffing is TCP here, the model's
    /// protocol for "not HTTP-aware" (as a ServiceEntry port without a protocol).
    /// </summary>
    internal static string DetectProtocol(string? portName, string? transport, string? appProtocol)
    {
        if (string.Equals(transport, "UDP", StringComparison.OrdinalIgnoreCase))
        {
            return "UDP";
        }

        var name = portName ?? string.Empty;
        if (appProtocol is not null)
        {
            name = appProtocol;
            switch (name)
            {
                case "kubernetes.io/h2c":
                    return "HTTP2";
                case "kubernetes.io/ws":
                    return "HTTP";
                case "kubernetes.io/wss":
                    return "HTTPS";
            }
        }

        if (name.StartsWith("grpc-web", StringComparison.OrdinalIgnoreCase))
        {
            return "GRPC-WEB";
        }

        var dash = name.IndexOf('-', StringComparison.Ordinal);
        var prefix = (dash >= 0 ? name[..dash] : name).ToLowerInvariant();
        return prefix switch
        {
            "http" or "http_proxy" => "HTTP",
            "http2" => "HTTP2",
            "https" => "HTTPS",
            "grpc" => "GRPC",
            "tcp" => "TCP",
            "udp" => "UDP",
            "tls" => "TLS",
            "mongo" => "MONGO",
            "redis" => "REDIS",
            "mysql" => "MYSQL",
            // Istio sniffs the rest (and takes SMTP, DNS, MySQL, MongoDB ports as TCP); the model has no sniffing.
            _ => "TCP",
        };
    }

    private static ServiceEntryModel? TranslateService(V1Service service, string clusterDomain, List<ConfigError> errors)
    {
        var ns = service.Metadata?.NamespaceProperty ?? string.Empty;
        var name = service.Metadata?.Name ?? string.Empty;
        var before = errors.Count;
        if (!IsDns1123Label(ns))
        {
            errors.Add(Error("Service", ns, name, "metadata.namespace", $"'{ns}' must be a DNS-1123 label (lower case letters, digits and '-', at most 63)"));
        }

        if (!IsDns1035Label(name))
        {
            errors.Add(Error("Service", ns, name, "metadata.name", $"'{name}' must be a DNS-1035 label (a lower case letter, then letters, digits and '-', at most 63)"));
        }

        var spec = service.Spec;
        if (spec is null)
        {
            errors.Add(Error("Service", ns, name, "spec", "is required"));
            return null;
        }

        var externalName = string.Equals(spec.Type, "ExternalName", StringComparison.Ordinal);
        if (externalName && (string.IsNullOrEmpty(spec.ExternalName) || !YamlConfigLoaderAddress(spec.ExternalName)))
        {
            errors.Add(Error("Service", ns, name, "spec.externalName", $"'{spec.ExternalName}' must be a DNS name for a Service of type ExternalName"));
        }

        var ports = new List<ServicePort>();
        var servicePorts = spec.Ports ?? [];
        for (var i = 0; i < servicePorts.Count; i++)
        {
            var port = servicePorts[i];
            var path = $"spec.ports[{i}]";
            var portName = port.Name ?? string.Empty;
            if (port.Port is < 1 or > 65535)
            {
                errors.Add(Error("Service", ns, name, $"{path}.port", $"{port.Port} must be between 1 and 65535"));
                continue;
            }

            if (portName.Length == 0 && servicePorts.Count > 1)
            {
                errors.Add(Error("Service", ns, name, $"{path}.name", "is required when a Service has more than one port"));
                continue;
            }

            uint? target = (uint)port.Port;
            if (port.TargetPort?.Value is { Length: > 0 } targetText)
            {
                if (int.TryParse(targetText, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
                {
                    if (number is < 1 or > 65535)
                    {
                        errors.Add(Error("Service", ns, name, $"{path}.targetPort", $"{number} must be between 1 and 65535"));
                        continue;
                    }

                    target = (uint)number;
                }
                else
                {
                    // A named container port: each endpoint's slice says its number (WorkloadInstance.Ports by port name).
                    target = null;
                }
            }

            if (ports.Exists(p => p.Number == (uint)port.Port))
            {
                // Kubernetes allows one number for TCP and UDP (DNS on 53); the model has one port per number.
                errors.Add(Warning("Service", ns, name, $"{path}.port", $"port {port.Port} is declared again (protocol {port.Protocol}); the first declaration is used"));
                continue;
            }

            if (ports.Exists(p => p.Name == portName))
            {
                errors.Add(Error("Service", ns, name, $"{path}.name", $"port name '{portName}' is declared twice"));
                continue;
            }

            ports.Add(new ServicePort((uint)port.Port, portName, DetectProtocol(portName, port.Protocol, port.AppProtocol), target));
        }

        if (errors.Skip(before).Any(e => !e.IsWarning))
        {
            return null;
        }

        if (ports.Count == 0)
        {
            errors.Add(Warning("Service", ns, name, "spec.ports", "has no port; nothing can call the Service through the mesh"));
            return null;
        }

        var host = $"{name}.{ns}.svc.{clusterDomain.TrimEnd('.').ToLowerInvariant()}";
        if (externalName)
        {
            // Outside the mesh (Istio: MeshExternal): plaintext to the external name on the Service's own ports.
            var endpoint = new WorkloadInstance(
                ns,
                name,
                spec.ExternalName!.TrimEnd('.').ToLowerInvariant(),
                ImmutableSortedDictionary<string, uint>.Empty,
                ImmutableSortedDictionary<string, string>.Empty,
                ServiceAccount: string.Empty,
                Locality: string.Empty,
                Weight: 0,
                EndpointSources.Static,
                LeaseId: null);
            return new ServiceEntryModel(ns, name, [host], [.. ports.Select(p => p with { TargetPort = p.Number })], WorkloadSelector: null, [endpoint], ExternalNameResolution);
        }

        var selector = ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, [KeyValuePair.Create(ServiceNameLabel, name)]);
        return new ServiceEntryModel(ns, name, [host], [.. ports], selector, [], "STATIC");
    }

    private sealed record SliceRead(string Namespace, string Service, List<EndpointState> Endpoints);

    /// <summary>One address of a slice's endpoint: what the slice says about it.</summary>
    private sealed record EndpointState(
        string Address,
        ImmutableSortedDictionary<string, uint> Ports,
        bool Serves,
        V1ObjectReference? TargetRef,
        string? NodeName,
        string Slice)
    {
        /// <summary>Gets the endpoint's identity across slices: address and ports, ordered as the output is.</summary>
        public string Key { get; } = Address + "|" + string.Join(',', Ports.Select(p => $"{p.Key}={p.Value.ToString(CultureInfo.InvariantCulture)}"));

        /// <summary>
        /// The same endpoint in another slice: it serves only when every copy says so (a copy that says terminating or not
        /// ready may be the newer one); the first slice by name gives the rest.
        /// </summary>
        public EndpointState Merge(EndpointState other) =>
            this with { Serves = Serves && other.Serves, TargetRef = TargetRef ?? other.TargetRef, NodeName = NodeName ?? other.NodeName };
    }

    private static SliceRead? ReadSlice(V1EndpointSlice slice, List<ConfigError> errors)
    {
        var ns = slice.Metadata?.NamespaceProperty ?? string.Empty;
        var name = slice.Metadata?.Name ?? string.Empty;
        if (slice.Metadata?.Labels is null || !slice.Metadata.Labels.TryGetValue(ServiceNameLabel, out var service))
        {
            // Not a Service's slice (Istio's registry ignores these too).
            return null;
        }

        if (string.Equals(slice.AddressType, "FQDN", StringComparison.Ordinal))
        {
            // Deprecated, without semantics; Istio skips it.
            return null;
        }

        var before = errors.Count;
        if (!IsDns1035Label(service))
        {
            // The label names a Service of the slice's own namespace: "ns/name" or "name.ns" is no way to reach another.
            errors.Add(Error("EndpointSlice", ns, name, $"metadata.labels[{ServiceNameLabel}]", $"'{service}' is not a Service name (a DNS-1035 label of the slice's own namespace)"));
        }

        var family = slice.AddressType switch
        {
            "IPv4" => AddressFamily.InterNetwork,
            "IPv6" => AddressFamily.InterNetworkV6,
            _ => AddressFamily.Unknown,
        };
        if (family == AddressFamily.Unknown)
        {
            errors.Add(Error("EndpointSlice", ns, name, "addressType", $"'{slice.AddressType}' must be IPv4, IPv6 or FQDN"));
        }

        var ports = ImmutableSortedDictionary.CreateBuilder<string, uint>(StringComparer.Ordinal);
        var slicePorts = slice.Ports ?? [];
        for (var i = 0; i < slicePorts.Count; i++)
        {
            var port = slicePorts[i];
            var portName = port.Name ?? string.Empty;
            if (port.Port is null)
            {
                // "Not restricted": no number to send a client to.
                continue;
            }

            if (port.Port is < 1 or > 65535)
            {
                errors.Add(Error("EndpointSlice", ns, name, $"ports[{i}].port", $"{port.Port} must be between 1 and 65535"));
            }
            else if (!ports.TryAdd(portName, (uint)port.Port.Value))
            {
                errors.Add(Error("EndpointSlice", ns, name, $"ports[{i}].name", $"port name '{portName}' appears twice"));
            }
        }

        var endpoints = new List<EndpointState>();
        var sliceEndpoints = slice.Endpoints ?? [];
        for (var i = 0; i < sliceEndpoints.Count; i++)
        {
            var endpoint = sliceEndpoints[i];
            var addresses = endpoint.Addresses ?? [];
            if (addresses.Count == 0)
            {
                errors.Add(Error("EndpointSlice", ns, name, $"endpoints[{i}].addresses", "must list at least one address"));
                continue;
            }

            var conditions = endpoint.Conditions;
            // Terminating is checked first: a terminating endpoint never takes a new request, even marked ready.
            var serves = conditions?.Terminating != true && conditions?.Ready != false;
            for (var a = 0; a < addresses.Count; a++)
            {
                if (!IPAddress.TryParse(addresses[a], out var ip) || ip.AddressFamily != family || ip.ToString() != addresses[a])
                {
                    if (family != AddressFamily.Unknown)
                    {
                        errors.Add(Error("EndpointSlice", ns, name, $"endpoints[{i}].addresses[{a}]", $"'{addresses[a]}' must be an {slice.AddressType} address in canonical form"));
                    }

                    continue;
                }

                endpoints.Add(new EndpointState(addresses[a], ports.ToImmutable(), serves, endpoint.TargetRef, endpoint.NodeName, name));
            }
        }

        return errors.Skip(before).Any(e => !e.IsWarning) ? null : new SliceRead(ns, service, endpoints);
    }

    /// <summary>
    /// The workload of one address of a Service: its ports from the slice; labels, service account and node from the Pod
    /// the slice names, when that Pod is in the slice's namespace and has the address; otherwise the slice alone (no
    /// labels, no identity claim: clients then accept the identities the Service's other endpoints run as).
    /// <paramref name="routable"/> is false for the Pod of an endpoint that takes no new request (not ready, terminating,
    /// or its Pod being deleted before the slice says so): no endpoint, but its inbound policy is still sent, as istiod
    /// builds a proxy's inbound listeners whatever its readiness, so that a Pod whose readiness waits for that policy can
    /// become ready and a draining one keeps enforcing it. Such an endpoint without its Pod is no workload at all.
    /// </summary>
    private static WorkloadInstance? BuildWorkload(
        string ns,
        string service,
        EndpointState endpoint,
        PodIndex pods,
        Dictionary<string, IDictionary<string, string>> nodes,
        List<ConfigError> errors,
        out bool routable)
    {
        // Problems are reported for the endpoints that take requests, as before: a Pod not ready yet is often not cached yet.
        if (!endpoint.Serves)
        {
            errors = [];
        }

        var pod = FindPod(ns, endpoint, pods, errors);
        routable = endpoint.Serves && pod?.Metadata?.DeletionTimestamp is null;
        if (!routable && pod is null)
        {
            return null;
        }

        var labels = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in pod?.Metadata?.Labels ?? new Dictionary<string, string>())
        {
            labels[key] = value;
        }

        // Last, so that no pod label takes the workload into another Service.
        labels[ServiceNameLabel] = service;
        var serviceAccount = pod is null
            ? string.Empty
            : pod.Spec?.ServiceAccountName is { Length: > 0 } sa ? sa : pod.Spec?.ServiceAccount is { Length: > 0 } legacy ? legacy : "default";
        var locality = Locality(pod, endpoint.NodeName, nodes);
        if (!Mesh.Xds.Wire.LocalityNames.TryValidate(locality, out var reason))
        {
            errors.Add(Warning("EndpointSlice", ns, endpoint.Slice, "endpoints[].nodeName", $"the locality of {endpoint.Address} {reason}; it is sent without a locality"));
            locality = string.Empty;
        }

        var name = pod?.Metadata?.Name ?? endpoint.TargetRef?.Name ?? endpoint.Address;
        return new WorkloadInstance(ns, name, endpoint.Address, endpoint.Ports, labels.ToImmutable(), serviceAccount, locality, Weight: 0, EndpointSources.Static, LeaseId: null)
        {
            // Without its Pod nothing names the workload (istiod sends an empty name then): unknown, not an address.
            WorkloadName = pod is null ? "unknown" : WorkloadNameOf(pod),
        };
    }

    /// <summary>
    /// The workload a Pod belongs to, as istiod names it for telemetry (kube's GetDeployMetaFromPod): its controller's name,
    /// a ReplicaSet's with its <c>pod-template-hash</c> suffix removed (the Deployment); the Pod's own name without one.
    /// </summary>
    internal static string? WorkloadNameOf(V1Pod pod)
    {
        var controller = pod.Metadata?.OwnerReferences?.FirstOrDefault(o => o.Controller == true);
        if (controller is null || string.IsNullOrEmpty(controller.Name))
        {
            return pod.Metadata?.Name;
        }

        if (controller.Kind == "ReplicaSet"
            && pod.Metadata?.Labels is { } labels
            && labels.TryGetValue("pod-template-hash", out var hash)
            && hash.Length > 0
            && controller.Name.EndsWith("-" + hash, StringComparison.Ordinal))
        {
            return controller.Name[..^(hash.Length + 1)];
        }

        return controller.Name;
    }

    private static V1Pod? FindPod(string ns, EndpointState endpoint, PodIndex pods, List<ConfigError> errors)
    {
        var target = endpoint.TargetRef;
        if (target is not null && !string.Equals(target.Kind, "Pod", StringComparison.Ordinal))
        {
            return null;
        }

        if (target is null)
        {
            // Istio: without a targetRef, the Pod of the slice's namespace with the address.
            return pods.ByAddress(ns, endpoint.Address);
        }

        if (target.NamespaceProperty is { Length: > 0 } targetNamespace && targetNamespace != ns)
        {
            errors.Add(Warning("EndpointSlice", ns, endpoint.Slice, "endpoints[].targetRef.namespace",
                $"'{targetNamespace}' is not the slice's namespace: the Pod of {endpoint.Address} is not used (no labels, no identity from it)"));
            return null;
        }

        if (target.Name is not { Length: > 0 } podName || pods.ByName(ns, podName) is not { } pod)
        {
            // Not in the cache yet: the endpoint still goes out, with what the slice says.
            return null;
        }

        var addresses = new List<string>();
        if (pod.Status?.PodIP is { Length: > 0 } podIp)
        {
            addresses.Add(podIp);
        }

        addresses.AddRange((pod.Status?.PodIPs ?? []).Select(p => p.Ip).OfType<string>());
        if (!addresses.Contains(endpoint.Address, StringComparer.Ordinal))
        {
            errors.Add(Warning("EndpointSlice", ns, endpoint.Slice, "endpoints[].targetRef.name",
                $"Pod {ns}/{podName} does not have the address {endpoint.Address} (it has {(addresses.Count == 0 ? "none" : string.Join(", ", addresses))}): its labels and service account are not used"));
            return null;
        }

        return pod;
    }

    /// <summary>
    /// Istio's <c>getPodLocality</c>: the Pod's <c>topology.istio.io/locality</c> (or <c>istio-locality</c>) label, '.' read
    /// as '/'; else the Node's region/zone labels (GA, then beta) and <c>topology.istio.io/subzone</c>. A missing Pod: the
    /// slice's <c>nodeName</c>. The model's locality has no empty part, so it stops at the first missing one.
    /// </summary>
    private static string Locality(V1Pod? pod, string? sliceNodeName, Dictionary<string, IDictionary<string, string>> nodes)
    {
        var podLabels = pod?.Metadata?.Labels;
        if (podLabels is not null
            && (podLabels.TryGetValue(PodLocalityLabel, out var label) || podLabels.TryGetValue(LegacyPodLocalityLabel, out label))
            && label.Length > 0)
        {
            return label.Contains('/', StringComparison.Ordinal) ? label : label.Replace('.', '/');
        }

        var nodeName = pod is null ? sliceNodeName : pod.Spec?.NodeName;
        if (nodeName is null || !nodes.TryGetValue(nodeName, out var node))
        {
            return string.Empty;
        }

        string Get(string ga, string? beta) =>
            node.TryGetValue(ga, out var value) && value.Length > 0 ? value
            : beta is not null && node.TryGetValue(beta, out value) ? value : string.Empty;

        string[] parts = [Get(RegionLabel, BetaRegionLabel), Get(ZoneLabel, BetaZoneLabel), Get(SubzoneLabel, null)];
        var present = parts.TakeWhile(p => p.Length > 0).ToArray();
        return string.Join('/', present);
    }

    private sealed class PodIndex
    {
        private readonly Dictionary<(string Namespace, string Name), V1Pod> _byName = [];
        private readonly Dictionary<(string Namespace, string Address), List<V1Pod>> _byAddress = [];

        public PodIndex(IEnumerable<V1Pod> pods)
        {
            foreach (var pod in pods)
            {
                var ns = pod.Metadata?.NamespaceProperty ?? string.Empty;
                if (pod.Metadata?.Name is { Length: > 0 } name)
                {
                    _byName.TryAdd((ns, name), pod);
                }

                if (pod.Spec?.HostNetwork == true || pod.Status?.Phase is "Succeeded" or "Failed")
                {
                    // A host-network pod has its node's address; a finished one gave its address back.
                    continue;
                }

                var addresses = new HashSet<string>(StringComparer.Ordinal);
                if (pod.Status?.PodIP is { Length: > 0 } ip)
                {
                    addresses.Add(ip);
                }

                addresses.UnionWith((pod.Status?.PodIPs ?? []).Select(p => p.Ip).OfType<string>());
                foreach (var address in addresses)
                {
                    if (!_byAddress.TryGetValue((ns, address), out var list))
                    {
                        _byAddress[(ns, address)] = list = [];
                    }

                    list.Add(pod);
                }
            }
        }

        public V1Pod? ByName(string ns, string name) => _byName.GetValueOrDefault((ns, name));

        /// <summary>The one Pod of <paramref name="ns"/> with the address; none when two claim it.</summary>
        public V1Pod? ByAddress(string ns, string address) =>
            _byAddress.TryGetValue((ns, address), out var list) && list.Count == 1 ? list[0] : null;
    }

    private static bool YamlConfigLoaderAddress(string value) => Sources.YamlConfigLoader.IsAddress(value.TrimEnd('.'));

    private static bool IsDns1123Label(string value) =>
        value.Length is > 0 and <= 63 && IsLowerAlnum(value[0]) && IsLowerAlnum(value[^1]) && value.All(c => IsLowerAlnum(c) || c == '-');

    private static bool IsDns1035Label(string value) => IsDns1123Label(value) && char.IsAsciiLetterLower(value[0]);

    private static bool IsLowerAlnum(char c) => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c);

    private static ConfigError Error(string kind, string ns, string name, string path, string message) =>
        new($"{kind} {ns}/{name}", 0, $"{kind} {ns}/{name}: {path}: {message}; the {kind} is ignored", Kind: kind);

    private static ConfigError Warning(string kind, string ns, string name, string path, string message) =>
        new($"{kind} {ns}/{name}", 0, $"{kind} {ns}/{name}: {path}: {message}", IsWarning: true, Kind: kind);
}
