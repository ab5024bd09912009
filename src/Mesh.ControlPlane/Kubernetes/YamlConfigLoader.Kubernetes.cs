using System.Collections.Immutable;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// One Istio custom object as served by the API server: its location (<c>VirtualService shop/reviews</c>), its JSON and its
/// <c>metadata.creationTimestamp</c> (the oldest object wins a conflict, as in Istio; unset sorts last).
/// </summary>
internal sealed record KubernetesObjectText(string Location, string Kind, string Json, DateTimeOffset? Created = null);

/// <summary>The Istio custom objects that passed validation, and what was reported about the rest.</summary>
internal sealed record KubernetesConfigResult(YamlConfig Config, ImmutableArray<ConfigError> Errors, ImmutableArray<string> Ignored)
{
    public static KubernetesConfigResult Empty { get; } = new(YamlConfig.Empty, [], []);
}

internal static partial class YamlConfigLoader
{
    private const string ContextFile = "(config folder or Kubernetes Service)";

    /// <summary>
    /// Validates Istio custom objects read from the API with the folder's own parser and cross-resource checks, each object
    /// as its own "file" named by its location so every error names <c>&lt;kind&gt; &lt;ns&gt;/&lt;name&gt;</c>. Unlike the
    /// folder, an invalid object does not reject the rest: an object with an error is dropped and the cross-resource checks
    /// run again over what remains (dropping a ServiceEntry can break a VirtualService that routes to it), until no object
    /// left has an error. <paramref name="folder"/> and <paramref name="services"/> are the other sources, validated on
    /// their own: they come first in every check, so a conflict (a host declared twice, a second DestinationRule for a
    /// host, a second VirtualService for a host) is blamed on, and drops, the custom object.
    /// </summary>
    /// <remarks>
    /// Objects are checked oldest first (<see cref="KubernetesObjectText.Created"/>, then location), so in a conflict the
    /// object that was there first keeps its host, as in Istio: a newer object, from any namespace, cannot take it over. A
    /// DestinationRule or VirtualService whose host belongs to a service of another namespace must live in that namespace or
    /// in <paramref name="rootNamespace"/>: Istio applies one from a third namespace only to that namespace's own clients,
    /// and this control plane serves one per host to every client, so anything else would let any namespace reroute, or
    /// turn to plaintext, another namespace's service for the whole mesh.
    /// </remarks>
    public static KubernetesConfigResult LoadKubernetesObjects(
        IReadOnlyList<KubernetesObjectText> objects,
        YamlConfig folder,
        ImmutableArray<ServiceEntryModel> services,
        YamlParseCache? cache = null,
        string rootNamespace = SecurityScopes.DefaultRootNamespace,
        string clusterDomain = HostNames.DefaultClusterDomain)
    {
        ArgumentNullException.ThrowIfNull(objects);
        ArgumentNullException.ThrowIfNull(folder);
        var parsed = new Dictionary<string, (string Text, ParsedFile Parse)>(StringComparer.Ordinal);
        foreach (var item in objects.OrderBy(o => o.Created ?? DateTimeOffset.MaxValue).ThenBy(o => o.Location, StringComparer.Ordinal))
        {
            // A location names one object (kind, namespace, name): two informers never serve the same one.
            parsed[item.Location] = (item.Json, cache?.Find(item.Location, item.Json) ?? ParseFile(item.Location, item.Json, clusterDomain));
        }

        cache?.Replace(parsed);

        var reported = new List<ConfigError>();
        var dropped = new SortedSet<string>(StringComparer.Ordinal);

        // An object whose own parse failed is out before any cross-resource check.
        foreach (var (location, (_, parse)) in parsed)
        {
            reported.AddRange(parse.Errors);
            if (parse.Errors.Any(e => !e.IsWarning))
            {
                dropped.Add(location);
            }
        }

        while (true)
        {
            var kept = parsed.Where(p => !dropped.Contains(p.Key)).Select(p => p.Value.Parse).ToList();
            var (config, errors) = CheckKubernetesObjects(kept, folder, services, rootNamespace);
            var blamed = errors.Where(e => !e.IsWarning && parsed.ContainsKey(e.File)).Select(e => e.File).ToHashSet(StringComparer.Ordinal);
            if (blamed.Count == 0)
            {
                reported.AddRange(errors.Where(e => parsed.ContainsKey(e.File)));
                return new KubernetesConfigResult(config with { ClusterDomain = clusterDomain }, [.. reported], [.. dropped]);
            }

            // Report the errors of the objects dropped now; warnings of kept ones are reported by the final round.
            reported.AddRange(errors.Where(e => !e.IsWarning && blamed.Contains(e.File)));
            dropped.UnionWith(blamed);
        }
    }

    private static (YamlConfig Config, List<ConfigError> Errors) CheckKubernetesObjects(List<ParsedFile> objects, YamlConfig folder, ImmutableArray<ServiceEntryModel> kubernetesServices, string rootNamespace)
    {
        var errors = new List<ConfigError>();
        var services = new List<(ServiceEntryModel Model, string File, int Line)>();
        var rules = new List<(DestinationRuleModel Model, string File, int Line)>();
        var virtualServices = new List<ParsedVirtualService>();
        var sidecars = new List<(SidecarModel Model, string File, int Line)>();
        var security = new SecurityPolicyLists();
        var workloads = new List<WorkloadInstance>();

        // The other sources first: they win every conflict.
        services.AddRange(folder.ServiceEntries.Select(s => (s, ContextFile, 0)));
        services.AddRange(kubernetesServices.Select(s => (s, ContextFile, 0)));
        rules.AddRange(folder.DestinationRules.Select(r => (r, ContextFile, 0)));
        virtualServices.AddRange(folder.VirtualServices.Select(v => new ParsedVirtualService(v, ContextFile, 0,
            [.. v.Hosts.Select(h => new DestinationReference(0, "spec.hosts", h, null, null, IsVirtualServiceHost: true))])));
        sidecars.AddRange(folder.Sidecars.Select(s => (s, ContextFile, 0)));
        var contextServices = services.Count;
        var contextRules = rules.Count;
        var contextVirtualServices = virtualServices.Count;
        var contextSidecars = sidecars.Count;

        foreach (var parse in objects)
        {
            services.AddRange(parse.Services);
            rules.AddRange(parse.Rules);
            virtualServices.AddRange(parse.VirtualServices);
            sidecars.AddRange(parse.Sidecars);
            workloads.AddRange(parse.Workloads);
            security.PeerAuthentications.AddRange(parse.Security.PeerAuthentications);
            security.AuthorizationPolicies.AddRange(parse.Security.AuthorizationPolicies);
            security.RequestAuthentications.AddRange(parse.Security.RequestAuthentications);
        }

        // An object configuring another namespace's host is out before the duplicate checks: it must not make the owner's
        // own DestinationRule or VirtualService a duplicate and take it down with it.
        var foreign = CheckHostNamespaces(services, rules.Skip(contextRules), virtualServices.Skip(contextVirtualServices), rootNamespace, errors);
        rules.RemoveAll(r => foreign.Contains(r.File));
        virtualServices.RemoveAll(v => foreign.Contains(v.File));
        CheckDuplicates(services, rules, errors);
        CheckVirtualServices(virtualServices, services, rules, errors);
        CheckSidecars(sidecars, errors);

        // PeerAuthentication duplicates are warnings decided by name order: checked with the folder's, reported for ours.
        var allPeers = new SecurityPolicyLists();
        allPeers.PeerAuthentications.AddRange(folder.PeerAuthentications);
        allPeers.PeerAuthentications.AddRange(security.PeerAuthentications);
        CheckSecurityDuplicates(allPeers, errors);

        var config = new YamlConfig([.. services.Skip(contextServices).Select(s => s.Model)], [.. workloads], [.. rules.Skip(contextRules).Select(r => r.Model)])
        {
            PeerAuthentications = [.. security.PeerAuthentications],
            AuthorizationPolicies = [.. security.AuthorizationPolicies],
            RequestAuthentications = [.. security.RequestAuthentications],
            VirtualServices = [.. virtualServices.Skip(contextVirtualServices).Select(v => v.Model)],
            Sidecars = [.. sidecars.Skip(contextSidecars).Select(s => s.Model)],
        };
        return (config, errors);
    }

    /// <summary>A DestinationRule or VirtualService object may configure a host only from the namespace of a service declaring it, or the root namespace.</summary>
    private static HashSet<string> CheckHostNamespaces(
        List<(ServiceEntryModel Model, string File, int Line)> services,
        IEnumerable<(DestinationRuleModel Model, string File, int Line)> rules,
        IEnumerable<ParsedVirtualService> virtualServices,
        string rootNamespace,
        List<ConfigError> errors)
    {
        var owners = new Dictionary<string, SortedSet<string>>(StringComparer.Ordinal);
        foreach (var (model, _, _) in services)
        {
            foreach (var host in model.Hosts)
            {
                if (!owners.TryGetValue(host, out var namespaces))
                {
                    owners[host] = namespaces = new SortedSet<string>(StringComparer.Ordinal);
                }

                namespaces.Add(model.Namespace);
            }
        }

        var foreign = new HashSet<string>(StringComparer.Ordinal);
        string? Foreign(string ns, string host) =>
            ns != rootNamespace && owners.TryGetValue(host, out var namespaces) && !namespaces.Contains(ns) ? string.Join(", ", namespaces) : null;

        foreach (var (rule, file, line) in rules)
        {
            if (Foreign(rule.Namespace, rule.Host) is { } owner)
            {
                errors.Add(new ConfigError(file, line,
                    $"DestinationRule {rule.Namespace}/{rule.Name}: spec.host: {rule.Host} belongs to namespace {owner}; a DestinationRule from namespace {rule.Namespace} would apply to every client of the mesh (Istio applies it only to clients in {rule.Namespace}, which this control plane does not scope): put it in {owner} or in the root namespace {rootNamespace}",
                    Kind: "DestinationRule"));
                foreign.Add(file);
            }
        }

        foreach (var parsed in virtualServices)
        {
            var model = parsed.Model;
            foreach (var host in model.Hosts)
            {
                if (Foreign(model.Namespace, host) is { } owner)
                {
                    errors.Add(new ConfigError(parsed.File, parsed.Line,
                        $"VirtualService {model.Namespace}/{model.Name}: spec.hosts: {host} belongs to namespace {owner}; a VirtualService from namespace {model.Namespace} would route every client of the mesh (Istio lets a namespace route only its own clients with it, which this control plane does not scope): put it in {owner} or in the root namespace {rootNamespace}",
                        Kind: "VirtualService"));
                    foreign.Add(parsed.File);
                }
            }
        }

        return foreign;
    }
}
