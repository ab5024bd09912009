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
/// app run between the loop and the routing handler, the loop attaches it to the request's
/// <see cref="HttpRequestMessage.Options"/> instead (<see cref="Attach"/>), which a hedging or retry handler's request
/// snapshot copies to each attempt's clone; the routing handler records there, and stamps each attempt's own request with
/// its endpoint, so that the answer that won names the endpoint that gave it (<see cref="Settle"/>), not the last one
/// routed to: with the app's hedging, attempts run side by side.
/// </remarks>
internal class AttemptTrail
{
    private static readonly HttpRequestOptionsKey<AttemptTrail> Key = new("Mesh.AttemptTrail");
    private static readonly HttpRequestOptionsKey<RoutedAttempt> AttemptKey = new("Mesh.RoutedAttempt");
    private static volatile bool s_anyAttached;

    /// <summary>Gets the cluster of the last attempt that was routed.</summary>
    public MeshCluster? Cluster { get; private set; }

    /// <summary>Gets the endpoint of the last attempt that was routed to one (after <see cref="Settle"/>: of the attempt that answered).</summary>
    public MeshEndpoint? Endpoint { get; private set; }

    private int _attempts;

    /// <summary>Gets the number of attempts (Envoy's <c>UPSTREAM_REQUEST_ATTEMPT_COUNT</c>).</summary>
    public int Attempts => Volatile.Read(ref _attempts);

    /// <summary>The trail attached to <paramref name="request"/> (or to the request it was cloned from), if any; one read of a flag while none ever was.</summary>
    public static AttemptTrail? Of(HttpRequestMessage request) =>
        s_anyAttached && request.Options.TryGetValue(Key, out var trail) ? trail : null;

    /// <summary>Attaches <paramref name="trail"/> to <paramref name="request"/>, for a routing handler the trail cannot reach directly.</summary>
    public static void Attach(HttpRequestMessage request, AttemptTrail trail)
    {
        s_anyAttached = true;
        request.Options.Set(Key, trail);
    }

    /// <summary>
    /// Records an attempt routed from a trail attached to <paramref name="attempt"/>, and stamps that request with its cluster
    /// and endpoint: the app's hedged attempts record side by side, and the one that answers settles the trail.
    /// </summary>
    public void Record(HttpRequestMessage attempt, MeshCluster? cluster, MeshEndpoint? endpoint)
    {
        Record(cluster, endpoint);
        if (endpoint is not null)
        {
            attempt.Options.Set(AttemptKey, new RoutedAttempt(cluster, endpoint));
        }
    }

    /// <summary>
    /// Takes the cluster and endpoint of the attempt that gave <paramref name="response"/>, when its request was stamped: the
    /// winner of the app's hedged attempts may not be the last attempt routed.
    /// </summary>
    public void Settle(HttpResponseMessage response)
    {
        if (response.RequestMessage is { } answered && answered.Options.TryGetValue(AttemptKey, out var routed))
        {
            (Cluster, Endpoint) = (routed.Cluster ?? Cluster, routed.Endpoint);
        }
    }

    /// <summary>Records an attempt: its cluster is known once a route picked it, even when no endpoint could be (as Envoy).</summary>
    public void Record(MeshCluster? cluster, MeshEndpoint? endpoint)
    {
        Interlocked.Increment(ref _attempts);
        Cluster = cluster ?? Cluster;
        Endpoint = endpoint;
    }

    /// <summary>Forgets every attempt, for reuse.</summary>
    public void Reset()
    {
        _attempts = 0;
        Cluster = null;
        Endpoint = null;
    }

    private sealed record RoutedAttempt(MeshCluster? Cluster, MeshEndpoint Endpoint);
}
