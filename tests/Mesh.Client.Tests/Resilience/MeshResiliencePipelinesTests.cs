using System.Net;
using System.Net.Sockets;
using Mesh.Client.Resilience;
using Polly;

namespace Mesh.Client.Tests.Resilience;

public sealed class MeshResiliencePipelinesTests
{
    private static readonly Outcome<HttpResponseMessage> ServerError = Outcome.FromResult(new HttpResponseMessage(HttpStatusCode.ServiceUnavailable));
    private static readonly Outcome<HttpResponseMessage> ConnectionRefused = Outcome.FromException<HttpResponseMessage>(
        new HttpRequestException(HttpRequestError.ConnectionError, "refused", new SocketException((int)SocketError.ConnectionRefused)));

    [Theory]
    [InlineData("GET", true)]
    [InlineData("HEAD", true)]
    [InlineData("OPTIONS", true)]
    [InlineData("TRACE", true)]
    [InlineData("PUT", true)]
    [InlineData("DELETE", true)]
    [InlineData("POST", false)]
    [InlineData("PATCH", false)]
    public void CanRetry_OnlyIdempotentMethods(string method, bool expected)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), "http://orders/");

        Assert.Equal(expected, MeshResiliencePipelines.CanRetry(request, ServerError));
    }

    [Fact]
    public void CanRetry_PostWithIdempotencyKey_IsRetried()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://orders/") { Content = new StringContent("x") };
        request.Headers.Add("Idempotency-Key", "abc");

        Assert.True(MeshResiliencePipelines.CanRetry(request, ServerError));
    }

    [Fact]
    public void CanRetry_BodyThatCannotBeReplayed_OnlyForConnectionFailures()
    {
        using var body = new MemoryStream([1, 2, 3]);
        using var request = new HttpRequestMessage(HttpMethod.Put, "http://orders/") { Content = new StreamContent(body) };

        Assert.False(MeshResiliencePipelines.CanRetry(request, ServerError));
        Assert.True(MeshResiliencePipelines.CanRetry(request, ConnectionRefused));
    }

    [Fact]
    public void CanRetry_BufferedBody_IsRetried()
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "http://orders/") { Content = new ByteArrayContent([1, 2, 3]) };

        Assert.True(MeshResiliencePipelines.CanRetry(request, ServerError));
    }
}
