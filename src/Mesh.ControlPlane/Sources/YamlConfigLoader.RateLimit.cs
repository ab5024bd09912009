using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// HTTPLocalRateLimitPolicy (<c>policy.mesh-dotnet.io/v1alpha1</c>): Linkerd's kind and field names (<c>total</c>,
/// <c>identity</c>, <c>overrides</c>), attached to a ServiceEntry instead of a Linkerd Server. Istio has no field for local
/// rate limits (its users write an EnvoyFilter, which patches Envoy config Mesh does not run), so this small kind is ours.
/// </summary>
internal static partial class YamlConfigLoader
{
    public const string MeshPolicyGroup = "policy.mesh-dotnet.io";
    public const string RateLimitKind = "HTTPLocalRateLimitPolicy";

    private static readonly string[] RateLimitApiVersions = [MeshPolicyGroup + "/v1alpha1"];

    private static bool IsMeshPolicyGroup(string? apiVersion) =>
        string.Equals(apiVersion?.Split('/')[0].Trim(), MeshPolicyGroup, StringComparison.OrdinalIgnoreCase);

    private static LocalRateLimitPolicyModel ParseLocalRateLimitPolicy(ResourceContext ctx, YamlMappingNode spec, string ns, string name, string file, int line)
    {
        OnlyFields(ctx, spec, "spec", ["targetRef", "total", "identity", "overrides"]);
        var target = string.Empty;
        var targetRef = ctx.Mapping(Child(spec, "targetRef"), spec, "spec.targetRef", required: true);
        if (targetRef is not null)
        {
            OnlyFields(ctx, targetRef, "spec.targetRef", ["group", "kind", "name"]);
            var group = ctx.String(Child(targetRef, "group"), "spec.targetRef.group");
            if (group is not null && group != "networking.istio.io")
            {
                ctx.Error(Child(targetRef, "group")!, "spec.targetRef.group", $"'{group}' must be networking.istio.io (the policy targets a ServiceEntry)");
            }

            var kind = ctx.String(Child(targetRef, "kind"), "spec.targetRef.kind");
            if (kind != "ServiceEntry")
            {
                ctx.Error(Child(targetRef, "kind") ?? targetRef, "spec.targetRef.kind", kind is null ? "is required; use ServiceEntry" : $"'{kind}' is not supported; use ServiceEntry");
            }

            target = ctx.String(Child(targetRef, "name"), "spec.targetRef.name") ?? string.Empty;
            if (target.Length == 0)
            {
                ctx.Error(Child(targetRef, "name") ?? targetRef, "spec.targetRef.name", "is required (a ServiceEntry in the policy's namespace)");
            }
        }

        var total = Rate(ctx, spec, "total", "spec.total");
        var identity = Rate(ctx, spec, "identity", "spec.identity");
        if (total is { } t && identity is { } i && i > t)
        {
            ctx.Error(Child(spec, "identity")!, "spec.identity.requestsPerSecond", $"{i} must not exceed spec.total.requestsPerSecond ({t})");
        }

        var overrides = ImmutableArray.CreateBuilder<RateLimitOverrideModel>();
        var seen = new Dictionary<ServiceAccountRef, string>();
        var overridesNode = ctx.Sequence(Child(spec, "overrides"), spec, "spec.overrides", required: false);
        for (var o = 0; overridesNode is not null && o < overridesNode.Children.Count; o++)
        {
            var path = $"spec.overrides[{o}]";
            var node = ctx.Mapping(overridesNode.Children[o], overridesNode, path, required: true);
            if (node is null)
            {
                continue;
            }

            OnlyFields(ctx, node, path, ["requestsPerSecond", "clientRefs"]);
            var rate = RequestsPerSecond(ctx, node, path);
            if (rate is { } r && total is { } limit && r > limit)
            {
                ctx.Error(Child(node, "requestsPerSecond")!, $"{path}.requestsPerSecond", $"{r} must not exceed spec.total.requestsPerSecond ({limit})");
            }

            var refs = ImmutableArray.CreateBuilder<ServiceAccountRef>();
            var refsNode = ctx.Sequence(Child(node, "clientRefs"), node, $"{path}.clientRefs", required: true);
            if (refsNode is { Children.Count: 0 })
            {
                ctx.Error(refsNode, $"{path}.clientRefs", "must list at least one ServiceAccount");
            }

            for (var c = 0; refsNode is not null && c < refsNode.Children.Count; c++)
            {
                var refPath = $"{path}.clientRefs[{c}]";
                var refNode = ctx.Mapping(refsNode.Children[c], refsNode, refPath, required: true);
                if (refNode is null)
                {
                    continue;
                }

                OnlyFields(ctx, refNode, refPath, ["kind", "name", "namespace"]);
                var kind = ctx.String(Child(refNode, "kind"), $"{refPath}.kind");
                if (kind != "ServiceAccount")
                {
                    ctx.Error(Child(refNode, "kind") ?? refNode, $"{refPath}.kind", kind is null ? "is required; use ServiceAccount" : $"'{kind}' is not supported; use ServiceAccount");
                }

                var account = ctx.String(Child(refNode, "name"), $"{refPath}.name");
                var accountNs = ctx.String(Child(refNode, "namespace"), $"{refPath}.namespace") ?? ns;
                if (string.IsNullOrEmpty(account) || !IsDnsLabelish(account))
                {
                    ctx.Error(Child(refNode, "name") ?? refNode, $"{refPath}.name", "is required and must be a lowercase RFC 1123 name");
                    continue;
                }

                if (!IsDnsLabelish(accountNs))
                {
                    ctx.Error(Child(refNode, "namespace")!, $"{refPath}.namespace", "must be a lowercase RFC 1123 label");
                    continue;
                }

                var reference = new ServiceAccountRef(accountNs, account);
                if (seen.TryGetValue(reference, out var first))
                {
                    ctx.Error(refNode, refPath, $"ServiceAccount {accountNs}/{account} is already listed at {first}; one identity has one override");
                    continue;
                }

                seen[reference] = refPath;
                refs.Add(reference);
            }

            if (rate is not null)
            {
                overrides.Add(new RateLimitOverrideModel(rate.Value, refs.ToImmutable()));
            }
        }

        if (total is null && identity is null && overrides.Count == 0 && Child(spec, "overrides") is null)
        {
            ctx.Error(spec, "spec", "limits nothing: set total, identity or overrides");
        }

        return new LocalRateLimitPolicyModel(ns, name, target, total, identity, overrides.ToImmutable(), file, line);
    }

    /// <summary>One target, one policy (as Linkerd: one per Server); the target must be a ServiceEntry of the policy's namespace.</summary>
    private static void CheckRateLimitPolicies(List<LocalRateLimitPolicyModel> policies, List<(ServiceEntryModel Model, string File, int Line)> services, List<ConfigError> errors)
    {
        var byTarget = new Dictionary<(string, string), LocalRateLimitPolicyModel>();
        foreach (var policy in policies.OrderBy(p => p.File, StringComparer.Ordinal).ThenBy(p => p.Line))
        {
            var where = $"{RateLimitKind} {policy.Namespace}/{policy.Name}: spec.targetRef.name";
            if (!services.Any(s => s.Model.Namespace == policy.Namespace && s.Model.Name == policy.Target))
            {
                errors.Add(new ConfigError(policy.File, policy.Line, $"{where}: ServiceEntry {policy.Namespace}/{policy.Target} does not exist", Kind: RateLimitKind));
            }
            else if (!byTarget.TryAdd((policy.Namespace, policy.Target), policy))
            {
                var first = byTarget[(policy.Namespace, policy.Target)];
                errors.Add(new ConfigError(policy.File, policy.Line,
                    $"{where}: ServiceEntry {policy.Namespace}/{policy.Target} already has {RateLimitKind} {first.Namespace}/{first.Name} ({first.File}:{first.Line}); one policy per target", Kind: RateLimitKind));
            }
        }
    }

    private static uint? Rate(ResourceContext ctx, YamlMappingNode spec, string field, string path)
    {
        var node = ctx.Mapping(Child(spec, field), spec, path, required: false);
        if (node is null)
        {
            return null;
        }

        OnlyFields(ctx, node, path, ["requestsPerSecond"]);
        return RequestsPerSecond(ctx, node, path);
    }

    /// <summary>
    /// A positive whole number of requests per second. Linkerd reads 0 as "no limit"; here it is an error, so that a typo
    /// never switches a limit off (leave the field out for no limit), and Envoy's token bucket needs max_tokens &gt; 0.
    /// </summary>
    private static uint? RequestsPerSecond(ResourceContext ctx, YamlMappingNode node, string path)
    {
        var valueNode = Child(node, "requestsPerSecond");
        if (valueNode is null)
        {
            ctx.Error(node, $"{path}.requestsPerSecond", "is required");
            return null;
        }

        var text = ctx.String(valueNode, $"{path}.requestsPerSecond");
        if (!long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < 1 || value > int.MaxValue)
        {
            ctx.Error(valueNode, $"{path}.requestsPerSecond", $"must be a whole number from 1 to {int.MaxValue} (got '{text}'); leave the field out for no limit");
            return null;
        }

        return (uint)value;
    }

    private static void OnlyFields(ResourceContext ctx, YamlMappingNode node, string path, string[] known)
    {
        foreach (var key in node.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is null || !known.Contains(field, StringComparer.Ordinal))
            {
                ctx.Error(key, $"{path}.{field}", $"is not a field of {RateLimitKind} here (known: {string.Join(", ", known)})");
            }
        }
    }
}
