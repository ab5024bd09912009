using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>DestinationRule <c>trafficPolicy.loadBalancer.localityLbSetting</c>, validated as Istio's <c>ValidateLocalityLbSetting</c>.</summary>
internal static partial class YamlConfigLoader
{
    private static readonly string[] LocalityLbFields = ["enabled", "distribute", "failover", "failoverPriority"];

    /// <summary>Istio's topology labels, which <c>failoverPriority</c> may not use together with <c>failover</c>.</summary>
    private static readonly string[] TopologyLocalityLabels = ["topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"];

    /// <summary>
    /// <c>localityLbSetting</c> of the load balancer at <paramref name="path"/> (a <c>loadBalancer</c> mapping); null when
    /// unset or invalid. <paramref name="hasOutlierDetection"/> says whether the same traffic policy sets
    /// <c>outlierDetection</c>, without which failover never happens (a warning, as in Istio).
    /// </summary>
    private static LocalityLbSettingModel? ParseLocalityLbSetting(ResourceContext ctx, YamlMappingNode lbNode, string path, bool hasOutlierDetection)
    {
        var node = ctx.Mapping(Child(lbNode, "localityLbSetting"), lbNode, path, required: false);
        if (node is null)
        {
            return null;
        }

        var before = ctx.ErrorCount;
        RejectUnsupportedFields(ctx, node, path, LocalityLbFields);
        bool? enabled = null;
        if (Child(node, "enabled") is { } enabledNode)
        {
            var text = ctx.String(enabledNode, $"{path}.enabled");
            if (text is "true" or "false")
            {
                enabled = text == "true";
            }
            else
            {
                ctx.Error(enabledNode, $"{path}.enabled", $"must be true or false (got '{text}')");
            }
        }

        var distribute = ParseDistribute(ctx, node, $"{path}.distribute");
        var failover = ParseFailover(ctx, node, $"{path}.failover");
        var priority = ParseFailoverPriority(ctx, node, $"{path}.failoverPriority");
        if (!distribute.IsEmpty && !failover.IsEmpty)
        {
            ctx.Error(Child(node, "failover")!, $"{path}.failover", "cannot be set together with distribute (Istio: can not simultaneously specify 'distribute' and 'failover'); use one of them");
        }

        if (!failover.IsEmpty && priority.FirstOrDefault(l => TopologyLocalityLabels.Contains(l, StringComparer.Ordinal)) is { } topology)
        {
            ctx.Error(Child(node, "failoverPriority")!, $"{path}.failoverPriority", $"cannot use the topology label '{topology}' together with failover; failover already orders regions");
        }

        if (enabled == false && (!distribute.IsEmpty || !failover.IsEmpty || !priority.IsEmpty))
        {
            ctx.Warn(Child(node, "enabled")!, $"{path}.enabled", "is false, so distribute, failover and failoverPriority are ignored (locality load balancing is off for this host)");
        }
        else if (!distribute.IsEmpty && !priority.IsEmpty)
        {
            ctx.Warn(Child(node, "failoverPriority")!, $"{path}.failoverPriority", "is ignored when distribute is set (Istio applies distribute only)");
        }
        else if ((!failover.IsEmpty || !priority.IsEmpty) && !hasOutlierDetection)
        {
            // Istio's own warning: without outlier detection no endpoint is ever ejected, so no priority ever fails over.
            ctx.Warn(Child(node, failover.IsEmpty ? "failoverPriority" : "failover")!, path, "outlier detection policy must be provided for failover; set trafficPolicy.outlierDetection");
        }

        return ctx.ErrorCount != before ? null : new LocalityLbSettingModel(enabled, distribute, failover, priority);
    }

    private static ImmutableArray<LocalityDistributeModel> ParseDistribute(ResourceContext ctx, YamlMappingNode parent, string path)
    {
        var result = ImmutableArray.CreateBuilder<LocalityDistributeModel>();
        var node = ctx.Sequence(Child(parent, "distribute"), parent, path, required: false);
        var froms = new List<(string Locality, YamlNode Node, string Path)>();
        for (var i = 0; node is not null && i < node.Children.Count; i++)
        {
            var entryPath = $"{path}[{i}]";
            if (ctx.Mapping(node.Children[i], node, entryPath, required: true) is not { } entry)
            {
                continue;
            }

            RejectUnsupportedFields(ctx, entry, entryPath, ["from", "to"]);
            var from = ctx.String(Child(entry, "from"), $"{entryPath}.from");
            if (string.IsNullOrEmpty(from))
            {
                ctx.Error(Child(entry, "from") ?? entry, $"{entryPath}.from", "is required (a locality such as us-east/zone-a, or us-east/*)");
                continue;
            }

            froms.Add((from, Child(entry, "from")!, $"{entryPath}.from"));
            var toNode = ctx.Mapping(Child(entry, "to"), entry, $"{entryPath}.to", required: true);
            if (toNode is null)
            {
                continue;
            }

            var to = ImmutableArray.CreateBuilder<KeyValuePair<string, uint>>();
            var destinations = new List<(string Locality, YamlNode Node, string Path)>();
            ulong total = 0;
            var valid = true;
            foreach (var (key, value) in toNode.Children)
            {
                var locality = (key as YamlScalarNode)?.Value ?? string.Empty;
                var weightPath = $"{entryPath}.to[{locality}]";
                var text = ctx.String(value, weightPath);
                if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var weight) || weight is 0 or > 100)
                {
                    ctx.Error(value, weightPath, $"locality weight must be an integer from 1 to 100 (got '{text}')");
                    valid = false;
                    continue;
                }

                total += weight;
                destinations.Add((locality, key, weightPath));
                to.Add(KeyValuePair.Create(locality, weight));
            }

            if (valid && total != 100)
            {
                // Unlike route weights, Istio requires these to total exactly 100.
                ctx.Error(toNode, $"{entryPath}.to", $"the locality weights total {total.ToString(CultureInfo.InvariantCulture)}; they must total 100");
                continue;
            }

            if (valid && CheckLocalityPatterns(ctx, destinations))
            {
                result.Add(new LocalityDistributeModel(from, to.ToImmutable()));
            }
        }

        CheckLocalityPatterns(ctx, froms);
        return result.ToImmutable();
    }

    private static ImmutableArray<LocalityFailoverModel> ParseFailover(ResourceContext ctx, YamlMappingNode parent, string path)
    {
        var result = ImmutableArray.CreateBuilder<LocalityFailoverModel>();
        var node = ctx.Sequence(Child(parent, "failover"), parent, path, required: false);
        for (var i = 0; node is not null && i < node.Children.Count; i++)
        {
            var entryPath = $"{path}[{i}]";
            if (ctx.Mapping(node.Children[i], node, entryPath, required: true) is not { } entry)
            {
                continue;
            }

            RejectUnsupportedFields(ctx, entry, entryPath, ["from", "to"]);
            var from = FailoverRegion(ctx, entry, "from", entryPath);
            var to = FailoverRegion(ctx, entry, "to", entryPath);
            if (from is null || to is null)
            {
                continue;
            }

            if (from == to)
            {
                ctx.Error(Child(entry, "to")!, $"{entryPath}.to", $"is the same region as from ('{from}'); failover must name a different region");
            }
            else if (result.Any(f => f.From == from))
            {
                // Istio reads only the first entry for a region; a second one would be silently dead.
                ctx.Error(Child(entry, "from")!, $"{entryPath}.from", $"region '{from}' already has a failover entry; only the first would apply");
            }
            else
            {
                result.Add(new LocalityFailoverModel(from, to));
            }
        }

        return result.ToImmutable();
    }

    private static string? FailoverRegion(ResourceContext ctx, YamlMappingNode entry, string field, string entryPath)
    {
        var node = Child(entry, field);
        var value = ctx.String(node, $"{entryPath}.{field}");
        if (string.IsNullOrEmpty(value))
        {
            ctx.Error(node ?? entry, $"{entryPath}.{field}", "is required (a region)");
            return null;
        }

        if (value.Contains('/', StringComparison.Ordinal))
        {
            ctx.Error(node!, $"{entryPath}.{field}", $"'{value}' must be a region only (locality lb failover only specifies regions)");
            return null;
        }

        if (value.Contains('*', StringComparison.Ordinal))
        {
            ctx.Error(node!, $"{entryPath}.{field}", $"'{value}' must not contain the '*' wildcard");
            return null;
        }

        return value;
    }

    private static ImmutableArray<string> ParseFailoverPriority(ResourceContext ctx, YamlMappingNode parent, string path)
    {
        var result = ImmutableArray.CreateBuilder<string>();
        var node = ctx.Sequence(Child(parent, "failoverPriority"), parent, path, required: false);
        for (var i = 0; node is not null && i < node.Children.Count; i++)
        {
            var label = ctx.String(node.Children[i], $"{path}[{i}]");
            var name = label?.Split('=')[0];
            if (string.IsNullOrEmpty(name) || label!.Count(c => c == '=') > 1 || name.Any(c => c <= ' ' || c >= 127))
            {
                ctx.Error(node.Children[i], $"{path}[{i}]", $"'{label}' must be a label name, optionally with =value");
            }
            else
            {
                result.Add(label!);
            }
        }

        return result.ToImmutable();
    }

    /// <summary>
    /// Istio's <c>validateLocalities</c>: each is region[/zone[/subzone]] with no empty part, at most one '*' and only at the
    /// end, and no two overlap (one covering the other). Returns whether all were valid.
    /// </summary>
    private static bool CheckLocalityPatterns(ResourceContext ctx, List<(string Locality, YamlNode Node, string Path)> localities)
    {
        var seen = new List<string[]>();
        foreach (var (locality, node, path) in localities)
        {
            var stars = locality.Count(c => c == '*');
            var parts = locality.Split('/', 3);
            if (stars > 1 || (stars == 1 && !locality.EndsWith('*')))
            {
                ctx.Error(node, path, $"locality '{locality}': the '*' wildcard may appear once, at the end");
                return false;
            }

            if (parts.Any(p => p.Length == 0) || locality.Any(c => c <= ' ' || c >= 127))
            {
                ctx.Error(node, path, $"locality '{locality}' must look like region, region/zone or region/zone/subzone with no empty part");
                return false;
            }

            if (seen.FirstOrDefault(other => Overlaps(other, parts)) is { } previous)
            {
                ctx.Error(node, path, $"locality '{locality}' overlaps '{string.Join('/', previous)}'");
                return false;
            }

            seen.Add(parts);
        }

        return true;

        // Two patterns overlap when, level by level, one leaves it open ('*' or absent) or both name the same value.
        static bool Overlaps(string[] a, string[] b)
        {
            for (var i = 0; i < 3; i++)
            {
                var x = i < a.Length ? a[i] : "*";
                var y = i < b.Length ? b[i] : "*";
                if (x != "*" && y != "*" && x != y)
                {
                    return false;
                }
            }

            return true;
        }
    }
}
