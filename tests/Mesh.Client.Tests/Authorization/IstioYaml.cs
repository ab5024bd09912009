using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Writes AuthorizationPolicies and RequestAuthentications as Istio YAML (<c>security.istio.io/v1</c>) and loads them
/// back with the control plane's own <see cref="YamlConfigLoader"/>, so a decision-table row starts from the YAML a user would write. The
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
                        Field(yaml, "requestPrincipals", source.RequestPrincipals);
                        Field(yaml, "notRequestPrincipals", source.NotRequestPrincipals);
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
                        // request.headers[name]; request.auth.claims[a][b] (a nested claim is one bracket per level).
                        var key = condition.HeaderName is not null ? $"{condition.Key}[{condition.HeaderName}]"
                            : condition.ClaimPath.IsEmpty ? condition.Key
                            : condition.Key + string.Concat(condition.ClaimPath.Select(part => $"[{part}]"));
                        yaml.Append("    - key: ").Append(Quote(key)).Append('\n');
                        Field(yaml, "values", condition.Values, indent: "      ");
                        Field(yaml, "notValues", condition.NotValues, indent: "      ");
                    }
                }
            }
        }

        return yaml.ToString();
    }

    public static string Write(IEnumerable<RequestAuthenticationModel> policies)
    {
        var yaml = new StringBuilder();
        foreach (var policy in policies)
        {
            yaml.Append("---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n")
                .Append("  name: ").Append(Quote(policy.Name)).Append('\n')
                .Append("  namespace: ").Append(Quote(policy.Namespace)).Append('\n')
                .Append(policy.Selector is null && policy.JwtRules.IsEmpty ? "spec: {}\n" : "spec:\n");
            if (policy.Selector is { } selector)
            {
                yaml.Append("  selector:\n    matchLabels:\n");
                foreach (var (key, value) in selector)
                {
                    yaml.Append("      ").Append(Quote(key)).Append(": ").Append(Quote(value)).Append('\n');
                }
            }

            if (!policy.JwtRules.IsEmpty)
            {
                yaml.Append("  jwtRules:\n");
            }

            foreach (var rule in policy.JwtRules)
            {
                yaml.Append("  - issuer: ").Append(Quote(rule.Issuer)).Append('\n');
                Field(yaml, "audiences", rule.Audiences, indent: "    ");
                if (rule.JwksUri is { } uri)
                {
                    yaml.Append("    jwksUri: ").Append(Quote(uri.OriginalString)).Append('\n');
                }

                if (rule.Jwks is { } jwks)
                {
                    yaml.Append("    jwks: ").Append(Quote(jwks)).Append('\n');
                }

                if (!rule.FromHeaders.IsEmpty)
                {
                    yaml.Append("    fromHeaders:\n");
                    foreach (var header in rule.FromHeaders)
                    {
                        yaml.Append("    - name: ").Append(Quote(header.Name)).Append("\n      prefix: ").Append(Quote(header.Prefix)).Append('\n');
                    }
                }

                Field(yaml, "fromParams", rule.FromParams, indent: "    ");
                if (rule.ForwardOriginalToken)
                {
                    yaml.Append("    forwardOriginalToken: true\n");
                }

                if (rule.OutputPayloadToHeader is { } payloadHeader)
                {
                    yaml.Append("    outputPayloadToHeader: ").Append(Quote(payloadHeader)).Append('\n');
                }

                if (!rule.OutputClaimToHeaders.IsEmpty)
                {
                    yaml.Append("    outputClaimToHeaders:\n");
                    foreach (var claim in rule.OutputClaimToHeaders)
                    {
                        yaml.Append("    - header: ").Append(Quote(claim.Header)).Append("\n      claim: ").Append(Quote(claim.Claim)).Append('\n');
                    }
                }

                Field(yaml, "spaceDelimitedClaims", rule.SpaceDelimitedClaims, indent: "    ");
            }
        }

        return yaml.ToString();
    }

    /// <summary>The policies as the control plane reads them from their YAML; throws when anything is lost on the way.</summary>
    public static AuthorizationPolicyModel[] RoundTrip(AuthorizationPolicyModel[] policies) =>
        RoundTrip(policies, Write(policies), config => config.AuthorizationPolicies);

    /// <summary>The RequestAuthentications as the control plane reads them from their YAML; throws when anything is lost on the way.</summary>
    public static RequestAuthenticationModel[] RoundTrip(RequestAuthenticationModel[] policies) =>
        RoundTrip(policies, Write(policies), config => config.RequestAuthentications);

    private static T[] RoundTrip<T>(T[] written, string yaml, Func<YamlConfig, IEnumerable<T>> read)
    {
        var result = YamlConfigLoader.Load([("decision-table.yaml", yaml)]);
        if (!result.Errors.IsEmpty)
        {
            throw new InvalidOperationException($"the control plane rejected the YAML: {string.Join("; ", result.Errors)}\n{yaml}");
        }

        var loaded = read(result.Config).ToArray();
        var expected = Canonical(written);
        var actual = Canonical(loaded);
        if (expected != actual)
        {
            throw new InvalidOperationException($"the YAML does not read back as the policies written (a field this writer does not emit?)\nwritten: {expected}\nread:    {actual}\n{yaml}");
        }

        return loaded;
    }

    // File and line say where the loader found a policy, not what it is.
    private static string Canonical<T>(IEnumerable<T> policies) =>
        JsonSerializer.Serialize(policies.Select(p => p switch
        {
            AuthorizationPolicyModel a => (object)(a with { File = string.Empty, Line = 0 }),
            RequestAuthenticationModel r => r with { File = string.Empty, Line = 0 },
            _ => throw new ArgumentException($"no canonical form for {typeof(T).Name}", nameof(policies)),
        }).ToArray());

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
