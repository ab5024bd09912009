using System.Net;
using System.Net.Sockets;
using Mesh.Client.Resilience;

namespace Mesh.Client.Tests.Resilience;

public sealed class MeshResiliencePoliciesTests
{
    private static readonly HttpRequestException ConnectionRefused =
        new(HttpRequestError.ConnectionError, "refused", new SocketException((int)SocketError.ConnectionRefused));

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

        Assert.Equal(expected, MeshResiliencePolicies.CanRetry(request, exception: null));
    }

    [Fact]
    public void CanRetry_PostWithIdempotencyKey_IsRetried()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://orders/") { Content = new StringContent("x") };
        request.Headers.Add("Idempotency-Key", "abc");

        Assert.True(MeshResiliencePolicies.CanRetry(request, exception: null));
    }

    [Fact]
    public void CanRetry_BodyThatCannotBeReplayed_OnlyForConnectionFailures()
    {
        using var body = new MemoryStream([1, 2, 3]);
        using var request = new HttpRequestMessage(HttpMethod.Put, "http://orders/") { Content = new StreamContent(body) };

        Assert.False(MeshResiliencePolicies.CanRetry(request, exception: null));
        Assert.True(MeshResiliencePolicies.CanRetry(request, ConnectionRefused));
    }

    [Fact]
    public void CanRetry_PostWithoutIdempotencyKey_OnlyWhenItsConnectionCouldNotBeMade()
    {
        // Nothing reached a server: sent again whatever the method (Envoy's connect-failure). A failure after the request
        // may have been sent (the connection closed mid-answer) never resends a POST without Idempotency-Key.
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://orders/") { Content = new StringContent("order") };
        var ended = new HttpRequestException(HttpRequestError.ResponseEnded, "The response ended prematurely.");

        Assert.True(MeshResiliencePolicies.CanRetry(request, ConnectionRefused));
        Assert.True(MeshResiliencePolicies.CanRetry(request, ConnectionRefused, routeRetries: true));
        Assert.False(MeshResiliencePolicies.CanRetry(request, ended));
        Assert.False(MeshResiliencePolicies.CanRetry(request, ended, routeRetries: true));
        Assert.False(MeshResiliencePolicies.CanRetry(request, exception: null));
    }

    [Fact]
    public void CanRetry_BufferedBody_IsRetried()
    {
        using var request = new HttpRequestMessage(HttpMethod.Put, "http://orders/") { Content = new ByteArrayContent([1, 2, 3]) };

        Assert.True(MeshResiliencePolicies.CanRetry(request, exception: null));
    }

    [Theory]
    [InlineData(HttpStatusCode.InternalServerError, true)]
    [InlineData(HttpStatusCode.ServiceUnavailable, true)]
    [InlineData(HttpStatusCode.RequestTimeout, true)]
    [InlineData(HttpStatusCode.TooManyRequests, true)]
    [InlineData(HttpStatusCode.NotFound, false)]
    [InlineData(HttpStatusCode.OK, false)]
    public void IsTransient_ByStatus(HttpStatusCode status, bool expected)
    {
        using var response = new HttpResponseMessage(status);

        Assert.Equal(expected, MeshResiliencePolicies.IsTransient(response, null, attemptTimedOut: false));
    }

    [Fact]
    public void IsTransient_SendFailuresAndAttemptTimeouts_ButNotMeshAnswers()
    {
        Assert.True(MeshResiliencePolicies.IsTransient(null, ConnectionRefused, attemptTimedOut: false));
        Assert.True(MeshResiliencePolicies.IsTransient(null, new TaskCanceledException(), attemptTimedOut: true));
        Assert.False(MeshResiliencePolicies.IsTransient(null, new NoHealthyEndpointException("orders", "outbound|80||orders", 0), attemptTimedOut: false));
        Assert.False(MeshResiliencePolicies.IsTransient(null, new InvalidOperationException(), attemptTimedOut: false));
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 3)]
    [InlineData(3, 7)]
    [InlineData(4, 10)]
    [InlineData(10, 10)]
    public void Backoff_IsFullyJitteredBelowEnvoysCeiling(int retry, int ceilingFactor)
    {
        var baseDelay = TimeSpan.FromMilliseconds(25);
        for (var i = 0; i < 200; i++)
        {
            var delay = MeshResilienceHandler.Backoff(baseDelay, retry);
            Assert.InRange(delay, TimeSpan.Zero, baseDelay * ceilingFactor);
        }
    }
}
