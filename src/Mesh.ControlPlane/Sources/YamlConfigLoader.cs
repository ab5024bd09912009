using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

internal sealed record YamlLoadResult(YamlConfig Config, ImmutableArray<ConfigError> Errors)
{
    public bool HasErrors => Errors.Any(e => !e.IsWarning);
}

/// <summary>Reads Istio YAML (ServiceEntry, WorkloadEntry, DestinationRule, VirtualService, Sidecar, PeerAuthentication, AuthorizationPolicy, RequestAuthentication) and validates it as a whole.</summary>
internal static partial class YamlConfigLoader
{
    private static readonly string[] ApiVersions = ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"];
    private static readonly string[] Resolutions = ["STATIC", "NONE", "DNS", "DNS_ROUND_ROBIN"];
    private static readonly string[] Protocols = ["HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "TCP", "TLS", "MONGO", "REDIS", "MYSQL", "UDP"];

    public static YamlLoadResult LoadDirectory(string directory) => LoadDirectory(directory, cache: null);

    /// <summary>
    /// Reads and validates the folder; with <paramref name="cache"/>, a file whose text is the same as at the last load is
    /// not parsed again (its resources are reused), so a change to one file of thousands costs one file's parse. The
    /// folder is still validated as a whole.
    /// </summary>
    /// <param name="clusterDomain">The cluster domain short hosts are qualified in (<c>Kubernetes:ClusterDomain</c>).</param>
    public static YamlLoadResult LoadDirectory(string directory, YamlParseCache? cache, string clusterDomain = HostNames.DefaultClusterDomain)
    {
        if (!Directory.Exists(directory))
        {
            // A vanished folder (mid checkout, unmounted volume) must not wipe the mesh: reject instead.
            return new YamlLoadResult(YamlConfig.Empty, [new ConfigError(directory, 0, "config folder does not exist; keeping the last good config")]);
        }

        var files = Directory.EnumerateFiles(directory)
            .Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)
            .ToList();
        var sources = new List<(string, string)>();
        var errors = new List<ConfigError>();
        foreach (var file in files)
        {
            try
            {
                sources.Add((Path.GetFileName(file), File.ReadAllText(file)));
            }
            catch (IOException ex)
            {
                errors.Add(new ConfigError(Path.GetFileName(file), 0, $"cannot read file: {ex.Message}"));
            }
            catch (UnauthorizedAccessException ex)
            {
                errors.Add(new ConfigError(Path.GetFileName(file), 0, $"cannot read file: {ex.Message}"));
            }
        }

        var result = Load(sources, cache, clusterDomain);
        return errors.Count == 0 ? result : result with { Errors = [.. errors, .. result.Errors] };
    }

    public static YamlLoadResult Load(IEnumerable<(string FileName, string Text)> files) => Load(files, cache: null);

    /// <summary>Like <see cref="Load(IEnumerable{ValueTuple{string, string}})"/>, qualifying short hosts in <paramref name="clusterDomain"/>.</summary>
    public static YamlLoadResult Load(IEnumerable<(string FileName, string Text)> files, string clusterDomain) => Load(files, cache: null, clusterDomain);

    private static YamlLoadResult Load(IEnumerable<(string FileName, string Text)> files, YamlParseCache? cache, string clusterDomain = HostNames.DefaultClusterDomain)
    {
        ArgumentNullException.ThrowIfNull(files);
        var errors = new List<ConfigError>();
        var services = new List<(ServiceEntryModel Model, string File, int Line)>();
        var workloads = new List<WorkloadInstance>();
        var rules = new List<(DestinationRuleModel Model, string File, int Line)>();
        var security = new SecurityPolicyLists();
        var virtualServices = new List<ParsedVirtualService>();
        var rateLimits = new List<LocalRateLimitPolicyModel>();
        var sidecars = new List<(SidecarModel Model, string File, int Line)>();
        var resources = new List<ResourceName>();
        var parsed = new Dictionary<string, (string Text, ParsedFile Parse)>(StringComparer.Ordinal);

        foreach (var (file, text) in files)
        {
            var parse = cache?.Find(file, text) ?? ParseFile(file, text, clusterDomain);
            parsed[file] = (text, parse);
            errors.AddRange(parse.Errors);
            services.AddRange(parse.Services);
            workloads.AddRange(parse.Workloads);
            rules.AddRange(parse.Rules);
            security.PeerAuthentications.AddRange(parse.Security.PeerAuthentications);
            security.AuthorizationPolicies.AddRange(parse.Security.AuthorizationPolicies);
            security.RequestAuthentications.AddRange(parse.Security.RequestAuthentications);
            virtualServices.AddRange(parse.VirtualServices);
            rateLimits.AddRange(parse.RateLimits);
            sidecars.AddRange(parse.Sidecars);
            resources.AddRange(parse.Resources);
        }

        cache?.Replace(parsed);

        CheckDuplicateNames(resources, errors);
        CheckDuplicates(services, rules, errors);
        CheckSecurityDuplicates(security, errors);
        CheckVirtualServices(virtualServices, services, rules, errors);
        CheckRateLimitPolicies(rateLimits, services, errors);
        CheckSidecars(sidecars, errors);
        var config = new YamlConfig([.. services.Select(s => s.Model)], [.. workloads], [.. rules.Select(r => r.Model)])
        {
            PeerAuthentications = [.. security.PeerAuthentications],
            AuthorizationPolicies = [.. security.AuthorizationPolicies],
            RequestAuthentications = [.. security.RequestAuthentications],
            VirtualServices = [.. virtualServices.Select(v => v.Model)],
            LocalRateLimitPolicies = [.. rateLimits],
            Sidecars = [.. sidecars.Select(s => s.Model)],
            ClusterDomain = clusterDomain,
        };
        return new YamlLoadResult(config, [.. errors]);
    }

    /// <summary>One file's documents parsed (and each resource validated on its own); never changed once built, so a cache may share it.</summary>
    private static ParsedFile ParseFile(string file, string text, string clusterDomain = HostNames.DefaultClusterDomain)
    {
        var result = new ParsedFile();
        var stream = new YamlStream();
        try
        {
            // Before the representation model, which recurses per level and expands every alias.
            if (CheckShape(file, text) is { } refused)
            {
                result.Errors.Add(refused);
                return result;
            }

            stream.Load(new StringReader(text));
        }
        catch (YamlException ex)
        {
            result.Errors.Add(new ConfigError(file, (int)ex.Start.Line, $"invalid YAML: {InnerMessage(ex)}"));
            return result;
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner throws this for some documents cut off at end of file.
            result.Errors.Add(new ConfigError(file, text.Split('\n').Length, "invalid YAML: unexpected end of file (unclosed bracket or quote?)"));
            return result;
        }

        foreach (var document in stream.Documents)
        {
            if (document.RootNode is YamlScalarNode { Value: null or "" or "~" })
            {
                continue;
            }

            try
            {
                ParseDocument(file, document.RootNode, result.Errors, result.Services, result.Workloads, result.Rules, result.Security, result.VirtualServices, result.RateLimits, result.Sidecars, result.Resources, clusterDomain);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A shape the reader does not expect must cost this file, never the control plane: the folder is rejected with
                // the file:line named, and the last good config keeps serving.
                result.Errors.Add(new ConfigError(file, Line(document.RootNode),
                    $"cannot read this document ({ex.GetType().Name}: {ex.Message}); this is a bug in the control plane's reader, please report it with the document"));
            }
        }

        return result;
    }

    private static string InnerMessage(YamlException ex)
    {
        Exception e = ex;
        while (e.InnerException is YamlException inner)
        {
            e = inner;
        }

        return e.Message;
    }

    /// <summary>
    /// One object per kind, namespace and name, as the API server keys them (it refuses a second create, and istiod keeps
    /// one): two files defining the same WorkloadEntry (a copied file whose name was not changed) would otherwise both
    /// be served under one name.
    /// </summary>
    private static void CheckDuplicateNames(List<ResourceName> resources, List<ConfigError> errors)
    {
        var first = new Dictionary<(string Kind, string Namespace, string Name), ResourceName>();
        foreach (var resource in resources)
        {
            if (!first.TryAdd((resource.Kind, resource.Namespace, resource.Name), resource))
            {
                var earlier = first[(resource.Kind, resource.Namespace, resource.Name)];
                errors.Add(new ConfigError(resource.File, resource.Line,
                    $"{resource.Kind} {resource.Namespace}/{resource.Name}: metadata.name: {resource.Kind} {resource.Namespace}/{resource.Name} is already defined at {earlier.File}:{earlier.Line}; one object per kind, namespace and name (Kubernetes and istiod keep only one): rename or remove one",
                    Kind: resource.Kind));
            }
        }
    }

    private static void CheckDuplicates(List<(ServiceEntryModel Model, string File, int Line)> services, List<(DestinationRuleModel Model, string File, int Line)> rules, List<ConfigError> errors)
    {
        var hosts = new Dictionary<string, (ServiceEntryModel Model, string File, int Line)>(StringComparer.Ordinal);
        foreach (var entry in services)
        {
            foreach (var host in entry.Model.Hosts)
            {
                if (hosts.TryGetValue(host, out var first))
                {
                    errors.Add(new ConfigError(entry.File, entry.Line,
                        $"ServiceEntry {entry.Model.Namespace}/{entry.Model.Name}: spec.hosts: host {host} is already declared by ServiceEntry {first.Model.Namespace}/{first.Model.Name} ({first.File}:{first.Line})", Kind: "ServiceEntry"));
                }
                else
                {
                    hosts.Add(host, entry);
                }
            }
        }

        var ruleHosts = new Dictionary<string, (DestinationRuleModel Model, string File, int Line)>(StringComparer.Ordinal);
        foreach (var rule in rules)
        {
            if (!ruleHosts.TryAdd(rule.Model.Host, rule))
            {
                var first = ruleHosts[rule.Model.Host];
                errors.Add(new ConfigError(rule.File, rule.Line,
                    $"DestinationRule {rule.Model.Namespace}/{rule.Model.Name}: spec.host: host {rule.Model.Host} already has DestinationRule {first.Model.Namespace}/{first.Model.Name} ({first.File}:{first.Line})", Kind: "DestinationRule"));
            }
        }
    }

    private static void ParseDocument(
        string file,
        YamlNode root,
        List<ConfigError> errors,
        List<(ServiceEntryModel, string, int)> services,
        List<WorkloadInstance> workloads,
        List<(DestinationRuleModel, string, int)> rules,
        SecurityPolicyLists security,
        List<ParsedVirtualService> virtualServices,
        List<LocalRateLimitPolicyModel> rateLimits,
        List<(SidecarModel, string, int)> sidecars,
        List<ResourceName> resources,
        string clusterDomain)
    {
        var line = Line(root);
        var before = errors.Count; // a resource with any error (apiVersion and metadata included) is not added
        if (root is not YamlMappingNode doc)
        {
            errors.Add(new ConfigError(file, line, "document must be a mapping with apiVersion, kind, metadata and spec"));
            return;
        }

        var kind = ScalarValue(doc, "kind");
        var apiVersion = ScalarValue(doc, "apiVersion");
        var metadata = Child(doc, "metadata") as YamlMappingNode;
        var name = metadata is null ? null : ScalarValue(metadata, "name");
        var ns = (metadata is null ? null : ScalarValue(metadata, "namespace")) ?? "default";
        var ctx = new ResourceContext(file, $"{kind ?? "resource"} {ns}/{name ?? "<unnamed>"}", errors, kind, clusterDomain);

        if (string.IsNullOrEmpty(kind))
        {
            ctx.Error(doc, "kind", "is required");
            return;
        }

        var isSecurityKind = SecurityKinds.Contains(kind, StringComparer.Ordinal);
        var isRateLimitKind = kind == RateLimitKind;
        if (!isSecurityKind && !isRateLimitKind && kind is not ("ServiceEntry" or "WorkloadEntry" or "DestinationRule" or "VirtualService" or SidecarKind))
        {
            // An unknown security kind is a policy we would silently not enforce (a misspelt AuthorizationPolicy drops its
            // DENY): refuse the folder. Other kinds only shape traffic, so they are ignored with a warning.
            if (IsSecurityGroup(apiVersion))
            {
                ctx.Error(Child(doc, "kind")!, "kind", $"{kind} is not a known {SecurityGroup} kind (known: {string.Join(", ", SecurityKinds)}); a security policy the mesh cannot read is never ignored");
            }
            else if (IsMeshPolicyGroup(apiVersion))
            {
                ctx.Error(Child(doc, "kind")!, "kind", $"{kind} is not a known {MeshPolicyGroup} kind (known: {RateLimitKind}); a policy the mesh cannot read is never ignored");
            }
            else if (string.IsNullOrEmpty(apiVersion))
            {
                ctx.Error(doc, "apiVersion", $"is required (kind {kind} is not yet supported, and without an apiVersion it cannot be told apart from a mistyped security policy)");
            }
            else
            {
                errors.Add(new ConfigError(file, line, $"{kind} {ns}/{name}: kind {kind} is not yet supported; the resource is ignored", IsWarning: true, Kind: kind));
            }

            return;
        }

        var apiVersions = isSecurityKind ? SecurityApiVersions : isRateLimitKind ? RateLimitApiVersions : ApiVersions;
        if (apiVersion is null || !apiVersions.Contains(apiVersion, StringComparer.Ordinal))
        {
            ctx.Error(Child(doc, "apiVersion") ?? doc, "apiVersion", $"must be one of {string.Join(", ", apiVersions)}");
        }

        if (string.IsNullOrEmpty(name))
        {
            ctx.Error(metadata ?? (YamlNode)doc, "metadata.name", "is required");
        }
        else if (!IsDnsLabelish(name))
        {
            ctx.Error(Child(metadata!, "name")!, "metadata.name", "must be a lowercase RFC 1123 name");
        }

        if (!IsDnsLabelish(ns))
        {
            ctx.Error(Child(metadata!, "namespace")!, "metadata.namespace", "must be a lowercase RFC 1123 label");
        }

        if (!string.IsNullOrEmpty(name))
        {
            resources.Add(new ResourceName(kind, ns, name, file, line));
        }

        var spec = ctx.Mapping(Child(doc, "spec"), doc, "spec", required: true);
        if (spec is null)
        {
            return;
        }

        switch (kind)
        {
            case "ServiceEntry":
                var service = ParseServiceEntry(ctx, spec, ns, name ?? string.Empty);
                if (errors.Count == before)
                {
                    services.Add((service, file, line));
                }

                break;
            case "PeerAuthentication":
                var peerAuthentication = ParsePeerAuthentication(ctx, spec, ns, name ?? string.Empty, file, line);
                if (errors.Count == before)
                {
                    security.PeerAuthentications.Add(peerAuthentication);
                }

                break;
            case "AuthorizationPolicy":
                var authorizationPolicy = ParseAuthorizationPolicy(ctx, spec, ns, name ?? string.Empty, file, line);
                if (errors.Count == before)
                {
                    security.AuthorizationPolicies.Add(authorizationPolicy);
                }

                break;
            case "RequestAuthentication":
                var requestAuthentication = ParseRequestAuthentication(ctx, spec, ns, name ?? string.Empty, file, line);
                if (errors.Count == before || errors.Skip(before).All(e => e.IsWarning))
                {
                    security.RequestAuthentications.Add(requestAuthentication);
                }

                break;
            case "VirtualService":
                var references = new List<DestinationReference>();
                var virtualService = ParseVirtualService(ctx, spec, ns, name ?? string.Empty, references);
                if (virtualService is not null && errors.Skip(before).All(e => e.IsWarning))
                {
                    virtualServices.Add(new ParsedVirtualService(virtualService, file, line, references));
                }

                break;
            case RateLimitKind:
                var rateLimit = ParseLocalRateLimitPolicy(ctx, spec, ns, name ?? string.Empty, file, line);
                if (errors.Count == before)
                {
                    rateLimits.Add(rateLimit);
                }

                break;
            case SidecarKind:
                var sidecar = ParseSidecar(ctx, spec, ns, name ?? string.Empty);
                if (errors.Skip(before).All(e => e.IsWarning))
                {
                    sidecars.Add((sidecar, file, line));
                }

                break;
            case "WorkloadEntry":
                var workload = ParseWorkload(ctx, spec, "spec", ns, name ?? string.Empty);
                if (errors.Count == before)
                {
                    workloads.Add(workload);
                }

                break;
            default:
                var rule = ParseDestinationRule(ctx, spec, ns, name ?? string.Empty);
                if (rule is not null && errors.Skip(before).All(e => e.IsWarning))
                {
                    rules.Add((rule, file, line));
                }

                break;
        }
    }

    private static ServiceEntryModel ParseServiceEntry(ResourceContext ctx, YamlMappingNode spec, string ns, string name)
    {
        var hosts = new List<string>();
        var hostsNode = ctx.Sequence(Child(spec, "hosts"), spec, "spec.hosts", required: true);
        if (hostsNode is not null)
        {
            if (hostsNode.Children.Count == 0)
            {
                ctx.Error(hostsNode, "spec.hosts", "must list at least one host");
            }

            for (var i = 0; i < hostsNode.Children.Count; i++)
            {
                var host = ctx.String(hostsNode.Children[i], $"spec.hosts[{i}]");
                if (host is null)
                {
                    continue;
                }

                if (!IsHostName(host))
                {
                    ctx.Error(hostsNode.Children[i], $"spec.hosts[{i}]", $"'{host}' must be a DNS name (wildcards are not supported)");
                    continue;
                }

                var fqdn = HostNames.Qualify(host, ns, ctx.ClusterDomain);
                if (hosts.Contains(fqdn))
                {
                    ctx.Error(hostsNode.Children[i], $"spec.hosts[{i}]", $"duplicate host {fqdn}");
                    continue;
                }

                hosts.Add(fqdn);
            }
        }

        var ports = new List<ServicePort>();
        var portsNode = ctx.Sequence(Child(spec, "ports"), spec, "spec.ports", required: true);
        if (portsNode is not null)
        {
            if (portsNode.Children.Count == 0)
            {
                ctx.Error(portsNode, "spec.ports", "must list at least one port");
            }

            for (var i = 0; i < portsNode.Children.Count; i++)
            {
                var path = $"spec.ports[{i}]";
                var portNode = ctx.Mapping(portsNode.Children[i], portsNode, path, required: true);
                if (portNode is null)
                {
                    continue;
                }

                var number = ctx.Port(Child(portNode, "number"), portNode, $"{path}.number", required: true);
                var portName = ctx.String(Child(portNode, "name"), $"{path}.name");
                if (string.IsNullOrEmpty(portName))
                {
                    ctx.Error(Child(portNode, "name") ?? portNode, $"{path}.name", "is required");
                }

                var protocol = (ctx.String(Child(portNode, "protocol"), $"{path}.protocol") ?? "TCP").ToUpperInvariant();
                if (!Protocols.Contains(protocol, StringComparer.Ordinal))
                {
                    ctx.Error(Child(portNode, "protocol")!, $"{path}.protocol", $"must be one of {string.Join(", ", Protocols)}");
                }

                var target = ctx.Port(Child(portNode, "targetPort"), portNode, $"{path}.targetPort", required: false);
                if (number is null || string.IsNullOrEmpty(portName))
                {
                    continue;
                }

                if (ports.Any(p => p.Number == number))
                {
                    ctx.Error(Child(portNode, "number")!, $"{path}.number", $"port {number} is declared twice");
                }
                else if (ports.Any(p => p.Name == portName))
                {
                    ctx.Error(Child(portNode, "name")!, $"{path}.name", $"port name {portName} is declared twice");
                }
                else
                {
                    ports.Add(new ServicePort(number.Value, portName, protocol, target));
                }
            }
        }

        var resolution = (ctx.String(Child(spec, "resolution"), "spec.resolution") ?? "STATIC").ToUpperInvariant();
        if (!Resolutions.Contains(resolution, StringComparer.Ordinal))
        {
            ctx.Error(Child(spec, "resolution")!, "spec.resolution", $"must be one of {string.Join(", ", Resolutions)}");
        }

        ImmutableSortedDictionary<string, string>? selector = null;
        var selectorNode = ctx.Mapping(Child(spec, "workloadSelector"), spec, "spec.workloadSelector", required: false);
        if (selectorNode is not null)
        {
            selector = ctx.Labels(Child(selectorNode, "labels"), selectorNode, "spec.workloadSelector.labels");
            if (selector.IsEmpty)
            {
                ctx.Error(selectorNode, "spec.workloadSelector.labels", "must contain at least one label");
            }
        }

        var endpoints = new List<WorkloadInstance>();
        var endpointsNode = ctx.Sequence(Child(spec, "endpoints"), spec, "spec.endpoints", required: false);
        if (endpointsNode is not null)
        {
            if (selectorNode is not null)
            {
                ctx.Error(endpointsNode, "spec.endpoints", "cannot be combined with spec.workloadSelector");
            }

            for (var i = 0; i < endpointsNode.Children.Count; i++)
            {
                var endpoint = ctx.Mapping(endpointsNode.Children[i], endpointsNode, $"spec.endpoints[{i}]", required: true);
                if (endpoint is not null)
                {
                    endpoints.Add(ParseWorkload(ctx, endpoint, $"spec.endpoints[{i}]", ns, $"{name}-{i}"));
                }
            }
        }

        var subjectAltNames = new List<string>();
        var sansNode = ctx.Sequence(Child(spec, "subjectAltNames"), spec, "spec.subjectAltNames", required: false);
        if (sansNode is not null)
        {
            for (var i = 0; i < sansNode.Children.Count; i++)
            {
                var san = ctx.String(sansNode.Children[i], $"spec.subjectAltNames[{i}]");
                if (san is null)
                {
                    ctx.Error(sansNode.Children[i], $"spec.subjectAltNames[{i}]", "is required");
                }
                else if (!SpiffeId.TryValidate(san, out var reason))
                {
                    ctx.Error(sansNode.Children[i], $"spec.subjectAltNames[{i}]", $"{reason}; use a SPIFFE ID like spiffe://cluster.local/ns/{ns}/sa/{name}");
                }
                else
                {
                    subjectAltNames.Add(san);
                }
            }
        }

        return new ServiceEntryModel(ns, name, [.. hosts], [.. ports], selector, [.. endpoints], resolution, [.. subjectAltNames]);
    }

    private static WorkloadInstance ParseWorkload(ResourceContext ctx, YamlMappingNode spec, string path, string ns, string name)
    {
        var address = ctx.String(Child(spec, "address"), $"{path}.address");
        if (string.IsNullOrEmpty(address))
        {
            ctx.Error(Child(spec, "address") ?? spec, $"{path}.address", "is required");
        }
        else if (!IsAddress(address))
        {
            ctx.Error(Child(spec, "address")!, $"{path}.address", $"'{address}' must be an IP address or a DNS name");
        }

        var ports = ImmutableSortedDictionary.CreateBuilder<string, uint>(StringComparer.Ordinal);
        var portsNode = ctx.Mapping(Child(spec, "ports"), spec, $"{path}.ports", required: false);
        if (portsNode is not null)
        {
            foreach (var (key, value) in portsNode.Children)
            {
                if (key is not YamlScalarNode { Value: { Length: > 0 } portName })
                {
                    // e.g. an unrendered template, ports: {{ .Values.ports }}, whose key is a mapping
                    ctx.Error(key, $"{path}.ports", "port names must be non-empty strings, like ports: {http: 8080}");
                    continue;
                }

                var port = ctx.Port(value, portsNode, $"{path}.ports.{portName}", required: true);
                if (port is not null)
                {
                    ports[portName] = port.Value;
                }
            }
        }

        var labels = ctx.Labels(Child(spec, "labels"), spec, $"{path}.labels");
        var serviceAccount = ctx.String(Child(spec, "serviceAccount"), $"{path}.serviceAccount") ?? string.Empty;
        var locality = ctx.String(Child(spec, "locality"), $"{path}.locality") ?? string.Empty;
        if (!Mesh.Xds.Wire.LocalityNames.TryValidate(locality, out var localityReason))
        {
            ctx.Error(Child(spec, "locality")!, $"{path}.locality", localityReason);
        }

        uint weight = 0;
        if (Child(spec, "weight") is { } weightNode)
        {
            if (!uint.TryParse(ctx.String(weightNode, $"{path}.weight"), NumberStyles.None, CultureInfo.InvariantCulture, out weight))
            {
                ctx.Error(weightNode, $"{path}.weight", "must be a non-negative integer");
            }
        }

        return new WorkloadInstance(ns, name, address ?? string.Empty, ports.ToImmutable(), labels, serviceAccount, locality, weight, EndpointSources.Static, LeaseId: null);
    }

    private static DestinationRuleModel? ParseDestinationRule(ResourceContext ctx, YamlMappingNode spec, string ns, string name)
    {
        // A traffic policy field the mesh would not apply (consistentHash, tunnel, …) is refused, never silently dropped.
        RejectUnsupportedFields(ctx, spec, "spec", ["host", "trafficPolicy", "subsets", "exportTo"]);
        ParseExportTo(ctx, spec, ns, namespaceScopeApplies: false);
        var host = ctx.String(Child(spec, "host"), "spec.host");
        if (string.IsNullOrEmpty(host))
        {
            ctx.Error(Child(spec, "host") ?? spec, "spec.host", "is required");
        }
        else if (!IsHostName(host))
        {
            ctx.Error(Child(spec, "host")!, "spec.host", $"'{host}' must be a DNS name (wildcards are not supported)");
        }

        var policy = ctx.Mapping(Child(spec, "trafficPolicy"), spec, "spec.trafficPolicy", required: false);
        if (policy is not null)
        {
            RejectUnsupportedFields(ctx, policy, "spec.trafficPolicy", ["loadBalancer", "tls", "connectionPool", "outlierDetection", "retryBudget", "portLevelSettings"]);
        }

        ConsistentHashModel? consistentHash = null;
        var simpleLb = policy is null ? null : ParseLoadBalancer(ctx, policy, TopLevelLoadBalancerPath, out consistentHash);
        var lb = simpleLb ?? LoadBalancerKind.RoundRobin;
        var tlsMode = policy is null ? null : ParseTlsMode(ctx, policy);
        var traffic = policy is null ? TrafficPolicyModel.None : ParseTrafficPolicy(ctx, policy, "spec.trafficPolicy", simpleLb);
        var localityLb = policy is not null && Child(policy, "loadBalancer") is YamlMappingNode lbNode
            ? ParseLocalityLbSetting(ctx, lbNode, $"{TopLevelLoadBalancerPath}.localityLbSetting", Child(policy, "outlierDetection") is not null)
            : null;
        var subsets = ParseSubsets(ctx, spec);
        return string.IsNullOrEmpty(host) ? null : new DestinationRuleModel(ns, name, HostNames.Qualify(host, ns, ctx.ClusterDomain), lb, tlsMode)
        {
            Subsets = subsets,
            Traffic = traffic,
            ConsistentHash = consistentHash,
            LocalityLb = localityLb,
        };
    }

    /// <summary>A <c>portLevelSettings[].loadBalancer</c>: as <see cref="ParseLoadBalancer"/>, but a consistent hash per port is not translated.</summary>
    private static LoadBalancerKind? ParseSimpleLoadBalancer(ResourceContext ctx, YamlMappingNode policy, string path)
    {
        var lb = ParseLoadBalancer(ctx, policy, path, out var consistentHash);
        if (consistentHash is not null && Child(policy, "loadBalancer") is YamlMappingNode lbNode && Child(lbNode, "consistentHash") is { } hashNode)
        {
            // Route hash_policy is per route, not per port; refused rather than silently dropped.
            ctx.Error(hashNode, $"{path}.consistentHash", "is not supported per port yet; set it at the top level or on a subset");
            return null;
        }

        return lb;
    }

    /// <summary>
    /// <c>spec.trafficPolicy.tls</c>: only <c>mode</c> ISTIO_MUTUAL or DISABLE. SIMPLE and MUTUAL need client
    /// certificates or CAs from files, which proxyless clients do not get from xDS.
    /// </summary>
    private static UpstreamTlsMode? ParseTlsMode(ResourceContext ctx, YamlMappingNode policy)
    {
        var tls = ctx.Mapping(Child(policy, "tls"), policy, "spec.trafficPolicy.tls", required: false);
        if (tls is null)
        {
            return null;
        }

        foreach (var key in tls.Children.Keys)
        {
            if (key is YamlScalarNode { Value: { } field } && field != "mode")
            {
                ctx.Warn(key, $"spec.trafficPolicy.tls.{field}", "is not supported and is ignored; only mode is read");
            }
        }

        var modeNode = Child(tls, "mode");
        var mode = ctx.String(modeNode, "spec.trafficPolicy.tls.mode");
        switch (mode?.ToUpperInvariant())
        {
            case "ISTIO_MUTUAL":
                return UpstreamTlsMode.IstioMutual;
            case "DISABLE":
                return UpstreamTlsMode.Disable;
            case null:
                if (modeNode is null or YamlScalarNode)
                {
                    ctx.Error(modeNode ?? tls, "spec.trafficPolicy.tls.mode", "is required; use ISTIO_MUTUAL or DISABLE");
                }

                return null;
            default:
                ctx.Error(modeNode ?? tls, "spec.trafficPolicy.tls.mode", $"'{mode}' is not supported; use ISTIO_MUTUAL (mesh mTLS) or DISABLE (plaintext)");
                return null;
        }
    }

    private static YamlNode? Child(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : null;

    private static string? ScalarValue(YamlMappingNode node, string key) => (Child(node, key) as YamlScalarNode)?.Value;

    private static int Line(YamlNode node) => (int)node.Start.Line;

    private static bool IsDnsLabelish(string value) =>
        value.Length is > 0 and <= 253 && value.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '.')
        && char.IsAsciiLetterOrDigit(value[0]) && char.IsAsciiLetterOrDigit(value[^1]);

    private static bool IsHostName(string value) =>
        value.Length <= 253 && value.Split('.').All(label =>
            label.Length is > 0 and <= 63 && label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-')
            && label[0] != '-' && label[^1] != '-');

    internal static bool IsAddress(string value) => IPAddress.TryParse(value, out _) || IsHostName(value);

    private sealed class ResourceContext(string file, string resource, List<ConfigError> errors, string? kind, string clusterDomain)
    {
        /// <summary>Gets the cluster domain short hosts are qualified in.</summary>
        public string ClusterDomain => clusterDomain;

        /// <summary>Gets the number of errors (not warnings) so far, to tell whether a part parsed cleanly.</summary>
        public int ErrorCount => errors.Count(e => !e.IsWarning);

        public void Error(YamlNode node, string path, string message) =>
            errors.Add(new ConfigError(file, Line(node), $"{resource}: {path}: {message}", Kind: kind));

        public void Warn(YamlNode node, string path, string message) =>
            errors.Add(new ConfigError(file, Line(node), $"{resource}: {path}: {message}", IsWarning: true, Kind: kind));

        public YamlMappingNode? Mapping(YamlNode? node, YamlNode parent, string path, bool required) =>
            Node<YamlMappingNode>(node, parent, path, required, "must be a mapping");

        public YamlSequenceNode? Sequence(YamlNode? node, YamlNode parent, string path, bool required) =>
            Node<YamlSequenceNode>(node, parent, path, required, "must be a list");

        private T? Node<T>(YamlNode? node, YamlNode parent, string path, bool required, string wrongKind)
            where T : YamlNode
        {
            switch (node)
            {
                case T expected:
                    return expected;
                case null or YamlScalarNode { Value: null or "" or "~" } when !required:
                    return null;
                case null or YamlScalarNode { Value: null or "" or "~" }:
                    Error(node ?? parent, path, "is required");
                    return null;
                default:
                    Error(node, path, wrongKind);
                    return null;
            }
        }

        public string? String(YamlNode? node, string path)
        {
            switch (node)
            {
                case null:
                    return null;
                case YamlScalarNode scalar:
                    return scalar.Value is null or "~" ? null : scalar.Value;
                default:
                    Error(node, path, "must be a string");
                    return null;
            }
        }

        /// <summary>A YAML boolean, <c>true</c> or <c>false</c> as protobuf JSON reads it; null (with an error) for anything else.</summary>
        public bool? Bool(YamlNode node, string path)
        {
            var text = String(node, path);
            if (text is "true" or "false")
            {
                return text == "true";
            }

            Error(node, path, $"must be true or false (got '{text}')");
            return null;
        }

        public uint? Port(YamlNode? node, YamlNode parent, string path, bool required)
        {
            if (node is null)
            {
                if (required)
                {
                    Error(parent, path, "is required");
                }

                return null;
            }

            var text = String(node, path);
            if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                Error(node, path, $"must be 1-65535 (got '{text}')");
                return null;
            }

            return port;
        }

        public ImmutableSortedDictionary<string, string> Labels(YamlNode? node, YamlNode parent, string path)
        {
            var labels = ImmutableSortedDictionary.CreateBuilder<string, string>(StringComparer.Ordinal);
            var mapping = Mapping(node, parent, path, required: false);
            if (mapping is not null)
            {
                foreach (var (key, value) in mapping.Children)
                {
                    var labelKey = (key as YamlScalarNode)?.Value;
                    var labelValue = String(value, $"{path}.{labelKey}");
                    if (string.IsNullOrEmpty(labelKey))
                    {
                        Error(key, path, "label keys must be non-empty strings");
                    }
                    else
                    {
                        labels[labelKey] = labelValue ?? string.Empty;
                    }
                }
            }

            return labels.ToImmutable();
        }
    }

    /// <summary>What one file held.</summary>
    internal sealed class ParsedFile
    {
        public List<ConfigError> Errors { get; } = [];

        public List<(ServiceEntryModel, string, int)> Services { get; } = [];

        public List<WorkloadInstance> Workloads { get; } = [];

        public List<(DestinationRuleModel, string, int)> Rules { get; } = [];

        public SecurityPolicyLists Security { get; } = new();

        public List<ParsedVirtualService> VirtualServices { get; } = [];

        public List<LocalRateLimitPolicyModel> RateLimits { get; } = [];

        public List<(SidecarModel, string, int)> Sidecars { get; } = [];

        /// <summary>Every resource's kind, namespace and name where it is defined, valid or not.</summary>
        public List<ResourceName> Resources { get; } = [];
    }

    /// <summary>Where a resource of the folder is defined (the line of its document).</summary>
    internal sealed record ResourceName(string Kind, string Namespace, string Name, string File, int Line);
}

/// <summary>
/// The files of a config folder as last parsed, by name with their text: a reload parses only files whose text changed.
/// Held by the one folder watcher; a load replaces its content as a whole (files gone from the folder are dropped).
/// </summary>
internal sealed class YamlParseCache
{
    private readonly Lock _gate = new();
    private Dictionary<string, (string Text, YamlConfigLoader.ParsedFile Parse)> _files = new(StringComparer.Ordinal);

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _files.Count;
            }
        }
    }

    internal YamlConfigLoader.ParsedFile? Find(string file, string text)
    {
        lock (_gate)
        {
            return _files.TryGetValue(file, out var entry) && string.Equals(entry.Text, text, StringComparison.Ordinal) ? entry.Parse : null;
        }
    }

    internal void Replace(Dictionary<string, (string Text, YamlConfigLoader.ParsedFile Parse)> files)
    {
        lock (_gate)
        {
            _files = files;
        }
    }
}
