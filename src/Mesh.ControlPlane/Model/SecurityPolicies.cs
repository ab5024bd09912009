using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>PeerAuthentication mTLS mode (security.istio.io/v1).</summary>
internal enum MtlsMode
{
    Unset,
    Disable,
    Permissive,
    Strict,
}

/// <summary>AuthorizationPolicy actions we enforce; AUDIT and CUSTOM are rejected by the loader.</summary>
internal enum AuthorizationAction
{
    Allow,
    Deny,
}

/// <summary>A PeerAuthentication. <see cref="Selector"/> null means namespace-wide (mesh-wide in the root namespace).</summary>
internal sealed record PeerAuthenticationModel(
    string Namespace,
    string Name,
    ImmutableSortedDictionary<string, string>? Selector,
    MtlsMode Mode,
    ImmutableSortedDictionary<uint, MtlsMode> PortLevelMtls,
    string File,
    int Line);

/// <summary>An AuthorizationPolicy. An ALLOW policy with no rules is "allow-nothing".</summary>
internal sealed record AuthorizationPolicyModel(
    string Namespace,
    string Name,
    ImmutableSortedDictionary<string, string>? Selector,
    AuthorizationAction Action,
    ImmutableArray<AuthorizationRule> Rules,
    string File,
    int Line);

internal sealed record AuthorizationRule(ImmutableArray<RuleSource> From, ImmutableArray<RuleOperation> To, ImmutableArray<RuleCondition> When);

internal sealed record RuleSource(
    ImmutableArray<string> Principals,
    ImmutableArray<string> NotPrincipals,
    ImmutableArray<string> Namespaces,
    ImmutableArray<string> NotNamespaces);

internal sealed record RuleOperation(
    ImmutableArray<string> Methods,
    ImmutableArray<string> NotMethods,
    ImmutableArray<string> Paths,
    ImmutableArray<string> NotPaths,
    ImmutableArray<uint> Ports,
    ImmutableArray<uint> NotPorts,
    ImmutableArray<string> Hosts,
    ImmutableArray<string> NotHosts);

/// <summary>A <c>when</c> condition; <see cref="Key"/> is one of <see cref="ConditionKeys"/>.</summary>
internal sealed record RuleCondition(string Key, string? HeaderName, ImmutableArray<string> Values, ImmutableArray<string> NotValues);

internal static class ConditionKeys
{
    public const string RequestHeaders = "request.headers";
    public const string SourcePrincipal = "source.principal";
    public const string SourceNamespace = "source.namespace";
}

internal static class SecurityScopes
{
    /// <summary>Istio's default root namespace: policies here without a selector are mesh-wide.</summary>
    public const string DefaultRootNamespace = "istio-system";
}
