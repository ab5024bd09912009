using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Writes AuthorizationPolicies as Istio YAML (<c>security.istio.io/v1</c>) and loads them back with the control
/// plane's own <see cref="YamlConfigLoader"/>, so a decision-table row starts from the YAML a user would write. The
/// round trip fails loudly when the loader reports an error or reads back a different policy (e.g. a model field
/// this writer does not emit yet).
/// </summary>
internal static class IstioYaml
{
    public static string Write(IEnumerable<AuthorizationPolicyModel> policies)
    {
        var yaml = new StringBuilder();
        foreach (var policy in policies)
        {
            yaml.Append("---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n")
                .Append("  name: ").Append(Quote(policy.Name)).Append('\n')
                .Append("  namespace: ").Append(Quote(policy.Namespace)).Append('\n')
                .Append("spec:\n  action: ").Append(policy.Action == AuthorizationAction.Deny ? "DENY" : "ALLOW").Append('\n');
            if (policy.Selector is { } selector)
            {
                yaml.Append("  selector:\n    matchLabels:\n");
                foreach (var (key, value) in selector)
                {
                    yaml.Append("      ").Append(Quote(key)).Append(": ").Append(Quote(value)).Append('\n');
                }
            }

            if (!policy.Rules.IsEmpty)
            {
                yaml.Append("  rules:\n");
            }

            foreach (var rule in policy.Rules)
            {
                if (rule.From.IsEmpty && rule.To.IsEmpty && rule.When.IsEmpty)
                {
                    yaml.Append("  - {}\n");
                    continue;
                }

                // The first field of a rule opens its list item; the others are indented under it.
                var first = true;
                string Item()
                {
                    var prefix = first ? "  - " : "    ";
                    first = false;
                    return prefix;
                }

                if (!rule.From.IsEmpty)
                {
                    yaml.Append(Item()).Append("from:\n");
                    foreach (var source in rule.From)
                    {
                        yaml.Append("    - source:\n");
                        Field(yaml, "principals", source.Principals);
                        Field(yaml, "notPrincipals", source.NotPrincipals);
                        Field(yaml, "namespaces", source.Namespaces);
                        Field(yaml, "notNamespaces", source.NotNamespaces);
                    }
                }

                if (!rule.To.IsEmpty)
                {
                    yaml.Append(Item()).Append("to:\n");
                    foreach (var operation in rule.To)
                    {
                        yaml.Append("    - operation:\n");
                        Field(yaml, "methods", operation.Methods);
                        Field(yaml, "notMethods", operation.NotMethods);
                        Field(yaml, "paths", operation.Paths);
                        Field(yaml, "notPaths", operation.NotPaths);
                        Field(yaml, "ports", [.. operation.Ports.Select(p => p.ToString(CultureInfo.InvariantCulture))]);
                        Field(yaml, "notPorts", [.. operation.NotPorts.Select(p => p.ToString(CultureInfo.InvariantCulture))]);
                        Field(yaml, "hosts", operation.Hosts);
                        Field(yaml, "notHosts", operation.NotHosts);
                    }
                }

                if (!rule.When.IsEmpty)
                {
                    yaml.Append(Item()).Append("when:\n");
                    foreach (var condition in rule.When)
                    {
                        var key = condition.HeaderName is null ? condition.Key : $"{condition.Key}[{condition.HeaderName}]";
                        yaml.Append("    - key: ").Append(Quote(key)).Append('\n');
                        Field(yaml, "values", condition.Values, indent: "      ");
                        Field(yaml, "notValues", condition.NotValues, indent: "      ");
                    }
                }
            }
        }

        return yaml.ToString();
    }

    /// <summary>The policies as the control plane reads them from their YAML; throws when anything is lost on the way.</summary>
    public static AuthorizationPolicyModel[] RoundTrip(AuthorizationPolicyModel[] policies)
    {
        var yaml = Write(policies);
        var result = YamlConfigLoader.Load([("decision-table.yaml", yaml)]);
        if (!result.Errors.IsEmpty)
        {
            throw new InvalidOperationException($"the control plane rejected the YAML: {string.Join("; ", result.Errors)}\n{yaml}");
        }

        var loaded = result.Config.AuthorizationPolicies.ToArray();
        var expected = Canonical(policies);
        var actual = Canonical(loaded);
        if (expected != actual)
        {
            throw new InvalidOperationException($"the YAML does not read back as the policies written (a field this writer does not emit?)\nwritten: {expected}\nread:    {actual}\n{yaml}");
        }

        return loaded;
    }

    private static string Canonical(IEnumerable<AuthorizationPolicyModel> policies) =>
        JsonSerializer.Serialize(policies.Select(p => p with { File = string.Empty, Line = 0 }).ToArray());

    private static void Field(StringBuilder yaml, string name, ImmutableArray<string> values, string indent = "        ")
    {
        if (!values.IsEmpty)
        {
            yaml.Append(indent).Append(name).Append(": [").AppendJoin(", ", values.Select(Quote)).Append("]\n");
        }
    }

    // Double-quoted YAML scalars: only '\' and '"' need escaping in the values a policy holds.
    private static string Quote(string value) => "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";
}
