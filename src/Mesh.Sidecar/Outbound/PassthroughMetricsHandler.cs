using Mesh.Client.Telemetry;

namespace Mesh.Sidecar.Outbound;

/// <summary>
/// The first handler of the outbound port's way out of the mesh (<c>Sidecar:PassthroughNonMeshHosts=true</c>): Mesh.Client's
/// routing hands it only requests for hosts that are no mesh service, each once (the mesh does not retry them), and it
/// records each as Istio's <c>PassthroughCluster</c> (reporter <c>source</c>), at its response headers as the mesh's own
/// HTTP requests are, or at its failure with the code and flag Envoy would report.
/// </summary>
internal sealed class PassthroughMetricsHandler(IstioRequestMetrics metrics, TimeProvider time) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!metrics.Enabled)
        {
            return await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }

        var host = request.RequestUri?.IdnHost ?? string.Empty;
        var start = time.GetTimestamp();
        try
        {
            var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
            metrics.RecordNonMesh(host, passedThrough: true, (int)response.StatusCode, ResponseFlags.None, time.GetElapsedTime(start).TotalMilliseconds, OutboundOutcome.RequestBytes(request), OutboundOutcome.ResponseBytes(response));
            return response;
        }
        catch (Exception exception)
        {
            var (code, flags) = OutboundOutcome.Classify(exception, cancellationToken);
            metrics.RecordNonMesh(host, passedThrough: true, code, flags, time.GetElapsedTime(start).TotalMilliseconds, OutboundOutcome.RequestBytes(request), 0);
            throw;
        }
    }
}
