namespace Mesh.ControlPlane.Model;

/// <summary>What a DestinationRule <c>consistentHash</c> hashes on.</summary>
internal enum HashKeyKind
{
    Header,
    Cookie,
    QueryParameter,
    SourceIp,
}

/// <summary>
/// DestinationRule <c>loadBalancer.consistentHash</c>: the hash key (<paramref name="Name"/> is the header, cookie or query
/// parameter name; empty for source IP), the cookie's path and ttl, and the ring size (<c>ringHash.minimumRingSize</c>) or the
/// Maglev table size; both null means Istio's default, RING_HASH with 1024 points.
/// </summary>
internal sealed record ConsistentHashModel(
    HashKeyKind Kind,
    string Name,
    ulong? MinimumRingSize = null,
    ulong? MaglevTableSize = null,
    string? CookiePath = null,
    TimeSpan? CookieTtl = null);
