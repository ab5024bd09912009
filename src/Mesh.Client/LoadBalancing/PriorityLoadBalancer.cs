using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>
/// EDS priorities as Envoy spreads load over them: each level's health is its available share × the overprovisioning factor
/// 1.4 (capped at 100 %); level 0 takes up to its health, the next levels the rest in order, scaled up when the levels
/// together are under 100 % healthy. A level whose endpoints are all down takes nothing, so traffic fails over to the next
/// one; when no level has an available endpoint, level 0 is in panic mode (its balancer picks among all). Each level has
/// its own balancer of the cluster's policy; a request hash picks the level as Envoy does (hash mod 100).
/// </summary>
internal sealed class PriorityLoadBalancer : ILoadBalancer
{
    /// <summary>Envoy's default <c>overprovisioning_factor</c>, 140 (percent).</summary>
    internal const int OverprovisioningFactor = 140;

    private readonly MeshEndpoint[][] _levels;
    private readonly ILoadBalancer[] _balancers;
    private readonly Func<int, int> _random;

    public PriorityLoadBalancer(ImmutableArray<MeshEndpoint> endpoints, Func<ImmutableArray<MeshEndpoint>, ILoadBalancer> create, Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(create);
        ArgumentNullException.ThrowIfNull(random);
        var groups = endpoints.GroupBy(e => e.Priority).OrderBy(g => g.Key).ToArray();
        _levels = groups.Select(g => g.ToArray()).ToArray();
        _balancers = groups.Select(g => create([.. g])).ToArray();
        Name = _balancers.Length > 0 ? _balancers[0].Name : "ROUND_ROBIN";
        _random = random;
    }

    public string Name { get; }

    /// <summary>Gets whether the endpoints span more than one priority, so this wrapper is needed at all.</summary>
    public static bool IsNeeded(ImmutableArray<MeshEndpoint> endpoints)
    {
        if (endpoints.IsDefaultOrEmpty)
        {
            return false;
        }

        var first = endpoints[0].Priority;
        foreach (var endpoint in endpoints)
        {
            if (endpoint.Priority != first)
            {
                return true;
            }
        }

        return false;
    }

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid) => _balancers.Length == 0 ? null : _balancers[ChooseLevel(now, _random(100))].Pick(now, avoid);

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid, ulong hash) =>
        _balancers.Length == 0 ? null : _balancers[ChooseLevel(now, (int)(hash % 100))].Pick(now, avoid, hash);

    /// <summary>The level a ticket in [0, 100) falls in, by Envoy's per-priority load; allocation-free.</summary>
    internal int ChooseLevel(long now, int ticket)
    {
        var levels = _levels;
        Span<int> health = levels.Length <= 16 ? stackalloc int[levels.Length] : new int[levels.Length];
        var total = 0;
        for (var i = 0; i < levels.Length; i++)
        {
            var available = 0;
            foreach (var endpoint in levels[i])
            {
                if (endpoint.IsAvailable(now))
                {
                    available++;
                }
            }

            health[i] = (int)Math.Min(100L, (long)OverprovisioningFactor * available / levels[i].Length);
            total += health[i];
        }

        if (total == 0)
        {
            // Nothing available anywhere: panic on the first level, as Envoy does.
            return 0;
        }

        var normalized = Math.Min(total, 100);
        var remaining = 100;
        for (var i = 0; i < levels.Length; i++)
        {
            var load = Math.Min(remaining, health[i] * 100 / normalized);
            if (ticket < load)
            {
                return i;
            }

            ticket -= load;
            remaining -= load;
        }

        // Rounding left a few percent unassigned: the last level with any health takes them.
        for (var i = levels.Length - 1; i >= 0; i--)
        {
            if (health[i] > 0)
            {
                return i;
            }
        }

        return 0;
    }
}
