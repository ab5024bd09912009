namespace Mesh.Client.Http;

/// <summary>
/// Starts an <see cref="AttemptGroup"/> for each request of a client that has its own Microsoft.Extensions.Http.Resilience
/// pipeline; it sits right outside that pipeline, so every attempt the pipeline sends (retries resend the request,
/// hedging sends clones that copy its options) carries the group to <see cref="MeshHttpHandler"/>. Clients without an
/// app pipeline never get this handler: their requests allocate nothing for it.
/// </summary>
internal sealed class MeshAttemptGroupHandler : DelegatingHandler
{
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        Start(request);
        return base.SendAsync(request, cancellationToken);
    }

    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        Start(request);
        return base.Send(request, cancellationToken);
    }

    private static void Start(HttpRequestMessage request)
    {
        if (!request.Options.TryGetValue(AttemptGroup.Key, out _))
        {
            request.Options.Set(AttemptGroup.Key, new AttemptGroup());
        }
    }
}
