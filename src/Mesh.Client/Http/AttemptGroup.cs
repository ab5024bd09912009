using Mesh.Client.Discovery;

namespace Mesh.Client.Http;

/// <summary>
/// The attempts of one logical request that an app's resilience pipeline sends as separate request messages: the
/// endpoints they took, so that each attempt goes to an endpoint no sibling took (Envoy's <c>previous_hosts</c> retry
/// host predicate, applied to hedged attempts too). Microsoft.Extensions.Http.Resilience's hedging clones the request
/// for each hedged attempt from a snapshot that copies the request's <see cref="HttpRequestMessage.Options"/>, so the
/// group that <see cref="MeshAttemptGroupHandler"/> puts there before the app's pipeline is shared by all its attempts.
/// </summary>
internal sealed class AttemptGroup
{
    /// <summary>The key of the group in <see cref="HttpRequestMessage.Options"/>.</summary>
    public static readonly HttpRequestOptionsKey<AttemptGroup> Key = new("Mesh.AttemptGroup");

    // Endpoints by authority (address:port), not by instance: subset clusters of one service hold separate instances
    // for the same server, and attempts must land on distinct servers.
    private readonly List<string> _taken = new(4);

    /// <summary>Gets the number of endpoints the group's attempts took.</summary>
    public int Count
    {
        get
        {
            lock (_taken)
            {
                return _taken.Count;
            }
        }
    }

    /// <summary>Gets the group <paramref name="request"/> belongs to, if its client has an app resilience pipeline.</summary>
    public static AttemptGroup? Of(HttpRequestMessage request) =>
        request.Options.TryGetValue(Key, out var group) ? group : null;

    /// <summary>Gets whether an attempt of the group already took <paramref name="endpoint"/>.</summary>
    public bool IsTaken(MeshEndpoint endpoint)
    {
        lock (_taken)
        {
            return _taken.Contains(endpoint.Authority);
        }
    }

    /// <summary>
    /// Takes an endpoint of <paramref name="cluster"/> for one attempt: <paramref name="picked"/> (the balancer's pick)
    /// when no sibling took it; else the balancer's pick steered off it; else the first endpoint in rotation that no
    /// sibling took, from a random start; else, every endpoint in rotation being taken, <paramref name="picked"/>.
    /// </summary>
    public MeshEndpoint Take(MeshCluster cluster, MeshEndpoint picked, long now, long timestampFrequency)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        ArgumentNullException.ThrowIfNull(picked);
        if (TryTake(picked))
        {
            return picked;
        }

        // The balancer again, avoiding the taken pick: keeps its policy and weights (a second attempt on round robin or
        // least request gets its next choice).
        if (cluster.PickEndpoint(now, timestampFrequency, avoid: picked) is { } again && again.IsAvailable(now) && TryTake(again))
        {
            return again;
        }

        var endpoints = cluster.Endpoints;
        var start = endpoints.Length > 1 ? Random.Shared.Next(endpoints.Length) : 0;
        for (var i = 0; i < endpoints.Length; i++)
        {
            var candidate = endpoints[(start + i) % endpoints.Length];
            if (candidate.IsAvailable(now) && TryTake(candidate))
            {
                return candidate;
            }
        }

        // Every endpoint in rotation is taken: any endpoint will do, the balancer's pick as it was.
        return picked;
    }

    private bool TryTake(MeshEndpoint endpoint)
    {
        lock (_taken)
        {
            if (_taken.Contains(endpoint.Authority))
            {
                return false;
            }

            _taken.Add(endpoint.Authority);
            return true;
        }
    }
}
