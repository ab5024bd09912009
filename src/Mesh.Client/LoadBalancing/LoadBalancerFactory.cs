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
        ILoadBalancer Leaf(ImmutableArray<MeshEndpoint> subset) => found.Create(new LoadBalancerArgs(subset, pick, ringHash));

        // Per priority, localities by weight when their weights say something the endpoint weights do not (distribute).
        ILoadBalancer Level(ImmutableArray<MeshEndpoint> level) =>
            LocalityWeightedLoadBalancer.IsNeeded(level) ? new LocalityWeightedLoadBalancer(level, Leaf, pick) : Leaf(level);

        return PriorityLoadBalancer.IsNeeded(endpoints) ? new PriorityLoadBalancer(endpoints, Level, pick) : Level(endpoints);
    }
}
