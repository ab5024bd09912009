using System.Collections.Immutable;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Grpc.Net.ClientFactory;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Tests.Grpc;
using Mesh.Client.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Security;

/// <summary>Both sides mesh: a client through IHttpClientFactory with mTLS pools, a Kestrel backend with the inbound middleware.</summary>
public sealed class MeshMtlsTests : IDisposable
{
    private static readonly string Orders = TestCa.Id("orders");
    private static readonly string Frontend = TestCa.Id("frontend");

    private readonly TestCa _ca = new(intermediate: true);
    private readonly TestCa _foreign = new("foreign");

    public void Dispose()
    {
        _ca.Dispose();
        _foreign.Dispose();
    }

    [Fact]
    public async Task Get_Http11OverMtls_LogicalHostPeerClaimsAndOneHandshakeFor50Requests()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Strict, HttpProtocols.Http1);
        await using var provider = Client(backend, [Exact(Orders)]);
        var meterFactory = provider.GetRequiredService<IMeterFactory>();
        long handshakes = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Name == "mesh.client.tls.handshakes" && ReferenceEquals(instrument.Meter.Scope, meterFactory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref handshakes, value));
        listener.Start();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        Assert.Equal(1, backend.Connections);
        Assert.Equal(1, Interlocked.Read(ref handshakes)); // the mesh's handshake counter agrees with the server
        Assert.Equal(50, backend.Hits);
        var seen = backend.Requests.First();
        Assert.Equal("orders", seen.Host);
        Assert.Equal("HTTP/1.1", seen.Protocol);
        Assert.Equal(Frontend, seen.ClaimSpiffeId);
        Assert.Equal("default", seen.ClaimNamespace);
        Assert.Equal("frontend", seen.ClaimServiceAccount);
        Assert.Equal(Frontend, seen.FeatureSpiffeId);
        Assert.True(seen.HasClientCertificate);
    }

    [Fact]
    public async Task Get_Http2OverMtls_NegotiatesH2AndMultiplexesOneConnection()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Strict);
        await using var provider = Client(backend, [Prefix("spiffe://cluster.local/ns/default/")]);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var responses = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/")
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        })));

        Assert.All(responses, r => Assert.Equal(HttpVersion.Version20, r.Version));
        Assert.All(backend.Requests, seen => Assert.Equal("HTTP/2", seen.Protocol));
        Assert.All(backend.Requests, seen => Assert.Equal("orders", seen.Host));
        Assert.Equal(1, backend.Connections);
    }

    [Fact]
    public async Task Grpc_ClientFactoryHttpAddress_CallsOverMtls()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Strict, HttpProtocols.Http2);
        await using var provider = Client(backend, [Exact(Orders)], services =>
            services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("http://orders")));
        var client = provider.GetRequiredService<Greeter.GreeterClient>();

        var reply = await client.HelloAsync(new HelloRequest { Name = "x" });

        Assert.Equal("orders-0", reply.Backend);
        Assert.Equal("orders", reply.Authority);
        Assert.Equal(Frontend, Assert.Single(backend.Requests).ClaimSpiffeId);
    }

    [Fact]
    public async Task Grpc_ClientFactoryHttpAddress_ServerHasWrongIdentity_UnavailableNamingBothIdentities()
    {
        var payments = TestCa.Id("payments");
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([payments])), PeerAuthenticationMode.Strict, HttpProtocols.Http2);
        await using var provider = Client(backend, [Exact(Orders)], services =>
            services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("http://orders")));
        var client = provider.GetRequiredService<Greeter.GreeterClient>();

        var error = await Assert.ThrowsAsync<global::Grpc.Core.RpcException>(async () => await client.HelloAsync(new HelloRequest { Name = "x" }));

        // As for any connection the client could not make (and as on the xds:/// path): UNAVAILABLE, not INTERNAL.
        Assert.Equal(global::Grpc.Core.StatusCode.Unavailable, error.StatusCode);
        Assert.Contains($"presented: {payments}", error.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Get_ServerHasWrongIdentity_RefusedBeforeSendingAndNamesBothIdentities()
    {
        var payments = TestCa.Id("payments");
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([payments])), PeerAuthenticationMode.Strict);
        await using var provider = Client(backend, [Exact(Orders)]);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.Equal("orders", error.Service);
        Assert.Contains("'orders", error.Message, StringComparison.Ordinal);
        Assert.Contains(Orders, error.Message, StringComparison.Ordinal);
        Assert.Contains(payments, error.Message, StringComparison.Ordinal);
        Assert.Equal(0, backend.Hits);
    }

    public static TheoryData<string> BadKinds => new()
    {
        "expired", "not-yet-valid", "self-signed", "foreign-ca", "other-trust-domain", "two-uri-sans", "ca-leaf",
        "no-eku", "server-auth-only", "non-workload-path",
    };

    [Theory]
    [MemberData(nameof(BadKinds))]
    public async Task Get_ServerPresentsBadCertificate_ClientRefuses(string kind)
    {
        var bad = _ca.BadCertificate(_foreign, kind);
        await using var backend = await MeshBackend.StartAsync("orders-0", Unchecked(bad), PeerAuthenticationMode.Strict);
        await using var provider = Client(backend, []);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var error = await Assert.ThrowsAsync<ServiceMeshException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.Contains("refused", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, backend.Hits);
    }

    [Theory]
    [MemberData(nameof(BadKinds))]
    public async Task Get_ClientPresentsBadCertificate_ServerRefuses(string kind)
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Permissive);
        var bad = _ca.BadCertificate(_foreign, kind);
        await using var provider = Client(backend, [Exact(Orders)], clientStore: Unchecked(bad));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Strict_PlaintextAndTlsWithoutClientCertificate_Refused()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Strict, HttpProtocols.Http1);
        using var plain = new HttpClient();

        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(new Uri($"http://127.0.0.1:{backend.Port}/")));
        Assert.False(await TlsWithoutClientCertificateGetsResponseAsync(backend.Port));
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Permissive_PlaintextAndMtlsOnOnePort_BothServed()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Permissive, HttpProtocols.Http1);
        using var plain = new HttpClient();
        await using var provider = Client(backend, [Exact(Orders)]);
        var mesh = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.Equal("orders-0", await plain.GetStringAsync(new Uri($"http://127.0.0.1:{backend.Port}/")));
        Assert.Equal("orders-0", await mesh.GetStringAsync(new Uri("http://orders/")));

        var seen = backend.Requests.ToArray();
        Assert.Null(seen[0].ClaimSpiffeId);
        Assert.Null(seen[0].FeatureSpiffeId);
        Assert.Equal(Frontend, seen[1].ClaimSpiffeId);
    }

    [Fact]
    public async Task Disable_Mtls_Refused_PlaintextServed()
    {
        await using var backend = await MeshBackend.StartAsync("orders-0", _ca.Store(_ca.Issue([Orders])), PeerAuthenticationMode.Disable, HttpProtocols.Http1);
        using var plain = new HttpClient();
        await using var provider = Client(backend, [Exact(Orders)]);
        var mesh = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.Equal("orders-0", await plain.GetStringAsync(new Uri($"http://127.0.0.1:{backend.Port}/")));
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => mesh.GetStringAsync(new Uri("http://orders/")));
        Assert.Equal(1, backend.Hits);
    }

    [Fact]
    public async Task Get_ServerCertificateRotated_NewConnectionsUseItWithoutRestart()
    {
        var serverStore = _ca.Store(_ca.Issue([Orders]));
        await using var backend = await MeshBackend.StartAsync("orders-0", serverStore, PeerAuthenticationMode.Strict, HttpProtocols.Http1);
        await using var provider = Client(backend, [Exact(Orders)]);
        var pools = provider.GetRequiredService<Mesh.Client.Http.EndpointConnectionPools>();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        await client.GetStringAsync(new Uri("http://orders/"));

        // A rotated SVID for the same identity; a changed cluster (other expected SANs) forces a new connection.
        var rotated = _ca.Issue([Orders]);
        serverStore.SetCertificate(new WorkloadCertificate(rotated, [_ca.Intermediate!], SpiffeId.Parse(Orders)));
        var source = provider.GetRequiredService<FixedSnapshotSource>();
        source.Set(Snapshot(backend, [Exact(Orders), Exact(TestCa.Id("orders-canary"))]));
        await client.GetStringAsync(new Uri("http://orders/"));

        Assert.Equal(2, backend.Connections);
        Assert.Equal(2, backend.Hits);
        Assert.True(pools.Count >= 2);
    }

    private static StringMatch Exact(string value) => new(StringMatchKind.Exact, value, false);

    private static StringMatch Prefix(string value) => new(StringMatchKind.Prefix, value, false);

    /// <summary>A store holding a certificate as-is (the bad ones would not pass our own issuance checks).</summary>
    private WorkloadCertificateStore Unchecked(System.Security.Cryptography.X509Certificates.X509Certificate2 leaf)
    {
        var store = new WorkloadCertificateStore(true, "cluster.local", _ca.Bundle);
        SvidValidator.TryGetSpiffeId(leaf, out var uri, out _);
        var id = SpiffeId.TryParse(uri, out var parsed, out _) ? parsed : SpiffeId.Parse(Orders);
        store.SetCertificate(new WorkloadCertificate(leaf, _ca.Intermediate is null ? [] : [_ca.Intermediate], id));
        return store;
    }

    private ServiceProvider Client(MeshBackend backend, StringMatch[] expected, Action<IServiceCollection>? configure = null, WorkloadCertificateStore? clientStore = null)
    {
        var source = new FixedSnapshotSource(Snapshot(backend, expected));
        var services = MeshServices.Create(source);
        services.AddSingleton(source);
        services.AddSingleton<IWorkloadCertificateSource>(clientStore ?? _ca.Store(_ca.Issue([Frontend])));
        configure?.Invoke(services);
        return services.BuildServiceProvider();
    }

    private static MeshSnapshot Snapshot(MeshBackend backend, StringMatch[] expected)
    {
        var name = TestSnapshots.Names.Qualify("orders");
        var cluster = new MeshCluster($"outbound|80||{name}", name, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(backend.Port)], tls: new UpstreamTlsSettings([.. expected]));
        var service = TestSnapshots.Service("orders", 80, cluster);
        return new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [cluster]);
    }

    [Fact]
    public async Task RawTcpOverMtls_ClientSendsItsBytesAndFinRightAfterTheHandshake_AllAreServed()
    {
        // A client may half-close as soon as it has written (a sidecar's TCP tunnel passing its client's FIN on): the bytes
        // and the FIN arrive together, often before the server's side of the handshake has returned. Kestrel reports that
        // FIN as ConnectionClosed, which must not cancel the handshake (it did: the connection was dropped, bytes unread).
        using var serverLeaf = _ca.Issue([Orders]);
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(serverLeaf));
        builder.Services.AddSingleton<IPeerAuthenticationModeSource>(new StaticPeerAuthenticationModeSource(PeerAuthenticationMode.Strict));
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<MeshExcludedListeners>();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
        {
            MeshSecurityRegistration.UseMeshInbound(listen, kestrel.ApplicationServices);
            listen.Use(_ => EchoUntilTheEndAsync);
        }));
        await using var server = builder.Build();
        await server.StartAsync();
        var port = new Uri(server.Urls.Single()).Port;
        using var client = _ca.Issue([Frontend]);

        for (var i = 0; i < 100; i++)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(IPAddress.Loopback, port);
            await using var ssl = new SslStream(new NetworkStream(socket, ownsSocket: false));
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await ssl.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = "orders",
                    ClientCertificateContext = SslStreamCertificateContext.Create(client, _ca.Intermediate is { } intermediate ? [intermediate] : [], offline: true),
                    RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is X509Certificate2 presented && presented.Thumbprint == serverLeaf.Thumbprint,
                },
                timeout.Token);
            await ssl.WriteAsync(Encoding.ASCII.GetBytes($"bytes-{i}"), timeout.Token);
            socket.Shutdown(SocketShutdown.Send);

            using var echoed = new MemoryStream();
            try
            {
                await ssl.CopyToAsync(echoed, timeout.Token);
            }
            catch (IOException)
            {
                // Asserted below: a dropped connection echoes nothing.
            }

            Assert.Equal($"bytes-{i}", Encoding.ASCII.GetString(echoed.ToArray()));
        }
    }

    private static async Task EchoUntilTheEndAsync(ConnectionContext connection)
    {
        var (input, output) = (connection.Transport.Input, connection.Transport.Output);
        while (true)
        {
            var read = await input.ReadAsync();
            foreach (var segment in read.Buffer)
            {
                await output.WriteAsync(segment);
            }

            input.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                break;
            }
        }
    }

    private static async Task<bool> TlsWithoutClientCertificateGetsResponseAsync(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var ssl = new SslStream(tcp.GetStream());
        try
        {
            await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "orders",
                // The test asserts on what the server does, so the server's (valid) SVID is taken as it is.
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null,
                ApplicationProtocols = [SslApplicationProtocol.Http11],
            });
            await ssl.WriteAsync(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\nHost: orders\r\n\r\n"));
            var buffer = new byte[256];
            return await ssl.ReadAsync(buffer) > 0;
        }
        catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException)
        {
            return false;
        }
    }
}
