using System.Net;
using System.Net.Sockets;
using System.Text;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Hosting;
using Mesh.Sidecar.Inbound;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
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
        using var forwarder = new InboundForwarder(services.GetRequiredService<IHttpForwarder>(), new SidecarOptions { AppPort = appPort }, new NoCertificate(), new InboundPolicyStore(meshServed: false), TimeProvider.System, logger);
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

    /// <summary>
    /// Under the modes that let an escaped slash through, the app gets the path the policy decided on, with the raw query
    /// (YARP alone forwarded Kestrel's <c>Request.Path</c> re-escaped: <c>%252F</c>). Real Kestrel in front and behind.
    /// </summary>
    [Theory]
    [InlineData("KEEP_UNCHANGED (MERGE_SLASHES)", true, true, "keep", "/public/..%2fprivate?q=%2f", "/public/..%2Fprivate?q=%2f")]
    [InlineData("KEEP_UNCHANGED (NONE)", false, false, "keep", "/public/..%2fprivate?q=1", "/public/..%2fprivate?q=1")]
    [InlineData("DECODE_AND_MERGE_SLASHES", true, true, "unescape", "/public/..%2fprivate?q=1", "/private?q=1")]
    [InlineData("DECODE_AND_MERGE_SLASHES", true, true, "unescape", "/a%2F%2Fb/%7Ec", "/a/b/~c")]
    [InlineData("KEEP_UNCHANGED, no escaped slash", true, true, "keep", "/orders/1?x=%20", "/orders/1?x=%20")]
    public async Task InvokeAsync_EscapedSlashModes_AppGetsTheAuthorizedTarget(string mode, bool normalize, bool mergeSlashes, string slashes, string sent, string expected)
    {
        await using var app = await StartAsync(context =>
        {
            var received = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
            context.Response.ContentLength = received.Length;
            return context.Response.WriteAsync(received);
        });
        var store = new InboundPolicyStore(meshServed: true);
        await using var sidecar = await StartSidecarAsync(AppPort(app), store);
        var port = AppPort(sidecar);
        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, new PathNormalizationOptions(normalize, mergeSlashes, slashes == "keep" ? EscapedSlashAction.Keep : EscapedSlashAction.Unescape))]);

        var response = await RawAsync(port, $"GET {sent} HTTP/1.1\r\nHost: legacy\r\nConnection: close\r\n\r\n");

        Assert.True(response.StartsWith("HTTP/1.1 200", StringComparison.Ordinal), $"{mode}: {response}");
        Assert.EndsWith("\r\n\r\n" + expected, response, StringComparison.Ordinal);
    }

    /// <summary>
    /// A push that changes the path normalization between authorization and forwarding: the app gets the target the
    /// first policy decided on, never the port's new policy's reading of it (before, the forwarder looked the policy up and
    /// normalized again: <c>/public/..%2Fprivate</c>, allowed as kept, reached the app as <c>/private</c>).
    /// </summary>
    [Fact]
    public async Task InvokeAsync_NormalizationPushedAfterAuthorization_AppGetsTheDecidedTarget()
    {
        await using var app = await StartAsync(context =>
        {
            var received = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
            context.Response.ContentLength = received.Length;
            return context.Response.WriteAsync(received);
        });
        var store = new InboundPolicyStore(meshServed: true);
        var port = 0;
        await using var sidecar = await StartSidecarAsync(AppPort(app), store, beforeForwarding: () =>
            store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, new PathNormalizationOptions(Normalize: true, MergeSlashes: true, EscapedSlashAction.Unescape))]));
        port = AppPort(sidecar);
        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, new PathNormalizationOptions(Normalize: true, MergeSlashes: true, EscapedSlashAction.Keep))]);

        var response = await RawAsync(port, "GET /public/..%2fprivate?q=1 HTTP/1.1\r\nHost: legacy\r\nConnection: close\r\n\r\n");

        Assert.True(response.StartsWith("HTTP/1.1 200", StringComparison.Ordinal), response);
        Assert.EndsWith("\r\n\r\n/public/..%2Fprivate?q=1", response, StringComparison.Ordinal);
        Assert.True(store.TryGet(port, out var now) && now.Paths.EscapedSlashes == EscapedSlashAction.Unescape, "the push happened");
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

    [Fact]
    public async Task UpgradedRequest_PolicyChangesToDenyIt_ClosedAfterTheDrain_NotBefore()
    {
        // A WebSocket through the forwarder: an RBAC change that denies it closes it after the drain, as Envoy drains the
        // connections of a replaced filter chain; it was authorized once, at its upgrade (review-sidecar #3).
        await using var app = await StartWebSocketEchoAsync();
        var store = new InboundPolicyStore(meshServed: true);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var services = new ServiceCollection().AddLogging().AddHttpForwarder().BuildServiceProvider();
        using var forwarder = new InboundForwarder(services.GetRequiredService<IHttpForwarder>(), new SidecarOptions { AppPort = AppPort(app) }, new NoCertificate(), store, time, new ListLogger());
        await using var sidecar = await StartAsync(forwarder.InvokeAsync);
        var port = AppPort(sidecar);
        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var client = new System.Net.WebSockets.ClientWebSocket();
        await client.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/chat"), timeout.Token);
        Assert.Equal("a", await EchoAsync(client, "a", timeout.Token));
        Assert.Equal(1, forwarder.OpenUpgrades);

        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, Tcp.TcpInboundConnectionHandlerTests.OnlyPrincipalX(), PathNormalizationOptions.Default)]);

        // Within the drain the stream still carries messages; at its end it is closed.
        Assert.Equal("b", await EchoAsync(client, "b", timeout.Token));
        time.Advance(MeshInboundConnectionMiddleware.PolicyChangeDrain);
        await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() => client.ReceiveAsync(new byte[16], timeout.Token));
        while (forwarder.OpenUpgrades != 0)
        {
            Assert.False(timeout.IsCancellationRequested, "the denied upgrade is still tracked");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task UpgradedRequest_PolicyChangeStillAllowsIt_StaysOpen()
    {
        await using var app = await StartWebSocketEchoAsync();
        var store = new InboundPolicyStore(meshServed: true);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var services = new ServiceCollection().AddLogging().AddHttpForwarder().BuildServiceProvider();
        using var forwarder = new InboundForwarder(services.GetRequiredService<IHttpForwarder>(), new SidecarOptions { AppPort = AppPort(app) }, new NoCertificate(), store, time, new ListLogger());
        await using var sidecar = await StartAsync(forwarder.InvokeAsync);
        var port = AppPort(sidecar);
        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        using var client = new System.Net.WebSockets.ClientWebSocket();
        await client.ConnectAsync(new Uri($"ws://127.0.0.1:{port}/chat"), timeout.Token);

        store.Replace([new InboundPolicy("inbound", port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        time.Advance(MeshInboundConnectionMiddleware.PolicyChangeDrain * 2);

        Assert.Equal("b", await EchoAsync(client, "b", timeout.Token));
        Assert.Equal(1, forwarder.OpenUpgrades);
    }

    // The app: a WebSocket echo until the client closes.
    private static async Task<WebApplication> StartWebSocketEchoAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.UseWebSockets();
        app.Run(async context =>
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[64];
            var read = await socket.ReceiveAsync(buffer, context.RequestAborted);
            while (read.MessageType != System.Net.WebSockets.WebSocketMessageType.Close)
            {
                await socket.SendAsync(buffer.AsMemory(0, read.Count), read.MessageType, read.EndOfMessage, context.RequestAborted);
                read = await socket.ReceiveAsync(buffer, context.RequestAborted);
            }
        });
        await app.StartAsync();
        return app;
    }

    private static async Task<string> EchoAsync(System.Net.WebSockets.ClientWebSocket client, string text, CancellationToken cancellationToken)
    {
        await client.SendAsync(Encoding.ASCII.GetBytes(text), System.Net.WebSockets.WebSocketMessageType.Text, endOfMessage: true, cancellationToken);
        var buffer = new byte[64];
        var read = await client.ReceiveAsync(buffer, cancellationToken);
        return Encoding.ASCII.GetString(buffer, 0, read.Count);
    }

    private static int AppPort(WebApplication app) => new Uri(app.Urls.Single()).Port;

    private static async Task<WebApplication> StartAsync(RequestDelegate handler)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.Run(handler);
        await app.StartAsync();
        return app;
    }

    // The sidecar's inbound authorization and forwarding on real Kestrel (the policy's path settings decide; no rules, so
    // no 403); beforeForwarding runs between the two.
    private static async Task<WebApplication> StartSidecarAsync(int appPort, InboundPolicyStore store, Action? beforeForwarding = null)
    {
        var services = new ServiceCollection().AddLogging().AddHttpForwarder().BuildServiceProvider();
        var forwarder = new InboundForwarder(services.GetRequiredService<IHttpForwarder>(), new SidecarOptions { AppPort = appPort }, new NoCertificate(), store, TimeProvider.System, new ListLogger());
        var authorization = new MeshAuthorizationMiddleware(
            context =>
            {
                beforeForwarding?.Invoke();
                return forwarder.InvokeAsync(context);
            },
            store,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<MeshAuthorizationMiddleware>.Instance);
        var app = await StartAsync(authorization.InvokeAsync);
        app.Lifetime.ApplicationStopped.Register(() =>
        {
            forwarder.Dispose();
            services.Dispose();
        });
        return app;
    }

    // Sends one request (Connection: close) and reads the whole response.
    private static async Task<string> RawAsync(int port, string request)
    {
        using var client = new TcpClient();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request), timeout.Token);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        return await reader.ReadToEndAsync(timeout.Token);
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
