using System.Collections.Immutable;

namespace Mesh.ControlPlane.Model;

/// <summary>
/// An <c>HTTPLocalRateLimitPolicy</c> (<c>policy.mesh-dotnet.io/v1alpha1</c>, Linkerd's kind and fields): local token
/// buckets on the inbound ports of every workload of the ServiceEntry <see cref="Target"/> (in the policy's namespace).
/// Rates are requests per second; null means no such limit.
/// </summary>
internal sealed record LocalRateLimitPolicyModel(
    string Namespace,
    string Name,
    string Target,
    uint? Total,
    uint? Identity,
    ImmutableArray<RateLimitOverrideModel> Overrides,
    string File,
    int Line);

/// <summary>A per-identity limit that replaces <see cref="LocalRateLimitPolicyModel.Identity"/> for the listed service accounts.</summary>
internal sealed record RateLimitOverrideModel(uint RequestsPerSecond, ImmutableArray<ServiceAccountRef> ClientRefs);

internal sealed record ServiceAccountRef(string Namespace, string Name);
