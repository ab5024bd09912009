using Mesh.Client.Routing;
using Polly;

namespace Mesh.Client.Resilience;

/// <summary>
/// The outermost handler of mesh-enabled clients: runs requests to mesh services through their service's pipeline
/// (executed directly with a pooled context and no per-request closure); every attempt goes down to
/// <see cref="Http.MeshHttpHandler"/>, which routes again. Other requests pass straight through.
/// </summary>
internal sealed class MeshResilienceHandler : DelegatingHandler
{
    private readonly MeshRouter _router;
    private readonly MeshResiliencePipelines _pipelines;

    public MeshResilienceHandler(MeshRouter router, MeshResiliencePipelines pipelines)
    {
        ArgumentNullException.ThrowIfNull(router);
        ArgumentNullException.ThrowIfNull(pipelines);
        _router = router;
        _pipelines = pipelines;
    }

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var uri = request.RequestUri;
        return uri is { IsAbsoluteUri: true } && _router.Snapshot.TryGetService(uri.IdnHost, uri.Port, uri.IsDefaultPort, out var service)
            ? SendThroughPipelineAsync(_pipelines.Get(service!), request, cancellationToken)
            : base.SendAsync(request, cancellationToken);
    }

    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, cancellationToken).GetAwaiter().GetResult();

    private async Task<HttpResponseMessage> SendThroughPipelineAsync(
        ResiliencePipeline<HttpResponseMessage> pipeline,
        HttpRequestMessage request,
        CancellationToken cancellationToken)
    {
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        context.Properties.Set(MeshResiliencePipelines.RequestKey, request);
        try
        {
            var outcome = await pipeline.ExecuteOutcomeAsync(
                static async (context, state) =>
                {
                    try
                    {
                        var response = await state.Handler.SendAttemptAsync(state.Request, context.CancellationToken).ConfigureAwait(false);
                        return Outcome.FromResult(response);
                    }
                    catch (Exception exception)
                    {
                        return Outcome.FromException<HttpResponseMessage>(exception);
                    }
                },
                context,
                (Handler: this, Request: request)).ConfigureAwait(false);
            outcome.ThrowIfException();
            return outcome.Result!;
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private Task<HttpResponseMessage> SendAttemptAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
        base.SendAsync(request, cancellationToken);
}
