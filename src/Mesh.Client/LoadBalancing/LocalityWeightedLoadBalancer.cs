using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>
/// Locality-weighted picking within one priority, as Envoy's locality-weighted LB and gRPC's weighted target: pick a locality
/// by its EDS <c>load_balancing_weight</c> scaled by its health (available share × the overprovisioning factor 1.4, capped at
/// 100 %, so a locality whose endpoints are ejected takes nothing), then an endpoint within it by the cluster's policy.
/// Used only when the weights are not already proportional to the localities' endpoint weights (DestinationRule
/// <c>distribute</c>); otherwise a flat pick over all endpoints gives the same split for less work.
/// </summary>
internal sealed class LocalityWeightedLoadBalancer : ILoadBalancer
{
    private readonly MeshEndpoint[][] _localities;
    private readonly int[] _weights;
    private readonly ILoadBalancer[] _balancers;
    private readonly Func<int, int> _random;

    public LocalityWeightedLoadBalancer(ImmutableArray<MeshEndpoint> endpoints, Func<ImmutableArray<MeshEndpoint>, ILoadBalancer> create, Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(create);
        ArgumentNullException.ThrowIfNull(random);
        var groups = endpoints.GroupBy(e => e.Locality, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal).ToArray();
        _localities = [.. groups.Select(g => g.ToArray())];
        _weights = [.. groups.Select(g => g.First().LocalityWeight)];
        _balancers = [.. groups.Select(g => create([.. g]))];
        Name = _balancers.Length > 0 ? _balancers[0].Name : "ROUND_ROBIN";
        _random = random;
    }

    public string Name { get; }

    /// <summary>
    /// Gets whether <paramref name="endpoints"/> (one priority) span several localities whose weights differ from the sum of
    /// their endpoints' weights in proportion, so that a flat pick would split traffic differently from the locality weights.
    /// </summary>
    public static bool IsNeeded(ImmutableArray<MeshEndpoint> endpoints)
    {
        if (endpoints.IsDefaultOrEmpty)
        {
            return false;
        }

        // Compare weight / endpointWeightSum across localities without dividing: w1 * s2 == w2 * s1.
        string? firstLocality = null;
        long firstWeight = 0, firstSum = 0;
        foreach (var group in endpoints.GroupBy(e => e.Locality, StringComparer.Ordinal))
        {
            long sum = group.Sum(e => (long)e.Weight);
            long weight = group.First().LocalityWeight;
            if (firstLocality is null)
            {
                (firstLocality, firstWeight, firstSum) = (group.Key, weight, sum);
                continue;
            }

            if (weight * firstSum != firstWeight * sum)
            {
                return true;
            }
        }

        return false;
    }

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid) => _balancers.Length == 0 ? null : _balancers[ChooseLocality(now, hash: null)].Pick(now, avoid);

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid, ulong hash) =>
        _balancers.Length == 0 ? null : _balancers[ChooseLocality(now, hash)].Pick(now, avoid, hash);

    /// <summary>
    /// The locality a ticket in [0, total effective weight) falls in: the request hash modulo the total when there is one
    /// (so a hash keeps its locality), else a random draw; allocation-free.
    /// </summary>
    internal int ChooseLocality(long now, ulong? hash)
    {
        var localities = _localities;
        Span<long> effective = localities.Length <= 16 ? stackalloc long[localities.Length] : new long[localities.Length];
        long total = 0;
        for (var i = 0; i < localities.Length; i++)
        {
            var available = 0;
            foreach (var endpoint in localities[i])
            {
                if (endpoint.IsAvailable(now))
                {
                    available++;
                }
            }

            var health = Math.Min(100L, (long)PriorityLoadBalancer.OverprovisioningFactor * available / localities[i].Length);
            effective[i] = _weights[i] * health;
            total += effective[i];
        }

        if (total == 0)
        {
            // Nothing available in any locality: by configured weight (the balancer within then picks in panic mode).
            for (var i = 0; i < localities.Length; i++)
            {
                effective[i] = _weights[i];
                total += effective[i];
            }
        }

        var range = (int)Math.Min(total, int.MaxValue);
        long draw = hash is { } h ? (long)(h % (ulong)range) : _random(range);
        for (var i = 0; i < localities.Length; i++)
        {
            if (draw < effective[i])
            {
                return i;
            }

            draw -= effective[i];
        }

        return localities.Length - 1;
    }
}
