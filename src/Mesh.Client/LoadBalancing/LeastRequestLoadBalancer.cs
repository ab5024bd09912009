using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>
/// Least request by the power of two choices: two random available endpoints, the one with fewer
/// in-flight requests per unit of weight wins (Envoy's LEAST_REQUEST with choice_count 2).
/// </summary>
internal sealed class LeastRequestLoadBalancer : ILoadBalancer
{
    private readonly MeshEndpoint[] _endpoints;
    private readonly Func<int, int> _random;

    public LeastRequestLoadBalancer(ImmutableArray<MeshEndpoint> endpoints, Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(random);
        _endpoints = endpoints.IsDefaultOrEmpty ? [] : [.. endpoints];
        _random = random;
    }

    public string Name => "LEAST_REQUEST";

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid)
    {
        var endpoints = _endpoints;
        if (endpoints.Length == 0)
        {
            return null;
        }

        var first = RandomAvailable(endpoints, now, avoid, exclude: null);
        if (first is null)
        {
            // Only the endpoint to avoid is left, or nothing is available (panic mode).
            return avoid is not null && avoid.IsAvailable(now) && Array.IndexOf(endpoints, avoid) >= 0
                ? avoid
                : RoundRobinLoadBalancer.Panic(endpoints, _random(endpoints.Length), avoid);
        }

        var second = RandomAvailable(endpoints, now, avoid, exclude: first);
        if (second is null)
        {
            return first;
        }

        // Compare active/weight without dividing: a.active * b.weight vs b.active * a.weight.
        var firstLoad = (long)first.ActiveRequests * second.Weight;
        var secondLoad = (long)second.ActiveRequests * first.Weight;
        return secondLoad < firstLoad ? second : first;
    }

    private MeshEndpoint? RandomAvailable(MeshEndpoint[] endpoints, long now, MeshEndpoint? avoid, MeshEndpoint? exclude)
    {
        // Random probes find an available endpoint quickly when most are; a scan from a random
        // offset settles the rest without bias toward index 0.
        var count = endpoints.Length;
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var candidate = endpoints[_random(count)];
            if (IsCandidate(candidate, now, avoid, exclude))
            {
                return candidate;
            }
        }

        var start = _random(count);
        for (var i = 0; i < count; i++)
        {
            var candidate = endpoints[(start + i) % count];
            if (IsCandidate(candidate, now, avoid, exclude))
            {
                return candidate;
            }
        }

        return null;
    }

    private static bool IsCandidate(MeshEndpoint candidate, long now, MeshEndpoint? avoid, MeshEndpoint? exclude) =>
        candidate.IsAvailable(now) && !ReferenceEquals(candidate, avoid) && !ReferenceEquals(candidate, exclude);
}
