using System.Collections.Immutable;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>
/// Weighted round robin: endpoints appear in a fixed schedule in proportion to their weight
/// (interleaved, so weight 2:1 gives A B A A B A …), and each pick takes the next available one.
/// </summary>
internal sealed class RoundRobinLoadBalancer : ILoadBalancer
{
    private const int MaxScheduleLength = 1024;
    private readonly MeshEndpoint[] _schedule;
    private int _next = -1;

    public RoundRobinLoadBalancer(ImmutableArray<MeshEndpoint> endpoints)
    {
        _schedule = BuildSchedule(endpoints);
    }

    public string Name => "ROUND_ROBIN";

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid)
    {
        var schedule = _schedule;
        var count = schedule.Length;
        if (count == 0)
        {
            return null;
        }

        var start = (int)((uint)Interlocked.Increment(ref _next) % (uint)count);
        MeshEndpoint? fallback = null;
        for (var i = 0; i < count; i++)
        {
            var candidate = schedule[(start + i) % count];
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

        return fallback ?? Panic(schedule, start, avoid);
    }

    internal static MeshEndpoint Panic(MeshEndpoint[] endpoints, int start, MeshEndpoint? avoid)
    {
        var candidate = endpoints[start % endpoints.Length];
        return ReferenceEquals(candidate, avoid) && endpoints.Length > 1
            ? endpoints[(start + 1) % endpoints.Length]
            : candidate;
    }

    private static MeshEndpoint[] BuildSchedule(ImmutableArray<MeshEndpoint> endpoints)
    {
        if (endpoints.IsDefaultOrEmpty)
        {
            return [];
        }

        var divisor = 0;
        var total = 0L;
        foreach (var endpoint in endpoints)
        {
            divisor = Gcd(divisor, endpoint.Weight);
            total += endpoint.Weight;
        }

        total /= divisor;
        if (total == endpoints.Length)
        {
            // Equal weights: the smooth schedule is the endpoints in order. Built by the loop below it would cost
            // endpoints² steps (minutes for a service of 100,000 endpoints, on every push that touches it).
            return [.. endpoints];
        }

        var scale = total > MaxScheduleLength ? (double)MaxScheduleLength / total : 1d;

        // Smooth weighted round robin (as in nginx): interleaves heavy endpoints instead of bunching them.
        var weights = endpoints.Select(e => Math.Max(1, (int)(e.Weight / divisor * scale))).ToArray();
        var length = weights.Sum();
        var current = new int[weights.Length];
        var schedule = new MeshEndpoint[length];
        for (var slot = 0; slot < length; slot++)
        {
            var best = 0;
            for (var i = 0; i < weights.Length; i++)
            {
                current[i] += weights[i];
                if (current[i] > current[best])
                {
                    best = i;
                }
            }

            current[best] -= length;
            schedule[slot] = endpoints[best];
        }

        return schedule;
    }

    private static int Gcd(int a, int b)
    {
        while (b != 0)
        {
            (a, b) = (b, a % b);
        }

        return a;
    }
}
