using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>Envoy's RANDOM: an available endpoint chosen at random in proportion to its weight.</summary>
internal sealed class RandomLoadBalancer : ILoadBalancer
{
    private readonly MeshEndpoint[] _endpoints;
    private readonly long[] _cumulative;
    private readonly Func<int, int> _random;

    public RandomLoadBalancer(ImmutableArray<MeshEndpoint> endpoints, Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(random);
        _endpoints = endpoints.IsDefaultOrEmpty ? [] : [.. endpoints];
        _cumulative = new long[_endpoints.Length];
        var total = 0L;
        for (var i = 0; i < _endpoints.Length; i++)
        {
            total += _endpoints[i].Weight;
            _cumulative[i] = total;
        }

        _random = random;
    }

    public string Name => "RANDOM";

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid)
    {
        var endpoints = _endpoints;
        if (endpoints.Length == 0)
        {
            return null;
        }

        var total = _cumulative[^1];
        var ticket = total <= int.MaxValue ? _random((int)total) : (long)((ulong)_random(int.MaxValue) * (ulong)total / int.MaxValue);
        var index = Array.BinarySearch(_cumulative, ticket + 1);
        index = index >= 0 ? index : ~index;

        // From the weighted draw, the first available endpoint forward; unavailable ones pass their share on.
        MeshEndpoint? fallback = null;
        for (var i = 0; i < endpoints.Length; i++)
        {
            var candidate = endpoints[(index + i) % endpoints.Length];
            if (!candidate.IsAvailable(now))
            {
                continue;
            }

            if (!ReferenceEquals(candidate, avoid))
            {
                return candidate;
            }

            fallback = candidate;
        }

        return fallback ?? RoundRobinLoadBalancer.Panic(endpoints, index, avoid);
    }
}
