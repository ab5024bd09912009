namespace Mesh.Client.Discovery;

/// <summary>Per-cluster endpoint picking policy, from CDS (Istio DestinationRule <c>loadBalancer.simple</c>).</summary>
internal enum LoadBalancingPolicy
{
    RoundRobin,

    /// <summary>Power of two choices over in-flight requests.</summary>
    LeastRequest,
}
