using System.Net;
using System.Net.Sockets;
using Mesh.Client;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Tcp;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Sidecar.Tests.Tcp;

/// <summary>
/// The inbound tunnel's handler on real Kestrel over plaintext (the mTLS handshake before it is Mesh.Client's middleware,
/// run in the integration test): the port's policy state and AuthorizationPolicy decide before a byte reaches the app.
/// </summary>
public sealed class TcpInboundConnectionHandlerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task OnConnected_PortNotMeshServed_RelaysToTheApp()
    {
        using var app = new CountingEcho();
        await using var tunnel = await StartAsync(app.Port, new InboundPolicyStore(meshServed: false));

        Assert.Equal("hello", await ExchangeAsync(tunnel.Port, "hello"));
        Assert.Equal(1, app.Connections);
    }

    [Fact]
    public async Task OnConnected_MeshServedPortWithoutPolicyYet_ClosedBeforeTheApp()
    {
        using var app = new CountingEcho();
        await using var tunnel = await StartAsync(app.Port, new InboundPolicyStore(meshServed: true));

        Assert.Equal(string.Empty, await ExchangeAsync(tunnel.Port, "hello"));
        Assert.Equal(0, app.Connections);
        Assert.Equal(1, tunnel.Metrics.Sum(MeshMetrics.TcpConnectionsOpenedName));
        Assert.Equal(1, tunnel.Metrics.Sum(MeshMetrics.TcpConnectionsClosedName));
    }

    [Fact]
    public async Task OnConnected_AllowOnlyAPrincipal_PlaintextPeerDenied_NothingReachesTheApp()
    {
        using var app = new CountingEcho();
        var store = new InboundPolicyStore(meshServed: true);
        await using var tunnel = await StartAsync(app.Port, store);
        var allow = OnlyPrincipalX();
        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, allow, PathNormalizationOptions.Default)]);

        Assert.Equal(string.Empty, await ExchangeAsync(tunnel.Port, "hello"));
        Assert.Equal(0, app.Connections);

        // As Envoy, whose stats filter counts a connection its RBAC filter closed: opened and closed once, flags "-".
        Assert.Equal(1, tunnel.Metrics.Sum(MeshMetrics.TcpConnectionsOpenedName));
        Assert.Equal(1, tunnel.Metrics.Sum(MeshMetrics.TcpConnectionsClosedName));
        var refused = Assert.Single(tunnel.Metrics.Tags);
        Assert.Equal("destination", refused["reporter"]);
        Assert.Equal("echo", refused["destination_service_name"]);
        Assert.Equal("-", refused["response_flags"]);
        Assert.Equal("none", refused["connection_security_policy"]);

        // The same port with no rules: the bytes go through.
        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        Assert.Equal("hello", await ExchangeAsync(tunnel.Port, "hello"));
        Assert.Equal(1, app.Connections);
    }

    [Fact]
    public async Task OpenTunnel_PolicyChangesToDenyIt_ClosedAfterTheDrain_NotBefore()
    {
        // Envoy drains the connections of a filter chain an RBAC change replaced: a DENY (here: an ALLOW for another
        // principal only) closes the tunnels it now refuses after the drain, not only the new ones.
        using var app = new CountingEcho();
        var store = new InboundPolicyStore(meshServed: true);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var tunnel = await StartAsync(app.Port, store, time);
        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        using var client = new TcpClient();
        using var timeout = new CancellationTokenSource(Deadline);
        await client.ConnectAsync(IPAddress.Loopback, tunnel.Port, timeout.Token);
        var stream = client.GetStream();
        Assert.Equal("a", await RoundTripAsync(stream, "a", timeout.Token));
        Assert.Equal(1, tunnel.Handler.OpenTunnels);

        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, OnlyPrincipalX(), PathNormalizationOptions.Default)]);

        // Within the drain the tunnel still carries bytes; at its end it is closed.
        Assert.Equal("b", await RoundTripAsync(stream, "b", timeout.Token));
        time.Advance(MeshInboundConnectionMiddleware.PolicyChangeDrain);
        var buffer = new byte[16];
        try
        {
            Assert.Equal(0, await stream.ReadAsync(buffer, timeout.Token));
        }
        catch (IOException)
        {
            // Reset rather than closed: closed either way.
        }

        await Eventually(() => tunnel.Handler.OpenTunnels == 0, "the denied tunnel is still open");
    }

    [Fact]
    public async Task OpenTunnel_PolicyChangeStillAllowsIt_StaysOpen()
    {
        using var app = new CountingEcho();
        var store = new InboundPolicyStore(meshServed: true);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var tunnel = await StartAsync(app.Port, store, time);
        var open = new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default);
        store.Replace([open]);
        using var client = new TcpClient();
        using var timeout = new CancellationTokenSource(Deadline);
        await client.ConnectAsync(IPAddress.Loopback, tunnel.Port, timeout.Token);
        var stream = client.GetStream();
        Assert.Equal("a", await RoundTripAsync(stream, "a", timeout.Token));

        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, allow: null, PathNormalizationOptions.Default)]);
        time.Advance(MeshInboundConnectionMiddleware.PolicyChangeDrain * 2);

        Assert.Equal("b", await RoundTripAsync(stream, "b", timeout.Token));
        Assert.Equal(1, tunnel.Handler.OpenTunnels);
    }

    [Fact]
    public async Task RefusedConnections_LoggedOncePerPeerAndKindPerInterval_NextLineCountsTheRest()
    {
        // Any peer that reaches the port (plaintext under PERMISSIVE) can open refused connections in a loop: a log line
        // for each, at Information (denied) or Warning (no policy), would fill log storage.
        using var app = new CountingEcho();
        var store = new InboundPolicyStore(meshServed: true);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        var log = new ListLogger();
        await using var tunnel = await StartAsync(app.Port, store, time, log);
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(string.Empty, await ExchangeAsync(tunnel.Port, "hello"));
        }

        Assert.Single(log.Lines("TcpInboundNoPolicy"));

        // Another kind of refusal from the same peer has its own line.
        store.Replace([new InboundPolicy("inbound", tunnel.Port, PeerAuthenticationMode.Permissive, deny: null, OnlyPrincipalX(), PathNormalizationOptions.Default)]);
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(string.Empty, await ExchangeAsync(tunnel.Port, "hello"));
        }

        Assert.Single(log.Lines("TcpInboundDenied"));

        // An interval later: one line again, counting the ones left out.
        time.Advance(TcpInboundConnectionHandler.RefusalLogInterval);
        Assert.Equal(string.Empty, await ExchangeAsync(tunnel.Port, "hello"));
        var denied = log.Lines("TcpInboundDenied");
        Assert.Equal(2, denied.Count);
        Assert.EndsWith("(3 more denied connections from 127.0.0.1 since its last line).", denied[1], StringComparison.Ordinal);
        Assert.Single(log.Lines("TcpInboundNoPolicy"));
        Assert.Equal(0, app.Connections);
    }

    private static async Task<string> RoundTripAsync(NetworkStream stream, string text, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes(text), cancellationToken);
        var buffer = new byte[text.Length];
        await stream.ReadExactlyAsync(buffer, cancellationToken);
        return System.Text.Encoding.ASCII.GetString(buffer);
    }

    private static async Task Eventually(Func<bool> condition, string message)
    {
        using var timeout = new CancellationTokenSource(Deadline);
        while (!condition())
        {
            Assert.False(timeout.IsCancellationRequested, message);
            await Task.Delay(20);
        }
    }

    internal static RbacEngine OnlyPrincipalX()
    {
        var errors = new List<string>();
        var allow = RbacEngine.Compile(
            new RBAC
            {
                Action = RBAC.Types.Action.Allow,
                Policies =
                {
                    ["ns[default]-policy[only-x]-rule[0]"] = new Policy
                    {
                        Permissions = { new Permission { Any = true } },
                        Principals = { new Principal { Authenticated = new Principal.Types.Authenticated { PrincipalName = new StringMatcher { Exact = "spiffe://cluster.local/ns/default/sa/x" } } } },
                    },
                },
            },
            "allow",
            errors);
        Assert.Empty(errors);
        return allow!;
    }

    private static async Task<Tunnel> StartAsync(int appPort, InboundPolicyStore store, TimeProvider? time = null, ILogger<TcpInboundConnectionHandler>? logger = null)
    {
        var metrics = new TcpMetricsCapture("echo");
        var services = metrics.Services;
        var tunnel = new TcpInboundTunnel("tcp-echo", 0, appPort);
        var handler = new TcpInboundConnectionHandler(
            tunnel,
            new SidecarTcpOptions([], [tunnel], TimeSpan.FromMinutes(5)),
            store,
            services.GetRequiredService<MeshMetrics>(),
            services.GetRequiredService<IstioRequestMetrics>(),
            time ?? TimeProvider.System,
            logger ?? NullLogger<TcpInboundConnectionHandler>.Instance);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Use(_ => handler.OnConnectedAsync)));
        var app = builder.Build();
        await app.StartAsync();
        return new Tunnel(app, metrics, new Uri(app.Urls.Single()).Port, handler);
    }

    private static Task<string> ExchangeAsync(int port, string text) => TcpExchange.ExchangeAsync(port, text, Deadline);

    private sealed record Tunnel(WebApplication App, TcpMetricsCapture Metrics, int Port, TcpInboundConnectionHandler Handler) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await App.StopAsync();
            await App.DisposeAsync();
            Handler.Dispose();
            Metrics.Dispose();
        }
    }

    /// <summary>The handler's log lines by event name.</summary>
    private sealed class ListLogger : ILogger<TcpInboundConnectionHandler>
    {
        private readonly List<(string Event, string Line)> _lines = [];

        public List<string> Lines(string eventName)
        {
            lock (_lines)
            {
                return [.. _lines.Where(line => line.Event == eventName).Select(line => line.Line)];
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lines)
            {
                _lines.Add((eventId.Name ?? string.Empty, formatter(state, exception)));
            }
        }
    }

    /// <summary>The app: echoes each connection to its end and counts connections.</summary>
    private sealed class CountingEcho : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private int _connections;

        public CountingEcho()
        {
            _listener.Start();
            _ = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int Connections => Volatile.Read(ref _connections);

        public void Dispose() => _listener.Dispose();

        private async Task AcceptAsync()
        {
            while (true)
            {
                Socket socket;
                try
                {
                    socket = await _listener.AcceptSocketAsync();
                }
                catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
                {
                    return;
                }

                Interlocked.Increment(ref _connections);
                _ = Task.Run(async () =>
                {
                    using (socket)
                    {
                        var buffer = new byte[4096];
                        int read;
                        while ((read = await socket.ReceiveAsync(buffer)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, read));
                        }

                        socket.Shutdown(SocketShutdown.Send);
                    }
                });
            }
        }
    }
}
