namespace Mesh.Client.Discovery;

/// <summary>Per-cluster endpoint picking policy, from CDS (Istio DestinationRule <c>loadBalancer.simple</c>).</summary>
internal enum LoadBalancingPolicy
{
    RoundRobin,

    /// <summary>Power of two choices over in-flight requests.</summary>
    LeastRequest,

    /// <summary>Weighted random pick.</summary>
    Random,

    /// <summary>Consistent hash over a ring (Ketama), keyed by the route's <c>hash_policy</c>.</summary>
    RingHash,
}
