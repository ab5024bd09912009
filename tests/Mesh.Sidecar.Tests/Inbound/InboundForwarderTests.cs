using System.Net.Sockets;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Inbound;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Tests.Inbound;

public sealed class InboundForwarderTests
{
    [Fact]
    public void Classify_AppRefusesConnection_503WithUF()
    {
        var refused = new HttpRequestException(HttpRequestError.ConnectionError, "Connection refused (127.0.0.1:8080)", new SocketException((int)SocketError.ConnectionRefused));

        var (code, flags, reason) = InboundForwarder.Classify(ForwarderError.Request, refused, CancellationToken.None);

        Assert.Equal(503, code);
        Assert.Equal(ResponseFlags.UpstreamConnectionFailure, flags);
        Assert.Equal("connection failure", reason);
    }

    [Fact]
    public void Classify_AppClosesBeforeResponse_503WithUC()
    {
        var ended = new HttpRequestException(HttpRequestError.ResponseEnded, "The response ended prematurely.");

        var (code, flags, _) = InboundForwarder.Classify(ForwarderError.Request, ended, CancellationToken.None);

        Assert.Equal(503, code);
        Assert.Equal(ResponseFlags.UpstreamConnectionTermination, flags);
    }

    [Fact]
    public void Classify_Timeout_504WithUT()
    {
        var (code, flags, _) = InboundForwarder.Classify(ForwarderError.RequestTimedOut, new TaskCanceledException(), CancellationToken.None);

        Assert.Equal(504, code);
        Assert.Equal(ResponseFlags.UpstreamRequestTimeout, flags);
    }

    [Fact]
    public void Classify_UnknownFailure_502()
    {
        var (code, _, _) = InboundForwarder.Classify(ForwarderError.ResponseHeaders, new InvalidOperationException("boom"), CancellationToken.None);

        Assert.Equal(502, code);
    }
}
