using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.Client;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Sidecar.Tcp;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Primitives;

namespace Mesh.Sidecar.Tests.Tcp;

/// <summary>The outbound tunnel on real Kestrel and real sockets (a plaintext cluster: the mTLS path runs in the integration test).</summary>
public sealed class TcpOutboundConnectionHandlerTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task OnConnected_FirstEndpointRefuses_NextOneCarriesTheBytes_CountedInIstiosTcpMetrics()
    {
        using var live = new TcpListener(IPAddress.Loopback, 0);
        live.Start();
        _ = EchoForeverAsync(live);
        var deadPort = FreePort();
        var dead = new MeshEndpoint("127.0.0.1", deadPort);
        var cluster = new MeshCluster("outbound|9000||echo.default.svc.cluster.local", "echo.default.svc.cluster.local", LoadBalancingPolicy.RoundRobin,
            [dead, new MeshEndpoint("127.0.0.1", ((IPEndPoint)live.LocalEndpoint).Port)]);
        var service = new MeshService("echo.default.svc.cluster.local:9000", "echo.default.svc.cluster.local", 9000, [new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])]);
        var snapshot = new MeshSnapshot("test", [new("echo", service), new("echo.default.svc.cluster.local", service)], [cluster]);
        using var metrics = new TcpMetricsCapture("client");
        await using var app = await StartTunnelAsync(new TcpOutboundTunnel("echo", 9000, 0), snapshot, metrics.Services);
        var port = new Uri(app.Urls.Single()).Port;

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal($"hello-{i}", await ExchangeAsync(port, $"hello-{i}"));
        }

        Assert.True(dead.Consecutive5xx > 0 || dead.EjectionMultiplier > 0, "the refused connect counted against the dead endpoint");
        await metrics.WaitForAsync(MeshMetrics.TcpConnectionsClosedName, 4);
        Assert.Equal(4, metrics.Sum(MeshMetrics.TcpConnectionsOpenedName));
        Assert.Equal("hello-0hello-1hello-2hello-3".Length, metrics.Sum(MeshMetrics.TcpReceivedBytesName));
        Assert.Equal("hello-0hello-1hello-2hello-3".Length, metrics.Sum(MeshMetrics.TcpSentBytesName));
        Assert.All(metrics.Tags, tags =>
        {
            Assert.Equal("source", tags["reporter"]);
            Assert.Equal("tcp", tags["request_protocol"]);
            Assert.Equal("echo.default.svc.cluster.local", tags["destination_service"]);
            Assert.Equal("-", tags["response_flags"]);
        });
    }

    [Fact]
    public async Task OnConnected_NoEndpointAnswers_ClosedWithoutBytes_FlagUf()
    {
        var cluster = new MeshCluster("outbound|9000||echo.default.svc.cluster.local", "echo.default.svc.cluster.local", LoadBalancingPolicy.RoundRobin,
            [new MeshEndpoint("127.0.0.1", FreePort())]);
        var service = new MeshService("echo.default.svc.cluster.local:9000", "echo.default.svc.cluster.local", 9000, [new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])]);
        using var metrics = new TcpMetricsCapture("client");
        await using var app = await StartTunnelAsync(new TcpOutboundTunnel("echo", 9000, 0), new MeshSnapshot("test", [new("echo", service)], [cluster]), metrics.Services);

        Assert.Equal(string.Empty, await ExchangeAsync(new Uri(app.Urls.Single()).Port, "anyone?"));
        await metrics.WaitForAsync(MeshMetrics.TcpConnectionsClosedName, 1);
        Assert.Equal("UF", Assert.Single(metrics.Tags)["response_flags"]);
        Assert.Equal(0, metrics.Sum(MeshMetrics.TcpReceivedBytesName));
    }

    [Fact]
    public async Task OnConnected_NotAMeshServicePort_ClosedWithoutBytes()
    {
        using var metrics = new TcpMetricsCapture("client");
        await using var app = await StartTunnelAsync(new TcpOutboundTunnel("echo", 9000, 0), MeshSnapshot.Empty, metrics.Services);

        Assert.Equal(string.Empty, await ExchangeAsync(new Uri(app.Urls.Single()).Port, "anyone?"));
    }

    [Fact]
    public async Task ShutdownSend_OverTls_IsAFin_WhichThePeersSslStreamReadsAsTheEnd_AndCanStillAnswer()
    {
        var (clientSocket, serverSocket) = await ConnectedPairAsync();
        using var certificate = SelfSigned();
        await using var client = new SslStream(
            new NetworkStream(clientSocket, ownsSocket: true), leaveInnerStreamOpen: false, (_, presented, _, _) => presented?.GetCertHashString() == certificate.GetCertHashString());
        await using var server = new SslStream(new NetworkStream(serverSocket, ownsSocket: true));
        using var timeout = new CancellationTokenSource(Deadline);
        await Task.WhenAll(
            client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "peer" }, timeout.Token),
            server.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = certificate }, timeout.Token));
        // The client reads all along, as the relay's other direction does.
        var answer = ReadToEndAsync(client, timeout.Token);
        await client.WriteAsync("last words"u8.ToArray(), timeout.Token);

        await TcpOutboundConnectionHandler.ShutdownSendAsync(clientSocket);

        Assert.Equal("last words", await ReadToEndAsync(server, timeout.Token));
        await server.WriteAsync("answer"u8.ToArray(), timeout.Token);
        serverSocket.Shutdown(SocketShutdown.Send);
        Assert.Equal("answer", await answer);
    }

    private static async Task<(Socket Client, Socket Server)> ConnectedPairAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptSocketAsync();
        await client.ConnectAsync(listener.LocalEndpoint);
        return (client, await accept);
    }

    private static X509Certificate2 SelfSigned()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=peer", key, HashAlgorithmName.SHA256);
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    private static async Task<string> ReadToEndAsync(Stream stream, CancellationToken cancellationToken)
    {
        using var read = new MemoryStream();
        await stream.CopyToAsync(read, cancellationToken);
        return System.Text.Encoding.ASCII.GetString(read.ToArray());
    }

    private static async Task<WebApplication> StartTunnelAsync(TcpOutboundTunnel tunnel, MeshSnapshot snapshot, ServiceProvider services)
    {
        var handler = new TcpOutboundConnectionHandler(
            tunnel,
            new SidecarTcpOptions([tunnel], [], TimeSpan.FromMinutes(5)),
            new FixedSource(snapshot),
            new WorkloadCertificateStore(isSecure: false, "cluster.local", TrustBundle.Empty),
            services.GetRequiredService<MeshMetrics>(),
            services.GetRequiredService<IstioRequestMetrics>(),
            TimeProvider.System,
            NullLogger<TcpOutboundConnectionHandler>.Instance);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Use(_ => handler.OnConnectedAsync)));
        var app = builder.Build();
        await app.StartAsync();
        return app;
    }

    private static Task<string> ExchangeAsync(int port, string text) => TcpExchange.ExchangeAsync(port, text, Deadline);

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task EchoForeverAsync(TcpListener listener)
    {
        while (true)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync();
            }
            catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
            {
                return;
            }

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

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current { get; } = snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
