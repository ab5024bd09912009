using System.Collections.Immutable;
using System.Globalization;
using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>CDS <c>ring_hash_lb_config</c>: ring size bounds (Envoy defaults 1024 and 8M); the hash is always xxHash64.</summary>
internal sealed record RingHashSettings(ulong MinimumRingSize, ulong MaximumRingSize)
{
    /// <summary>Envoy's (and gRPC's) largest accepted ring.</summary>
    public const ulong MaxRingSize = 8_388_608;

    public static RingHashSettings Default { get; } = new(1024, MaxRingSize);
}

/// <summary>
/// Envoy's RING_HASH (Ketama): each endpoint owns points <c>xxHash64("address:port_i")</c> on a 64-bit ring, in proportion to
/// its weight, with at least <see cref="RingHashSettings.MinimumRingSize"/> points in all. A request's hash goes to the first
/// point at or after it (wrapping), so a key stays on one endpoint while the endpoint set is unchanged, and removing an
/// endpoint moves only the keys it owned. An unavailable (ejected) or avoided endpoint passes its keys to the next distinct
/// endpoint on the ring, as a ring rebuilt without it would. A request without a hash key gets a random point, as in Envoy.
/// </summary>
internal sealed class RingHashLoadBalancer : ILoadBalancer
{
    private readonly ulong[] _hashes;
    private readonly MeshEndpoint[] _owners;
    private readonly MeshEndpoint[] _endpoints;
    private readonly Func<int, int> _random;

    public RingHashLoadBalancer(ImmutableArray<MeshEndpoint> endpoints, RingHashSettings settings, Func<int, int> random)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(random);
        _random = random;

        // Envoy builds the ring from the hosts EDS reports healthy; ejection is handled at pick time.
        var members = endpoints.IsDefaultOrEmpty ? [] : endpoints.Where(e => e.IsHealthy).ToArray();
        if (members.Length == 0)
        {
            members = endpoints.IsDefaultOrEmpty ? [] : [.. endpoints];
        }

        _endpoints = members;
        (_hashes, _owners) = BuildRing(members, settings);
    }

    public string Name => "RING_HASH";

    /// <summary>Gets the number of points on the ring (tests check the size bounds).</summary>
    internal int RingSize => _hashes.Length;

    /// <summary>Without a request hash (no key present): a random point, as Envoy does.</summary>
    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid) =>
        _hashes.Length == 0 ? null : PickAt(_random(_hashes.Length), now, avoid);

    public MeshEndpoint? Pick(long now, MeshEndpoint? avoid, ulong hash)
    {
        var hashes = _hashes;
        if (hashes.Length == 0)
        {
            return null;
        }

        // First point at or after the hash; past the last point wraps to the first.
        var index = Array.BinarySearch(hashes, hash);
        if (index < 0)
        {
            index = ~index;
        }
        else
        {
            // Equal points: the first of them, so the choice does not depend on the search path.
            while (index > 0 && hashes[index - 1] == hash)
            {
                index--;
            }
        }

        return PickAt(index == hashes.Length ? 0 : index, now, avoid);
    }

    private MeshEndpoint PickAt(int start, long now, MeshEndpoint? avoid)
    {
        var owners = _owners;
        MeshEndpoint? fallback = null;
        var limit = owners.Length;
        for (var i = 0; i < limit; i++)
        {
            var candidate = owners[(start + i) % owners.Length];
            if (!candidate.IsAvailable(now))
            {
                continue;
            }

            if (!ReferenceEquals(candidate, avoid))
            {
                return candidate;
            }

            fallback ??= candidate;
        }

        // Panic mode: every endpoint unavailable, the ring's own choice still spreads keys.
        return fallback ?? RoundRobinLoadBalancer.Panic(owners, start, avoid);
    }

    private static (ulong[] Hashes, MeshEndpoint[] Owners) BuildRing(MeshEndpoint[] endpoints, RingHashSettings settings)
    {
        if (endpoints.Length == 0)
        {
            return ([], []);
        }

        // Envoy ring_hash_lb.cc: scale so the lightest endpoint gets ceil(min_weight × min_ring_size) points, capped at max.
        double total = endpoints.Sum(e => (double)e.Weight);
        var minNormalized = endpoints.Min(e => e.Weight) / total;
        var scale = Math.Min(Math.Ceiling(minNormalized * settings.MinimumRingSize) / minNormalized, settings.MaximumRingSize);
        var ringSize = (int)Math.Ceiling(scale);
        var points = new List<(ulong Hash, MeshEndpoint Owner)>(ringSize);
        double current = 0, target = 0;
        Span<char> key = stackalloc char[300];
        foreach (var endpoint in endpoints)
        {
            target += scale * (endpoint.Weight / total);
            for (var i = 0; current < target; i++, current++)
            {
                // "address:port_i", as Envoy hashes each host's points (Authority brackets IPv6 as Envoy's asString does).
                if (!endpoint.Authority.AsSpan().TryCopyTo(key) || !key[endpoint.Authority.Length..].TryWrite(CultureInfo.InvariantCulture, $"_{i}", out var written))
                {
                    throw new InvalidOperationException($"Endpoint address {endpoint.Authority} is too long to hash.");
                }

                points.Add((XxHash64.HashUtf8(key[..(endpoint.Authority.Length + written)]), endpoint));
            }
        }

        // Stable for equal hashes (ties keep endpoint order), so every client builds the same ring.
        var ordered = points.Select((p, i) => (p.Hash, p.Owner, i)).OrderBy(p => p.Hash).ThenBy(p => p.i).ToArray();
        return (ordered.Select(p => p.Hash).ToArray(), ordered.Select(p => p.Owner).ToArray());
    }
}
