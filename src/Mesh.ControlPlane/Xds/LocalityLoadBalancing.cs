using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// What a locality-aware load assignment depends on about the client: its node locality and its labels (node metadata
/// <c>LABELS</c> plus the topology labels of its locality, as istiod augments a proxy's labels).
/// </summary>
internal sealed class ClientTopology
{
    public static readonly ClientTopology None = new(string.Empty, string.Empty, string.Empty, ImmutableDictionary<string, string>.Empty);

    public ClientTopology(string region, string zone, string subZone, IReadOnlyDictionary<string, string> labels)
    {
        Region = region;
        Zone = zone;
        SubZone = subZone;
        Labels = LocalityLoadBalancing.WithTopologyLabels(labels, region, zone, subZone);
        Key = $"{region}/{zone}/{subZone}";
    }

    public string Region { get; }

    public string Zone { get; }

    public string SubZone { get; }

    public IReadOnlyDictionary<string, string> Labels { get; }

    /// <summary>Gets <c>region/zone/subzone</c>, the part of the cache key every locality-aware assignment shares.</summary>
    public string Key { get; }

    /// <summary>The topology of an xDS node: <c>node.locality</c> and the string values of metadata <c>LABELS</c>.</summary>
    public static ClientTopology From(Node? node)
    {
        if (node is null)
        {
            return None;
        }

        var labels = AdsNode.LabelsOf(node);
        // A locality that is not one (a '/' inside a part, a zone without a region, '*', control characters) is taken as
        // none: the parts form the cache key every client of that locality shares, so no spelling may alias another's.
        var locality = node.Locality;
        if (locality is not null && !IsValid(locality))
        {
            locality = null;
        }

        return locality is null && labels.Count == 0 ? None : new ClientTopology(locality?.Region ?? string.Empty, locality?.Zone ?? string.Empty, locality?.SubZone ?? string.Empty, labels);
    }

    private static bool IsValid(Locality locality)
    {
        if (locality.Region.Contains('/', StringComparison.Ordinal) || locality.Zone.Contains('/', StringComparison.Ordinal) || locality.SubZone.Contains('/', StringComparison.Ordinal))
        {
            return false;
        }

        var text = locality.SubZone.Length > 0 ? $"{locality.Region}/{locality.Zone}/{locality.SubZone}"
            : locality.Zone.Length > 0 ? $"{locality.Region}/{locality.Zone}"
            : locality.Region;
        return Mesh.Xds.Wire.LocalityNames.TryValidate(text, out _);
    }
}

/// <summary>
/// A cluster whose load assignment depends on the client's locality (istiod's <c>ApplyLocalityLoadBalancer</c>): either
/// <c>distribute</c> weights, or failover priorities (which need outlier detection, else nothing ever fails over). Built
/// once per snapshot; <see cref="XdsSnapshot.EndpointsFor"/> caches one assignment per distinct <see cref="KeyFor"/>.
/// </summary>
internal sealed class LocalityLbPlan
{
    public const string NetworkLabel = "topology.istio.io/network";
    public const string RegionLabel = "topology.kubernetes.io/region";
    public const string ZoneLabel = "topology.kubernetes.io/zone";
    public const string SubZoneLabel = "topology.istio.io/subzone";

    private readonly ImmutableArray<ResolvedEndpoint> _endpoints;
    private readonly string[] _priorityLabels;
    private readonly string?[] _priorityOverrides;

    private LocalityLbPlan(string clusterName, LocalityLbSettingModel setting, ImmutableArray<ResolvedEndpoint> endpoints)
    {
        ClusterName = clusterName;
        Setting = setting;
        _endpoints = endpoints;

        // Istio reads failoverPriority only without distribute; "label=value" compares endpoints with that value instead of the client's.
        var priority = setting.Distribute.IsEmpty ? setting.FailoverPriority : [];
        _priorityLabels = [.. priority.Select(p => p.Split('=')[0])];
        _priorityOverrides = [.. priority.Select(p => p.Split('=') is [_, var v] ? v : null)];
    }

    public string ClusterName { get; }

    public LocalityLbSettingModel Setting { get; }

    /// <summary>
    /// The plan for one cluster, or null when its assignment is the same for every client: locality LB is disabled (the
    /// DestinationRule's <c>enabled: false</c>), or there is no <c>distribute</c> and either no outlier detection or nothing
    /// to prioritise (one locality and no <c>failoverPriority</c>).
    /// </summary>
    public static LocalityLbPlan? For(string clusterName, LocalityLbSettingModel? setting, bool hasOutlierDetection, ImmutableArray<ResolvedEndpoint> endpoints)
    {
        if (setting is null || setting.Enabled == false)
        {
            return null;
        }

        if (setting.Distribute.IsEmpty)
        {
            var localities = endpoints.Select(e => e.Workload.Locality).Distinct(StringComparer.Ordinal).Count();
            if (!hasOutlierDetection || (localities <= 1 && setting.FailoverPriority.IsEmpty))
            {
                return null;
            }
        }

        return new LocalityLbPlan(clusterName, setting, endpoints);
    }

    /// <summary>What the assignment for <paramref name="client"/> depends on: its locality, and the label values failoverPriority compares.</summary>
    public string KeyFor(ClientTopology client)
    {
        ArgumentNullException.ThrowIfNull(client);
        if (_priorityLabels.Length == 0)
        {
            return client.Key;
        }

        // Label values are the client's claims: each is length-prefixed so that no value can spell another client's key,
        // and whether the client has labels at all is part of it (Build compares labels only when there are some).
        var builder = new System.Text.StringBuilder(client.Key).Append(client.Labels.Count > 0 ? "|L" : "|N");
        for (var i = 0; i < _priorityLabels.Length; i++)
        {
            var value = _priorityOverrides[i] ?? client.Labels.GetValueOrDefault(_priorityLabels[i]);
            builder.Append('|').Append(value is null ? "-" : value.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(':').Append(value);
        }

        return builder.ToString();
    }

    /// <summary>The load assignment as <paramref name="client"/> sees it, as istiod computes it.</summary>
    public ClusterLoadAssignment Build(ClientTopology client)
    {
        ArgumentNullException.ThrowIfNull(client);
        var groups = _endpoints
            .GroupBy(e => e.Workload.Locality, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new Group(XdsTranslator.ParseLocality(g.Key), [.. g], 0))
            .ToList();

        if (!Setting.Distribute.IsEmpty)
        {
            // Distribute replaces failover entirely, with or without outlier detection.
            groups = ApplyDistribute(groups, client);
        }
        else if (_priorityLabels.Length > 0)
        {
            if (client.Labels.Count > 0)
            {
                groups = ApplyFailoverPriority(groups, client);
            }

            if (!Setting.Failover.IsEmpty)
            {
                ApplyLocalityFailover(groups, client);
            }
        }
        else
        {
            ApplyLocalityFailover(groups, client);
        }

        var assignment = new ClusterLoadAssignment { ClusterName = ClusterName };
        foreach (var group in groups)
        {
            var locality = XdsTranslator.BuildLocalityEndpoints(group.Locality, group.Endpoints);
            locality.Priority = (uint)group.Priority;
            if (group.Weight is { } weight)
            {
                locality.LoadBalancingWeight = weight;
            }

            assignment.Endpoints.Add(locality);
        }

        return assignment;
    }

    /// <summary>Istio's <c>LocalityMatch</c>: a rule locality (region[/zone[/subzone]], '*' for any) matches <paramref name="locality"/>.</summary>
    internal static bool LocalityMatch(string region, string zone, string subZone, string rule)
    {
        var parts = rule.Split('/', 3);
        var ruleZone = parts.Length > 1 ? parts[1] : string.Empty;
        var ruleSubZone = parts.Length > 2 ? parts[2] : string.Empty;
        return (parts[0] == "*" || parts[0] == region)
            && (ruleZone is "*" or "" || ruleZone == zone)
            && (ruleSubZone is "*" or "" || ruleSubZone == subZone);
    }

    /// <summary>Istio's <c>LbPriority</c>: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere.</summary>
    internal static int LbPriority(ClientTopology client, Locality endpoint) =>
        client.Region != endpoint.Region ? 3 : client.Zone != endpoint.Zone ? 2 : client.SubZone != endpoint.SubZone ? 1 : 0;

    /// <summary>
    /// The first <c>distribute</c> entry whose <c>from</c> matches the client sets each matched locality's weight (a
    /// pattern's weight split over the localities it matches in proportion to their own weights, rounded up); localities no
    /// <c>to</c> matches take no traffic from this client.
    /// </summary>
    private List<Group> ApplyDistribute(List<Group> groups, ClientTopology client)
    {
        var rule = Setting.Distribute.FirstOrDefault(d => LocalityMatch(client.Region, client.Zone, client.SubZone, d.From));
        if (rule is null)
        {
            return groups;
        }

        var matched = new HashSet<int>();
        foreach (var (pattern, weight) in rule.To)
        {
            var targets = Enumerable.Range(0, groups.Count)
                .Where(i => !matched.Contains(i) && LocalityMatch(groups[i].Locality.Region, groups[i].Locality.Zone, groups[i].Locality.SubZone, pattern))
                .ToList();
            var total = targets.Sum(i => (double)groups[i].OwnWeight);
            foreach (var i in targets)
            {
                matched.Add(i);
                groups[i] = groups[i] with { Weight = (uint)Math.Ceiling(groups[i].OwnWeight * (double)weight / total) };
            }
        }

        // Istio empties the unmatched localities; leaving them out is the same to every client (no endpoints, no traffic).
        return [.. Enumerable.Range(0, groups.Count).Where(matched.Contains).Select(i => groups[i])];
    }

    /// <summary>
    /// Istio's <c>applyFailoverPriorityPerLocality</c>: an endpoint's tier is 0 when every label matches the client's value
    /// (or the written override), else n − j for the first label j that differs; a differing network (when it is the first
    /// label) only pushes it behind all matching tiers. Each locality splits into one group per tier.
    /// </summary>
    private List<Group> ApplyFailoverPriority(List<Group> groups, ClientTopology client)
    {
        var n = _priorityLabels.Length;
        var includesNetwork = _priorityLabels[0] == NetworkLabel;
        var result = new List<Group>();
        foreach (var group in groups)
        {
            foreach (var tier in group.Endpoints.GroupBy(e => Tier(e)).OrderBy(t => t.Key))
            {
                result.Add(group with { Endpoints = [.. tier], Priority = tier.Key });
            }
        }

        Compact(result);
        return result;

        int Tier(ResolvedEndpoint endpoint)
        {
            var labels = LocalityLoadBalancing.WithTopologyLabels(endpoint.Workload.Labels, endpoint.Workload.Locality);
            int priority = 0, adjust = 0;
            for (var j = 0; j < n; j++)
            {
                var wanted = _priorityOverrides[j] ?? client.Labels.GetValueOrDefault(_priorityLabels[j]) ?? string.Empty;
                if (wanted != (labels.GetValueOrDefault(_priorityLabels[j]) ?? string.Empty))
                {
                    if (j == 0 && includesNetwork)
                    {
                        adjust = n;
                        continue;
                    }

                    priority = n - j;
                    break;
                }
            }

            return priority + adjust;
        }
    }

    /// <summary>
    /// Istio's <c>applyLocalityFailover</c>: priority by <see cref="LbPriority"/>; another region is 3 when it is the
    /// client region's <c>failover.to</c> (or the region has no failover entry), else 4; composed with any earlier
    /// (failoverPriority) tier as tier × 5 + priority, then renumbered 0..N without gaps.
    /// </summary>
    private void ApplyLocalityFailover(List<Group> groups, ClientTopology client)
    {
        var failover = Setting.Failover.FirstOrDefault(f => f.From == client.Region);
        for (var i = 0; i < groups.Count; i++)
        {
            var priority = LbPriority(client, groups[i].Locality);
            if (priority == 3 && failover is not null && groups[i].Locality.Region != failover.To)
            {
                priority = 4;
            }

            groups[i] = groups[i] with { Priority = (groups[i].Priority * 5) + priority };
        }

        Compact(groups);
    }

    private static void Compact(List<Group> groups)
    {
        var order = groups.Select(g => g.Priority).Distinct().Order().Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i);
        for (var i = 0; i < groups.Count; i++)
        {
            groups[i] = groups[i] with { Priority = order[groups[i].Priority] };
        }
    }

    /// <summary>One LocalityLbEndpoints under construction; <see cref="Weight"/> null keeps the sum of its endpoints' weights.</summary>
    private sealed record Group(Locality Locality, ImmutableArray<ResolvedEndpoint> Endpoints, int Priority, uint? Weight = null)
    {
        public uint OwnWeight => XdsTranslator.LocalityWeight(Endpoints);
    }
}

/// <summary>Shared topology-label rules for clients and endpoints.</summary>
internal static class LocalityLoadBalancing
{
    /// <summary>Labels plus the topology labels of a <c>region/zone/subzone</c> locality, as istiod augments workload labels.</summary>
    public static IReadOnlyDictionary<string, string> WithTopologyLabels(IReadOnlyDictionary<string, string> labels, string locality)
    {
        var parts = (locality ?? string.Empty).Split('/');
        return WithTopologyLabels(labels, parts[0], parts.Length > 1 ? parts[1] : string.Empty, parts.Length > 2 ? parts[2] : string.Empty);
    }

    public static IReadOnlyDictionary<string, string> WithTopologyLabels(IReadOnlyDictionary<string, string> labels, string region, string zone, string subZone)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (region.Length == 0 && zone.Length == 0 && subZone.Length == 0)
        {
            return labels;
        }

        var result = new Dictionary<string, string>(labels.Count + 3, StringComparer.Ordinal);
        foreach (var (key, value) in labels)
        {
            result[key] = value;
        }

        // Set only where the locality says something, and never over a label the workload set itself.
        Add(LocalityLbPlan.RegionLabel, region);
        Add(LocalityLbPlan.ZoneLabel, zone);
        Add(LocalityLbPlan.SubZoneLabel, subZone);
        return result;

        void Add(string key, string value)
        {
            if (value.Length > 0)
            {
                result.TryAdd(key, value);
            }
        }
    }
}
