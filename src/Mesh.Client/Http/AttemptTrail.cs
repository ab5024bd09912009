using System.Runtime.CompilerServices;
using Mesh.Client.Discovery;

namespace Mesh.Client.Http;

/// <summary>
/// Where a request's attempts went, the last one winning (Envoy's upstream host and cluster): what its Istio metrics
/// report as the destination workload and its access log as the upstream. The routing handler records each attempt it
/// routes into the trail the request carries.
/// </summary>
/// <remarks>
/// A trail reaches the routing handler directly when the mesh's own resilience loop sends the attempts (the usual
/// chain: nothing allocated, the trail itself pooled by the handler that measures the request). When handlers of the
/// app run between the loop and the routing handler, the loop attaches it to the request instead (<see cref="Attach"/>),
/// and the routing handler finds it there.
/// </remarks>
internal class AttemptTrail
{
    private static readonly ConditionalWeakTable<HttpRequestMessage, AttemptTrail> Attached = [];
    private static volatile bool s_anyAttached;

    /// <summary>Gets the cluster of the last attempt that was routed.</summary>
    public MeshCluster? Cluster { get; private set; }

    /// <summary>Gets the endpoint of the last attempt that was routed to one.</summary>
    public MeshEndpoint? Endpoint { get; private set; }

    /// <summary>Gets the number of attempts (Envoy's <c>UPSTREAM_REQUEST_ATTEMPT_COUNT</c>).</summary>
    public int Attempts { get; private set; }

    /// <summary>The trail attached to <paramref name="request"/>, if any (one read of a flag while none ever was).</summary>
    public static AttemptTrail? Of(HttpRequestMessage request) =>
        s_anyAttached && Attached.TryGetValue(request, out var trail) ? trail : null;

    /// <summary>Attaches <paramref name="trail"/> to <paramref name="request"/>, for a routing handler the trail cannot reach directly.</summary>
    public static void Attach(HttpRequestMessage request, AttemptTrail trail)
    {
        s_anyAttached = true;
        Attached.AddOrUpdate(request, trail);
    }

    /// <summary>Records an attempt: its cluster is known once a route picked it, even when no endpoint could be (as Envoy).</summary>
    public void Record(MeshCluster? cluster, MeshEndpoint? endpoint)
    {
        Attempts++;
        Cluster = cluster ?? Cluster;
        Endpoint = endpoint;
    }

    /// <summary>Forgets every attempt, for reuse.</summary>
    public void Reset()
    {
        Attempts = 0;
        Cluster = null;
        Endpoint = null;
    }
}
