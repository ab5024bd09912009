using System.Net;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Outbound;
using Mesh.Sidecar.Tests.Tcp;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Sidecar.Tests.Outbound;

/// <summary>Requests passed through to hosts outside the mesh are in Istio's source metrics as PassthroughCluster.</summary>
public sealed class PassthroughMetricsHandlerTests
{
    [Fact]
    public async Task SendAsync_Answered_CountedAsPassthroughCluster_WithTheHost()
    {
        using var metrics = new TcpMetricsCapture("legacy", MeshMetrics.RequestsName);
        using var invoker = Invoker(metrics, new Answer(_ => Task.FromResult(new HttpResponseMessage(HttpStatusCode.Created))));

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://api.example.com:8080/pay"), CancellationToken.None);

        Assert.Equal(1, metrics.Sum(MeshMetrics.RequestsName));
        var labels = Assert.Single(metrics.Tags);
        Assert.Equal("source", labels["reporter"]);
        Assert.Equal("PassthroughCluster", labels["destination_service_name"]);
        Assert.Equal("api.example.com", labels["destination_service"]);
        Assert.Equal("201", labels["response_code"]);
        Assert.Equal("-", labels["response_flags"]);
    }

    [Fact]
    public async Task SendAsync_ConnectionRefused_Counted503UF_AndTheErrorGoesOn()
    {
        using var metrics = new TcpMetricsCapture("legacy", MeshMetrics.RequestsName);
        var refused = new HttpRequestException(HttpRequestError.ConnectionError, "refused");
        using var invoker = Invoker(metrics, new Answer(_ => Task.FromException<HttpResponseMessage>(refused)));

        var thrown = await Assert.ThrowsAsync<HttpRequestException>(() => invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://api.example.com/"), CancellationToken.None));

        Assert.Same(refused, thrown);
        var labels = Assert.Single(metrics.Tags);
        Assert.Equal("PassthroughCluster", labels["destination_service_name"]);
        Assert.Equal("503", labels["response_code"]);
        Assert.Equal("UF", labels["response_flags"]);
    }

    private static HttpMessageInvoker Invoker(TcpMetricsCapture metrics, HttpMessageHandler inner) =>
        new(new PassthroughMetricsHandler(metrics.Services.GetRequiredService<IstioRequestMetrics>(), TimeProvider.System) { InnerHandler = inner });

    private sealed class Answer(Func<HttpRequestMessage, Task<HttpResponseMessage>> answer) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) => answer(request);
    }
}
