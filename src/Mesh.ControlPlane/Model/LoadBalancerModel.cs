using System.Collections.Immutable;

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

/// <summary>
/// DestinationRule <c>loadBalancer.localityLbSetting</c> as written. <paramref name="Enabled"/> null means unset (the
/// mesh default, on, as in Istio); empty lists are unset. At most one of <paramref name="Distribute"/> and
/// <paramref name="Failover"/> is set (Istio's validation).
/// </summary>
internal sealed record LocalityLbSettingModel(
    bool? Enabled,
    ImmutableArray<LocalityDistributeModel> Distribute,
    ImmutableArray<LocalityFailoverModel> Failover,
    ImmutableArray<string> FailoverPriority)
{
    /// <summary>Istio's mesh default (<c>MeshConfig.localityLbSetting: {enabled: true}</c>): failover by locality when outlier detection is set.</summary>
    public static readonly LocalityLbSettingModel MeshDefault = new(true, [], [], []);
}

/// <summary>
/// One <c>distribute[]</c> entry: clients whose locality matches <paramref name="From"/> (a locality, <c>*</c> allowed
/// at the end) send each <paramref name="To"/> locality pattern its weight in percent (the weights total 100).
/// </summary>
internal sealed record LocalityDistributeModel(string From, ImmutableArray<KeyValuePair<string, uint>> To);

/// <summary>One <c>failover[]</c> entry: clients in region <paramref name="From"/> fail over to region <paramref name="To"/> first.</summary>
internal sealed record LocalityFailoverModel(string From, string To);
