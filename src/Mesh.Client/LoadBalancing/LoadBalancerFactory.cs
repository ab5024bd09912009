using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

internal static class LoadBalancerFactory
{
    public static ILoadBalancer Create(LoadBalancingPolicy policy, ImmutableArray<MeshEndpoint> endpoints, Func<int, int>? random = null) =>
        policy switch
        {
            LoadBalancingPolicy.LeastRequest => new LeastRequestLoadBalancer(endpoints, random ?? Random.Shared.Next),
            _ => new RoundRobinLoadBalancer(endpoints),
        };
}
