using System.Net;
using Mesh.Client.Authorization;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Tests.Grpc;
using Mesh.Client.Xds;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Primitives;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Security;

/// <summary>
/// A port's PeerAuthentication mode changes while connections are open (security.md: "a restart at the wrong moment"):
/// a keep-alive connection accepted under the old mode must not carry requests the new mode refuses. Real Kestrel with
/// the inbound connection middleware on 127.0.0.1; the mode source is switched as the control plane's inbound listener
/// would switch it.
/// </summary>
public sealed class PeerAuthenticationChangeTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);
    private static readonly string Orders = TestCa.Id("orders");
    private static readonly string Frontend = TestCa.Id("frontend");

    private readonly TestCa _ca = new(intermediate: true);

    public void Dispose() => _ca.Dispose();

    [Theory]
    [InlineData(HttpProtocols.Http1)]
    [InlineData(HttpProtocols.Http2)]
    public async Task PermissiveToStrict_OpenPlaintextKeepAlive_IsClosed_AndTheNextRequestRefused(HttpProtocols protocols)
    {
        var modes = new SwitchableModes(PeerAuthenticationMode.Permissive);
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, protocols);
        using var plain = PlainClient(protocols);
        var url = new Uri($"http://127.0.0.1:{backend.Port}/");
        Assert.Equal("orders-0", await plain.GetStringAsync(url));

        modes.Set(PeerAuthenticationMode.Strict);

        // The server ends the idle keep-alive connection itself; without that, the client's pooled connection would
        // carry the next request in plaintext past STRICT.
        Assert.True(await backend.ConnectionsEnded.WaitAsync(Deadline), "the open plaintext connection was not closed after the port became STRICT");
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(url));
        Assert.Equal(1, backend.Hits);
    }

    [Fact]
    public async Task PermissiveToDisable_OpenMtlsConnection_IsClosed_AndMtlsRefusedFromThen()
    {
        var modes = new SwitchableModes(PeerAuthenticationMode.Permissive);
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1);
        await using var provider = Client(backend);
        var mesh = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        Assert.Equal("orders-0", await mesh.GetStringAsync(new Uri("http://orders/")));
        Assert.Equal(Frontend, backend.Requests.Single().ClaimSpiffeId);

        modes.Set(PeerAuthenticationMode.Disable);

        Assert.True(await backend.ConnectionsEnded.WaitAsync(Deadline), "the open mTLS connection was not closed after the port became DISABLE");
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => mesh.GetStringAsync(new Uri("http://orders/")));
        Assert.Equal(1, backend.Hits);
    }

    [Fact]
    public async Task StrictToPermissive_OpenMtlsConnection_StaysAndIsReused()
    {
        var modes = new SwitchableModes(PeerAuthenticationMode.Strict);
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1);
        await using var provider = Client(backend);
        var mesh = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        Assert.Equal("orders-0", await mesh.GetStringAsync(new Uri("http://orders/")));

        // A change the connection still satisfies (and a push that changes nothing) leaves it open.
        modes.Set(PeerAuthenticationMode.Permissive);
        modes.Set(PeerAuthenticationMode.Permissive);
        Assert.Equal("orders-0", await mesh.GetStringAsync(new Uri("http://orders/")));

        Assert.Equal(1, backend.Connections);
        Assert.Equal(0, backend.ConnectionsEnded.CurrentCount);
    }

    [Fact]
    public async Task PermissiveToStrict_RequestInFlight_FinishesWithConnectionClose()
    {
        var modes = new SwitchableModes(PeerAuthenticationMode.Permissive);
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1);
        using var plain = PlainClient(HttpProtocols.Http1);
        var call = plain.GetAsync(new Uri($"http://127.0.0.1:{backend.Port}/hold"));
        await backend.Holding.Task.WaitAsync(Deadline);

        modes.Set(PeerAuthenticationMode.Strict);
        backend.Hold.SetResult();

        // Drained as Envoy drains a replaced filter chain: the request in flight is answered, then the connection closes.
        using var response = await call.WaitAsync(Deadline);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Headers.ConnectionClose, "the answer to the request in flight did not say Connection: close");
        Assert.True(await backend.ConnectionsEnded.WaitAsync(Deadline));
    }

    [Fact]
    public async Task PermissiveToStrict_RequestStillInFlightAfterTheDrain_ConnectionAborted()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var modes = new SwitchableModes(PeerAuthenticationMode.Permissive);
        await using var backend = await MeshBackend.StartAsync(
            "orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1, services => services.AddSingleton<TimeProvider>(time));
        using var plain = PlainClient(HttpProtocols.Http1);
        var call = plain.GetAsync(new Uri($"http://127.0.0.1:{backend.Port}/hold"));
        await backend.Holding.Task.WaitAsync(Deadline);

        modes.Set(PeerAuthenticationMode.Strict);
        time.Advance(MeshInboundConnectionMiddleware.PolicyChangeDrain - TimeSpan.FromSeconds(1));
        Assert.False(call.IsCompleted);
        Assert.Equal(0, backend.ConnectionsEnded.CurrentCount);
        time.Advance(TimeSpan.FromSeconds(1));

        // The socket is gone: the caller sees the connection end without an answer (not its own timeout).
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => call.WaitAsync(Deadline));
        backend.Hold.SetResult();
        Assert.True(await backend.ConnectionsEnded.WaitAsync(Deadline));
    }

    [Fact]
    public async Task PermissiveToStrict_ConnectionOpenedBeforeButFirstBytesAfter_IsRefusedNotServed()
    {
        // An attacker opens idle sockets while the port is PERMISSIVE and writes on them once STRICT is in force: the
        // mode that decides is the one when the first byte arrives, and the connection serves nothing.
        var modes = new SwitchableModes(PeerAuthenticationMode.Permissive);
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1);
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, backend.Port);

        modes.Set(PeerAuthenticationMode.Strict);
        using var stream = new System.Net.Sockets.NetworkStream(socket);
        using var timeout = new CancellationTokenSource(Deadline);
        await stream.WriteAsync("GET / HTTP/1.1\r\nHost: orders\r\n\r\n"u8.ToArray(), timeout.Token);

        using var answer = new MemoryStream();
        try
        {
            await stream.CopyToAsync(answer, timeout.Token);
        }
        catch (IOException)
        {
            // Closed with the request unread: a reset is as good as a FIN here.
        }

        Assert.Equal(string.Empty, System.Text.Encoding.ASCII.GetString(answer.ToArray()));
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task ControlPlaneSwitchesThePortToStrict_ThroughTheInboundPolicyStore_OpenPlaintextClosed()
    {
        // The real wiring: the xDS client's inbound listener replaces the store's policies, the mode source follows it.
        var store = new InboundPolicyStore(meshServed: true);
        var modes = new InboundPeerAuthenticationModeSource(store, Microsoft.Extensions.Options.Options.Create(new ServiceMeshOptions()));
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), modes, HttpProtocols.Http1);
        using var plain = PlainClient(HttpProtocols.Http1);
        var url = new Uri($"http://127.0.0.1:{backend.Port}/");
        store.Replace([new InboundPolicy("inbound", backend.Port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        Assert.Equal("orders-0", await plain.GetStringAsync(url));

        store.Replace([new InboundPolicy("inbound", backend.Port, PeerAuthenticationMode.Strict, deny: null, allow: null, PathNormalizationOptions.Default)]);

        Assert.True(await backend.ConnectionsEnded.WaitAsync(Deadline), "the open plaintext connection was not closed after the store made the port STRICT");
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(url));
        Assert.Equal(1, backend.Hits);
    }

    private static HttpClient PlainClient(HttpProtocols protocols) =>
        new(new SocketsHttpHandler { UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5) })
        {
            Timeout = Deadline,
            DefaultRequestVersion = protocols == HttpProtocols.Http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };

    private ServiceProvider Client(MeshBackend backend)
    {
        var name = TestSnapshots.Names.Qualify("orders");
        var tls = new UpstreamTlsSettings([new StringMatch(StringMatchKind.Exact, Orders, false)]);
        var cluster = new MeshCluster($"outbound|80||{name}", name, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(backend.Port)], tls: tls);
        var source = new FixedSnapshotSource(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]));
        var services = MeshServices.Create(source);
        services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(_ca.Issue([Frontend])));
        return services.BuildServiceProvider();
    }

    /// <summary>Every port in one mode, switched as the control plane's inbound listener would switch it.</summary>
    private sealed class SwitchableModes(PeerAuthenticationMode initial) : IPeerAuthenticationModeSource
    {
        private volatile PeerAuthenticationMode _mode = initial;
        private CancellationTokenSource _changed = new();

        public PeerAuthenticationMode GetMode(int localPort) => _mode;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

        public void Set(PeerAuthenticationMode mode)
        {
            _mode = mode;
            Interlocked.Exchange(ref _changed, new CancellationTokenSource()).Cancel();
        }
    }
}
