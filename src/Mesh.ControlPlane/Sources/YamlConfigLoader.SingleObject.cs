using System.Collections.Immutable;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Sources;

/// <summary>One object validated on its own, for the admission webhook.</summary>
internal static partial class YamlConfigLoader
{
    /// <summary>
    /// Whether the loader reads this kind of the given API group (the kinds the admission webhook validates; any other kind
    /// passes it unchecked).
    /// </summary>
    public static bool IsReadKind(string? group, string? kind) => group switch
    {
        "networking.istio.io" => kind is "ServiceEntry" or "WorkloadEntry" or "DestinationRule" or "VirtualService" or SidecarKind,
        SecurityGroup => SecurityKinds.Contains(kind, StringComparer.Ordinal),
        MeshPolicyGroup => kind == RateLimitKind,
        _ => false,
    };

    /// <summary>
    /// Every rule <c>Load</c> applies to one resource on its own (the same
    /// parse, the same messages with field paths), without the checks across resources: a host declared by some
    /// ServiceEntry, a subset defined by some DestinationRule, one VirtualService/DestinationRule per host, a rate-limit
    /// target that exists, duplicate security policies or namespace-wide Sidecars. Objects reach the API server in any
    /// order (a VirtualService may come before its ServiceEntry), so those are reported by the source that reads them all.
    /// </summary>
    /// <param name="location">Where the text came from, used as the file of each error (e.g. <c>VirtualService shop/reviews</c>).</param>
    /// <param name="text">One YAML or JSON document.</param>
    public static ImmutableArray<ConfigError> ValidateObject(string location, string text)
    {
        ArgumentNullException.ThrowIfNull(location);
        ArgumentNullException.ThrowIfNull(text);
        return [.. ParseFile(location, text).Errors];
    }
}
