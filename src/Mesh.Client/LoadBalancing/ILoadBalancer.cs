using Mesh.Client.Discovery;

namespace Mesh.Client.LoadBalancing;

/// <summary>Picks an endpoint of one cluster for one request attempt. Implementations allocate nothing per pick.</summary>
internal interface ILoadBalancer
{
    /// <summary>Gets the policy name, for logs and the config dump.</summary>
    string Name { get; }

    /// <summary>
    /// Picks an endpoint that is healthy and not ejected at <paramref name="now"/>, other than
    /// <paramref name="avoid"/> when there is a choice. When no endpoint is available the balancer
    /// is in panic mode and picks among all endpoints (Envoy's panic threshold), so a whole cluster
    /// wrongly marked down still gets traffic. Returns <see langword="null"/> only for a cluster without endpoints.
    /// </summary>
    MeshEndpoint? Pick(long now, MeshEndpoint? avoid);

    /// <summary>
    /// Picks for a request whose route computed <paramref name="hash"/> from its <c>hash_policy</c>. Only consistent-hash
    /// policies use it; the others ignore the hash, as Envoy does.
    /// </summary>
    MeshEndpoint? Pick(long now, MeshEndpoint? avoid, ulong hash) => Pick(now, avoid);
}
