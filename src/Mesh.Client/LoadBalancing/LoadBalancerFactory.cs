using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

internal static class LoadBalancerFactory
{
    public static ILoadBalancer Create(LoadBalancingPolicy policy, ImmutableArray<MeshEndpoint> endpoints, Func<int, int>? random = null, RingHashSettings? ringHash = null)
    {
        var name = LoadBalancerRegistry.NameOf(policy);
        var found = LoadBalancerRegistry.TryGet(name, out var registered) ? registered : null;
        if (found is null)
        {
            // The decoder only accepts registered names; this is a programming error, not bad config.
            throw new InvalidOperationException($"No load-balancing policy is registered as {name}.");
        }

        var pick = random ?? Random.Shared.Next;
        return PriorityLoadBalancer.IsNeeded(endpoints)
            ? new PriorityLoadBalancer(endpoints, level => found.Create(new LoadBalancerArgs(level, pick, ringHash)), pick)
            : found.Create(new LoadBalancerArgs(endpoints, pick, ringHash));
    }
}
