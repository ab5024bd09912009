using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Hosting;
using Mesh.Sidecar.Inbound;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;

namespace Mesh.Sidecar.Tests.Inbound;

public sealed class InboundForwarderTests
{
    [Fact]
    public async Task InvokeAsync_AppDown_BodyNamesNoAppAddress_LogDoes()
    {
        // A port nothing listens on: the app is down.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var appPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        await using var services = new ServiceCollection().AddLogging().AddHttpForwarder().BuildServiceProvider();
        var logger = new ListLogger();
        using var forwarder = new InboundForwarder(services.GetRequiredService<IHttpForwarder>(), new SidecarOptions { AppPort = appPort }, new NoCertificate(), logger);
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Scheme = "http";
        context.Request.Host = new HostString("legacy");
        context.Request.Path = "/orders/1";
        using var body = new MemoryStream();
        context.Response.Body = body;

        await forwarder.InvokeAsync(context);

        var text = System.Text.Encoding.UTF8.GetString(body.ToArray());
        Assert.Equal(503, context.Response.StatusCode);
        Assert.Equal("upstream connect error or disconnect/reset before headers. reset reason: connection failure (response flags UF)\n", text);
        Assert.DoesNotContain("127.0.0.1", text, StringComparison.Ordinal);
        Assert.DoesNotContain(appPort.ToString(System.Globalization.CultureInfo.InvariantCulture), text, StringComparison.Ordinal);
        Assert.Contains(logger.Lines, line => line.Contains($"the app at http://127.0.0.1:{appPort} failed", StringComparison.Ordinal));
    }

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

    private sealed class NoCertificate : IWorkloadCertificateSource
    {
        public bool IsSecure => false;

        public string TrustDomain => "cluster.local";

        public WorkloadCertificate? Current => null;

        public TrustBundle Bundle => new([], "none");

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }

    private sealed class ListLogger : ILogger<InboundForwarder>
    {
        private readonly List<string> _lines = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lines)
            {
                _lines.Add(formatter(state, exception));
            }
        }
    }
}
