using System.Collections.Immutable;
using System.Globalization;
using Mesh.ControlPlane.Model;
using YamlDotNet.RepresentationModel;

namespace Mesh.ControlPlane.Sources;

/// <summary>PeerAuthentication and AuthorizationPolicy (security.istio.io).</summary>
internal static partial class YamlConfigLoader
{
    private const string SecurityGroup = "security.istio.io";

    /// <summary>
    /// The security.istio.io kinds this loader reads: any other kind in that group is an error, not a warning (a policy
    /// the mesh cannot read must never be dropped silently). A kind added here needs its case in ParseDocument.
    /// </summary>
    private static readonly string[] SecurityKinds = ["PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"];

    private static readonly string[] SecurityApiVersions = [SecurityGroup + "/v1", SecurityGroup + "/v1beta1"];
    private static readonly string[] MtlsModes = ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"];
    private static readonly string[] SourceFields = ["principals", "notPrincipals", "namespaces", "notNamespaces", "requestPrincipals", "notRequestPrincipals"];
    private static readonly string[] OperationFields = ["methods", "notMethods", "paths", "notPaths", "ports", "notPorts", "hosts", "notHosts"];
    private static readonly string[] SupportedConditionKeys =
        ["request.headers[<name>]", ConditionKeys.SourcePrincipal, ConditionKeys.SourceNamespace,
         ConditionKeys.RequestPrincipal, ConditionKeys.RequestAudiences, ConditionKeys.RequestPresenter, "request.auth.claims[<name>]"];

    /// <summary>Whether <paramref name="apiVersion"/> names the security.istio.io group (any version, any case).</summary>
    private static bool IsSecurityGroup(string? apiVersion)
    {
        var group = apiVersion?.Split('/')[0].Trim();
        return string.Equals(group, SecurityGroup, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The ordering rule for several policies at one scope (we have no creation time): first by file, then name.</summary>
    internal static int CompareScopeOrder(string fileA, string nameA, string fileB, string nameB)
    {
        var byFile = string.CompareOrdinal(fileA, fileB);
        return byFile != 0 ? byFile : string.CompareOrdinal(nameA, nameB);
    }

    private static PeerAuthenticationModel ParsePeerAuthentication(ResourceContext ctx, YamlMappingNode spec, string ns, string name, string file, int line)
    {
        var selector = ParseSelector(ctx, spec);
        var mode = MtlsMode.Unset;
        var mtls = ctx.Mapping(Child(spec, "mtls"), spec, "spec.mtls", required: false);
        if (mtls is not null)
        {
            mode = ParseMode(ctx, Child(mtls, "mode"), "spec.mtls.mode");
        }

        var portLevel = ImmutableSortedDictionary.CreateBuilder<uint, MtlsMode>();
        var portsNode = ctx.Mapping(Child(spec, "portLevelMtls"), spec, "spec.portLevelMtls", required: false);
        if (portsNode is not null)
        {
            if (selector is null)
            {
                ctx.Error(portsNode, "spec.portLevelMtls", "requires spec.selector (port-level mTLS applies to workloads, not to a whole namespace)");
            }

            foreach (var (key, value) in portsNode.Children)
            {
                var portText = (key as YamlScalarNode)?.Value;
                var path = $"spec.portLevelMtls.{portText}";
                if (!uint.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
                {
                    ctx.Error(key, path, $"port must be 1-65535 (got '{portText}')");
                    continue;
                }

                var portMtls = ctx.Mapping(value, portsNode, path, required: true);
                if (portMtls is not null)
                {
                    portLevel[port] = ParseMode(ctx, Child(portMtls, "mode"), $"{path}.mode");
                }
            }
        }

        return new PeerAuthenticationModel(ns, name, selector, mode, portLevel.ToImmutable(), file, line);
    }

    private static MtlsMode ParseMode(ResourceContext ctx, YamlNode? node, string path)
    {
        var text = ctx.String(node, path);
        switch (text)
        {
            case null or "UNSET":
                return MtlsMode.Unset;
            case "DISABLE":
                return MtlsMode.Disable;
            case "PERMISSIVE":
                return MtlsMode.Permissive;
            case "STRICT":
                return MtlsMode.Strict;
            default:
                ctx.Error(node!, path, $"'{text}' must be one of {string.Join(", ", MtlsModes)}");
                return MtlsMode.Unset;
        }
    }

    private static ImmutableSortedDictionary<string, string>? ParseSelector(ResourceContext ctx, YamlMappingNode spec)
    {
        var selectorNode = ctx.Mapping(Child(spec, "selector"), spec, "spec.selector", required: false);
        if (selectorNode is null)
        {
            return null;
        }

        var labels = ctx.Labels(Child(selectorNode, "matchLabels"), selectorNode, "spec.selector.matchLabels");
        return labels.IsEmpty ? null : labels;
    }

    private static AuthorizationPolicyModel ParseAuthorizationPolicy(ResourceContext ctx, YamlMappingNode spec, string ns, string name, string file, int line)
    {
        var selector = ParseSelector(ctx, spec);
        var action = AuthorizationAction.Allow;
        var actionNode = Child(spec, "action");
        switch (ctx.String(actionNode, "spec.action"))
        {
            case null or "ALLOW":
                break;
            case "DENY":
                action = AuthorizationAction.Deny;
                break;
            case "AUDIT" or "CUSTOM":
                ctx.Error(actionNode!, "spec.action", $"{((YamlScalarNode)actionNode!).Value} is not supported; use ALLOW or DENY");
                break;
            case var other:
                ctx.Error(actionNode!, "spec.action", $"'{other}' must be ALLOW or DENY");
                break;
        }

        var rules = ImmutableArray.CreateBuilder<AuthorizationRule>();
        var rulesNode = ctx.Sequence(Child(spec, "rules"), spec, "spec.rules", required: false);
        if (rulesNode is not null)
        {
            for (var i = 0; i < rulesNode.Children.Count; i++)
            {
                var path = $"spec.rules[{i}]";
                var ruleNode = rulesNode.Children[i] is YamlScalarNode { Value: null or "" or "~" } ? new YamlMappingNode() : ctx.Mapping(rulesNode.Children[i], rulesNode, path, required: true);
                if (ruleNode is not null)
                {
                    rules.Add(ParseRule(ctx, ruleNode, path));
                }
            }
        }

        return new AuthorizationPolicyModel(ns, name, selector, action, rules.ToImmutable(), file, line);
    }

    private static AuthorizationRule ParseRule(ResourceContext ctx, YamlMappingNode rule, string path)
    {
        foreach (var key in rule.Children.Keys)
        {
            if ((key as YamlScalarNode)?.Value is not ("from" or "to" or "when"))
            {
                ctx.Error(key, $"{path}.{(key as YamlScalarNode)?.Value}", "is not a rule field; use from, to or when");
            }
        }

        var from = ImmutableArray.CreateBuilder<RuleSource>();
        var fromNode = ctx.Sequence(Child(rule, "from"), rule, $"{path}.from", required: false);
        for (var i = 0; fromNode is not null && i < fromNode.Children.Count; i++)
        {
            var itemPath = $"{path}.from[{i}]";
            var item = ctx.Mapping(fromNode.Children[i], fromNode, itemPath, required: true);
            var source = item is null ? null : ctx.Mapping(Child(item, "source"), item, $"{itemPath}.source", required: true);
            if (source is null)
            {
                continue;
            }

            var fields = ReadFields(ctx, source, $"{itemPath}.source", SourceFields);

            from.Add(new RuleSource(fields["principals"], fields["notPrincipals"], fields["namespaces"], fields["notNamespaces"])
            {
                RequestPrincipals = fields["requestPrincipals"],
                NotRequestPrincipals = fields["notRequestPrincipals"],
            });
        }

        var to = ImmutableArray.CreateBuilder<RuleOperation>();
        var toNode = ctx.Sequence(Child(rule, "to"), rule, $"{path}.to", required: false);
        for (var i = 0; toNode is not null && i < toNode.Children.Count; i++)
        {
            var itemPath = $"{path}.to[{i}]";
            var item = ctx.Mapping(toNode.Children[i], toNode, itemPath, required: true);
            var operation = item is null ? null : ctx.Mapping(Child(item, "operation"), item, $"{itemPath}.operation", required: true);
            if (operation is null)
            {
                continue;
            }

            var fields = ReadFields(ctx, operation, $"{itemPath}.operation", OperationFields);
            to.Add(new RuleOperation(
                fields["methods"], fields["notMethods"], fields["paths"], fields["notPaths"],
                Ports(ctx, operation, "ports", $"{itemPath}.operation.ports", fields["ports"]),
                Ports(ctx, operation, "notPorts", $"{itemPath}.operation.notPorts", fields["notPorts"]),
                fields["hosts"], fields["notHosts"]));
        }

        var when = ImmutableArray.CreateBuilder<RuleCondition>();
        var whenNode = ctx.Sequence(Child(rule, "when"), rule, $"{path}.when", required: false);
        for (var i = 0; whenNode is not null && i < whenNode.Children.Count; i++)
        {
            var itemPath = $"{path}.when[{i}]";
            var item = ctx.Mapping(whenNode.Children[i], whenNode, itemPath, required: true);
            if (item is not null && ParseCondition(ctx, item, itemPath) is { } condition)
            {
                when.Add(condition);
            }
        }

        return new AuthorizationRule(from.ToImmutable(), to.ToImmutable(), when.ToImmutable());
    }

    private static RuleCondition? ParseCondition(ResourceContext ctx, YamlMappingNode item, string path)
    {
        var keyNode = Child(item, "key");
        var key = ctx.String(keyNode, $"{path}.key");
        var values = StringList(ctx, Child(item, "values"), $"{path}.values");
        var notValues = StringList(ctx, Child(item, "notValues"), $"{path}.notValues");
        if (values.IsEmpty && notValues.IsEmpty)
        {
            ctx.Error(item, path, "must set values or notValues");
        }

        CheckWildcards(ctx, item, $"{path}.values", values.AddRange(notValues));
        switch (key)
        {
            case null or "":
                ctx.Error(keyNode ?? item, $"{path}.key", "is required");
                return null;
            case ConditionKeys.SourceNamespace:
                return new RuleCondition(key, null, values, notValues);
            case ConditionKeys.SourcePrincipal:
                return new RuleCondition(key, null, values, notValues);
            case ConditionKeys.RequestPrincipal or ConditionKeys.RequestAudiences or ConditionKeys.RequestPresenter:
                return new RuleCondition(key, null, values, notValues);
            case var claims when claims.StartsWith(ConditionKeys.RequestClaims, StringComparison.Ordinal):
                if (ParseClaimPath(claims) is not { } claimPath)
                {
                    ctx.Error(keyNode!, $"{path}.key", $"'{key}' must look like request.auth.claims[name] or request.auth.claims[a][b] (nested claims)");
                    return null;
                }

                return new RuleCondition(ConditionKeys.RequestClaims, null, values, notValues) { ClaimPath = claimPath };
            case var header when header.StartsWith(ConditionKeys.RequestHeaders + "[", StringComparison.Ordinal) && header.EndsWith(']') && header.Length > ConditionKeys.RequestHeaders.Length + 2:
                return new RuleCondition(ConditionKeys.RequestHeaders, header[(ConditionKeys.RequestHeaders.Length + 1)..^1].ToLowerInvariant(), values, notValues);
            default:
                ctx.Error(keyNode!, $"{path}.key", $"'{key}' is not supported; supported keys are {string.Join(", ", SupportedConditionKeys)}");
                return null;
        }
    }

    private static Dictionary<string, ImmutableArray<string>> ReadFields(ResourceContext ctx, YamlMappingNode node, string path, string[] known)
    {
        foreach (var key in node.Children.Keys)
        {
            var field = (key as YamlScalarNode)?.Value;
            if (field is null || !known.Contains(field, StringComparer.Ordinal))
            {
                ctx.Error(key, $"{path}.{field}", $"is not supported; supported fields are {string.Join(", ", known)}");
            }
        }

        var result = new Dictionary<string, ImmutableArray<string>>(StringComparer.Ordinal);
        var any = false;
        foreach (var field in known)
        {
            var list = StringList(ctx, Child(node, field), $"{path}.{field}");
            CheckWildcards(ctx, Child(node, field) ?? node, $"{path}.{field}", list);
            result[field] = list;
            any |= !list.IsEmpty;
        }

        if (!any && node.Children.Count == 0)
        {
            ctx.Error(node, path, "must set at least one field");
        }

        return result;
    }

    private static void CheckWildcards(ResourceContext ctx, YamlNode node, string path, ImmutableArray<string> values)
    {
        foreach (var value in values)
        {
            var inner = value.Length > 1 ? value[1..^1] : string.Empty;
            if (value.Length == 0)
            {
                ctx.Error(node, path, "values must not be empty strings");
            }
            else if (inner.Contains('*', StringComparison.Ordinal) || (value.Length > 1 && value[0] == '*' && value[^1] == '*'))
            {
                ctx.Error(node, path, $"'{value}': '*' is allowed only alone, at the start (suffix match) or at the end (prefix match)");
            }
        }
    }

    private static ImmutableArray<uint> Ports(ResourceContext ctx, YamlMappingNode operation, string field, string path, ImmutableArray<string> values)
    {
        var ports = ImmutableArray.CreateBuilder<uint>();
        foreach (var value in values)
        {
            if (!uint.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                ctx.Error(Child(operation, field)!, path, $"'{value}' must be a port 1-65535");
                continue;
            }

            ports.Add(port);
        }

        return ports.ToImmutable();
    }

    private static ImmutableArray<string> StringList(ResourceContext ctx, YamlNode? node, string path)
    {
        var sequence = ctx.Sequence(node, node ?? new YamlMappingNode(), path, required: false);
        if (sequence is null)
        {
            return [];
        }

        var result = ImmutableArray.CreateBuilder<string>();
        for (var i = 0; i < sequence.Children.Count; i++)
        {
            if (sequence.Children[i] is YamlScalarNode { Value: { } value })
            {
                result.Add(value);
            }
            else
            {
                ctx.Error(sequence.Children[i], $"{path}[{i}]", "must be a string");
            }
        }

        return result.ToImmutable();
    }

    private static void CheckSecurityDuplicates(SecurityPolicyLists security, List<ConfigError> errors)
    {
        var groups = security.PeerAuthentications
            .GroupBy(p => (p.Namespace, Selector: p.Selector is null ? string.Empty : string.Join(",", p.Selector.Select(l => $"{l.Key}={l.Value}"))))
            .Where(g => g.Count() > 1);
        foreach (var group in groups)
        {
            var ordered = group.Order(Comparer<PeerAuthenticationModel>.Create((a, b) => CompareScopeOrder(a.File, a.Name, b.File, b.Name))).ToList();
            var winner = ordered[0];
            var scope = group.Key.Selector.Length == 0 ? $"namespace {group.Key.Namespace}" : $"selector {{{group.Key.Selector}}} in namespace {group.Key.Namespace}";
            foreach (var loser in ordered.Skip(1))
            {
                errors.Add(new ConfigError(loser.File, loser.Line,
                    $"PeerAuthentication {loser.Namespace}/{loser.Name}: ignored: PeerAuthentication {winner.Namespace}/{winner.Name} ({winner.File}:{winner.Line}) already covers {scope}; with several policies at one scope the first by file name, then name, wins",
                    IsWarning: true, Kind: "PeerAuthentication"));
            }
        }
    }

    internal sealed class SecurityPolicyLists
    {
        public List<PeerAuthenticationModel> PeerAuthentications { get; } = [];

        public List<AuthorizationPolicyModel> AuthorizationPolicies { get; } = [];

        public List<RequestAuthenticationModel> RequestAuthentications { get; } = [];
    }
}
