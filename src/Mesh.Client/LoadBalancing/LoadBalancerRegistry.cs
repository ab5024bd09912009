using System.Collections.Frozen;
using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>What a policy gets to build a balancer for one cluster's endpoints (one snapshot).</summary>
internal sealed record LoadBalancerArgs(ImmutableArray<MeshEndpoint> Endpoints, Func<int, int> Random, RingHashSettings? RingHash);

/// <summary>A load-balancing policy by its xDS name (<c>ROUND_ROBIN</c>, <c>RING_HASH</c>, …); builds one balancer per cluster and snapshot.</summary>
internal interface ILoadBalancerPolicy
{
    /// <summary>Gets the Envoy <c>lb_policy</c> name this policy implements.</summary>
    string Name { get; }

    ILoadBalancer Create(LoadBalancerArgs args);
}

/// <summary>The policies this client implements, looked up by name: adding one is a registration, not another switch arm.</summary>
internal static class LoadBalancerRegistry
{
    private static readonly FrozenDictionary<string, ILoadBalancerPolicy> Policies = new ILoadBalancerPolicy[]
    {
        new Policy("ROUND_ROBIN", a => new RoundRobinLoadBalancer(a.Endpoints)),
        new Policy("LEAST_REQUEST", a => new LeastRequestLoadBalancer(a.Endpoints, a.Random)),
        new Policy("RANDOM", a => new RandomLoadBalancer(a.Endpoints, a.Random)),
        new Policy("RING_HASH", a => new RingHashLoadBalancer(a.Endpoints, a.RingHash ?? RingHashSettings.Default, a.Random)),
    }.ToFrozenDictionary(p => p.Name, StringComparer.Ordinal);

    /// <summary>Gets the names of every registered policy, for error messages.</summary>
    public static IEnumerable<string> Names => Policies.Keys;

    public static bool TryGet(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ILoadBalancerPolicy? policy) =>
        Policies.TryGetValue(name, out policy);

    /// <summary>Gets the registered name of <paramref name="policy"/> (the enum a cluster carries).</summary>
    public static string NameOf(LoadBalancingPolicy policy) => policy switch
    {
        LoadBalancingPolicy.LeastRequest => "LEAST_REQUEST",
        LoadBalancingPolicy.Random => "RANDOM",
        LoadBalancingPolicy.RingHash => "RING_HASH",
        _ => "ROUND_ROBIN",
    };

    private sealed class Policy(string name, Func<LoadBalancerArgs, ILoadBalancer> create) : ILoadBalancerPolicy
    {
        public string Name { get; } = name;

        public ILoadBalancer Create(LoadBalancerArgs args) => create(args);
    }
}
