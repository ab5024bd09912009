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
    ImmutableArray<string> NotNamespaces)
{
    /// <summary>Gets the JWT request principals (<c>iss/sub</c>, split at the last '/'), from RequestAuthentication.</summary>
    public ImmutableArray<string> RequestPrincipals { get; init; } = [];

    public ImmutableArray<string> NotRequestPrincipals { get; init; } = [];
}

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
internal sealed record RuleCondition(string Key, string? HeaderName, ImmutableArray<string> Values, ImmutableArray<string> NotValues)
{
    /// <summary>Gets the claim path of <c>request.auth.claims[a][b]</c> (here <c>["a", "b"]</c>); empty for other keys.</summary>
    public ImmutableArray<string> ClaimPath { get; init; } = [];
}

internal static class ConditionKeys
{
    public const string RequestHeaders = "request.headers";
    public const string SourcePrincipal = "source.principal";
    public const string SourceNamespace = "source.namespace";
    public const string RequestPrincipal = "request.auth.principal";
    public const string RequestAudiences = "request.auth.audiences";
    public const string RequestPresenter = "request.auth.presenter";
    public const string RequestClaims = "request.auth.claims";
}

/// <summary>
/// A RequestAuthentication. <see cref="Selector"/> null means namespace-wide (mesh-wide in the root namespace); all the
/// policies that select a workload merge (their rules add up), as in Istio.
/// </summary>
internal sealed record RequestAuthenticationModel(
    string Namespace,
    string Name,
    ImmutableSortedDictionary<string, string>? Selector,
    ImmutableArray<JwtRuleModel> JwtRules,
    string File,
    int Line);

/// <summary>One <c>jwtRules</c> entry; exactly one of <see cref="JwksUri"/> and <see cref="Jwks"/> is set.</summary>
internal sealed record JwtRuleModel(
    string Issuer,
    ImmutableArray<string> Audiences,
    Uri? JwksUri,
    string? Jwks,
    ImmutableArray<JwtHeaderLocation> FromHeaders,
    ImmutableArray<string> FromParams,
    bool ForwardOriginalToken,
    string? OutputPayloadToHeader,
    ImmutableArray<JwtClaimToHeader> OutputClaimToHeaders,
    ImmutableArray<string> SpaceDelimitedClaims);

internal sealed record JwtHeaderLocation(string Name, string Prefix);

internal sealed record JwtClaimToHeader(string Header, string Claim);

internal static class SecurityScopes
{
    /// <summary>Istio's default root namespace: policies here without a selector are mesh-wide.</summary>
    public const string DefaultRootNamespace = "istio-system";
}
