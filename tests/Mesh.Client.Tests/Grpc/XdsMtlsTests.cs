using System.Collections.Immutable;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.ClientFactory;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Mesh.Client.Xds;
using Mesh.Client.Tests.Support;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Grpc;

/// <summary>
/// <c>xds:///</c> gRPC channels (Grpc.Net.Client's balancer and subchannels) against real Kestrel backends with the mesh
/// inbound middleware: mTLS when the cluster carries an UpstreamTlsContext, plaintext when it does not.
/// </summary>
public sealed class XdsMtlsTests : IDisposable
{
    private static readonly string Inventory = TestCa.Id("inventory");
    private static readonly string Frontend = TestCa.Id("frontend");
    private static readonly string Payments = TestCa.Id("payments");

    private readonly TestCa _ca = new(intermediate: true);

    public void Dispose() => _ca.Dispose();

    public static TheoryData<string> Ways => new() { "channel", "client-factory" };

    [Theory]
    [MemberData(nameof(Ways))]
    public async Task Call_MtlsCluster_StrictServersSeeTheClientSvid(string way)
    {
        await using var first = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Strict);
        await using var second = await StartBackendAsync("inventory-1", Inventory, PeerAuthenticationMode.Strict);
        await using var provider = Client(Snapshot([first, second], Exact(Inventory)));
        using var channel = way == "channel" ? provider.CreateMeshGrpcChannel("xds:///inventory") : null;
        var client = channel is null ? provider.GetRequiredService<Greeter.GreeterClient>() : new Greeter.GreeterClient(channel);

        var seen = new HashSet<string>();
        for (var i = 0; i < 10; i++)
        {
            seen.Add((await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.Equal(["inventory-0", "inventory-1"], seen.Order());
        Assert.All(first.Requests.Concat(second.Requests), request =>
        {
            Assert.True(request.HasClientCertificate);
            Assert.Equal(Frontend, request.ClaimSpiffeId);
            Assert.Equal("HTTP/2", request.Protocol);
            Assert.Equal("inventory", request.Host); // the target's authority, as gRPC sends it — not the picked IP:port
        });
        Assert.Equal(10, first.Hits + second.Hits);
    }

    [Theory]
    [MemberData(nameof(Ways))]
    public async Task Call_ServerHoldsOtherIdentity_FailsNamingBothIdentitiesAndSendsNothing(string way)
    {
        await using var backend = await StartBackendAsync("inventory-0", Payments, PeerAuthenticationMode.Strict);
        await using var provider = Client(Snapshot([backend], Exact(Inventory)));
        using var channel = way == "channel" ? provider.CreateMeshGrpcChannel("xds:///inventory") : null;
        var client = channel is null ? provider.GetRequiredService<Greeter.GreeterClient>() : new Greeter.GreeterClient(channel);

        var error = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Contains("mTLS handshake with 'inventory", error.Status.Detail, StringComparison.Ordinal);
        Assert.Contains($"Expected identity: {Inventory}", error.Status.Detail, StringComparison.Ordinal);
        Assert.Contains($"presented: {Payments}", error.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Call_ClusterWithoutTls_StaysPlaintext()
    {
        await using var backend = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Permissive);
        await using var provider = Client(Snapshot([backend], expected: null));
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");

        var reply = await new Greeter.GreeterClient(channel).HelloAsync(new HelloRequest());

        Assert.Equal("inventory-0", reply.Backend);
        var request = Assert.Single(backend.Requests);
        Assert.False(request.HasClientCertificate);
        Assert.Null(request.ClaimSpiffeId);
    }

    [Fact]
    public async Task Call_PlainGrpcChannelToStrictServer_Fails()
    {
        // What CreateMeshGrpcChannel is for: a channel built by hand has no mesh handler and dials plaintext.
        await using var backend = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Strict);
        await using var provider = Client(Snapshot([backend], Exact(Inventory)));
        using var channel = GrpcChannel.ForAddress("xds:///inventory", new GrpcChannelOptions { ServiceProvider = provider, Credentials = ChannelCredentials.Insecure });

        var error = await Assert.ThrowsAsync<RpcException>(async () => await new Greeter.GreeterClient(channel).HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Call_ExpectedIdentityChanges_OpenConnectionClosedAndNextHandshakeUsesIt()
    {
        await using var backend = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Strict);
        var source = new FixedSnapshotSource(Snapshot([backend], Exact(Inventory)));
        await using var provider = Client(source);
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);
        await client.HelloAsync(new HelloRequest());

        // The control plane now says inventory runs as payments: the open connection's peer no longer qualifies.
        source.Set(Snapshot([backend], Exact(Payments)));
        var detail = await NextRefusalAsync(client);

        Assert.Contains($"Expected identity: {Payments}", detail, StringComparison.Ordinal);
        Assert.Contains($"presented: {Inventory}", detail, StringComparison.Ordinal);
        Assert.Equal(1, backend.Hits);

        source.Set(Snapshot([backend], Exact(Inventory)));
        await Poll.UntilAsync(() => TryCall(client), "calls succeed again once the expected identity is restored");
    }

    [Fact]
    public async Task Call_ClusterGainsTlsContext_PlaintextConnectionClosedAndNextCallsUseMtls()
    {
        await using var backend = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Permissive);
        var source = new FixedSnapshotSource(Snapshot([backend], expected: null));
        await using var provider = Client(source);
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);
        await client.HelloAsync(new HelloRequest());

        source.Set(Snapshot([backend], Exact(Inventory)));
        await Poll.UntilAsync(() => TryCall(client), "a call succeeds after the cluster gained its TLS context");

        var requests = backend.Requests.ToArray();
        Assert.False(requests[0].HasClientCertificate);
        Assert.All(requests[1..], request => Assert.Equal(Frontend, request.ClaimSpiffeId));
    }

    [Fact]
    public async Task Call_ClientSvidRotated_NewConnectionsPresentItWithoutRestart()
    {
        await using var backend = await StartBackendAsync("inventory-0", Inventory, PeerAuthenticationMode.Strict);
        var clientStore = _ca.Store(_ca.Issue([Frontend]));
        var source = new FixedSnapshotSource(Snapshot([backend], Exact(Inventory)));
        await using var provider = Client(source, clientStore);
        using (var before = provider.CreateMeshGrpcChannel("xds:///inventory"))
        {
            await new Greeter.GreeterClient(before).HelloAsync(new HelloRequest());
        }

        // Channels share the mesh's per-endpoint connection pools; a changed cluster (other expected SANs) forces a new connection.
        var rotated = _ca.Issue([Frontend]);
        clientStore.SetCertificate(new WorkloadCertificate(rotated, [_ca.Intermediate!], SpiffeId.Parse(Frontend)));
        source.Set(Snapshot([backend], Exact(Inventory), Exact(Payments)));
        using var after = provider.CreateMeshGrpcChannel("xds:///inventory");
        await new Greeter.GreeterClient(after).HelloAsync(new HelloRequest());

        var thumbprints = backend.Requests.Select(r => r.ClientCertificateThumbprint).ToArray();
        Assert.Equal(2, thumbprints.Length);
        Assert.NotEqual(thumbprints[0], thumbprints[1]);
        Assert.Equal(rotated.Thumbprint, thumbprints[1]);
    }

    [Fact]
    public async Task CreateMeshGrpcChannel_NotAnXdsAddressOrSecureCredentials_Throws()
    {
        await using var provider = Client(Snapshot([], Exact(Inventory)));

        var http = Assert.Throws<ArgumentException>(() => provider.CreateMeshGrpcChannel("http://inventory"));
        var secure = Assert.Throws<ArgumentException>(() => provider.CreateMeshGrpcChannel("xds:///inventory", o => o.Credentials = ChannelCredentials.SecureSsl));

        Assert.Contains("AddGrpcClient", http.Message, StringComparison.Ordinal);
        Assert.Contains("Credentials", secure.Message, StringComparison.Ordinal);
    }

    private static StringMatch Exact(string value) => new(StringMatchKind.Exact, value, false);

    private Task<MeshBackend> StartBackendAsync(string name, string identity, PeerAuthenticationMode mode) =>
        MeshBackend.StartAsync(name, _ca.Store(_ca.Issue([identity])), mode, HttpProtocols.Http2);

    private ServiceProvider Client(MeshSnapshot snapshot, WorkloadCertificateStore? clientStore = null) =>
        Client(new FixedSnapshotSource(snapshot), clientStore);

    private ServiceProvider Client(FixedSnapshotSource source, WorkloadCertificateStore? clientStore = null)
    {
        var services = MeshServices.Create(source);
        services.AddSingleton<IWorkloadCertificateSource>(clientStore ?? _ca.Store(_ca.Issue([Frontend])));
        services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("xds:///inventory"))
            .ConfigureChannel(o => o.Credentials = ChannelCredentials.Insecure);
        return services.BuildServiceProvider();
    }

    private static MeshSnapshot Snapshot(IEnumerable<MeshBackend> backends, StringMatch? expected, StringMatch? alsoExpected = null)
    {
        var name = TestSnapshots.Names.Qualify("inventory");
        var cluster = new MeshCluster(
            $"outbound|80||{name}",
            name,
            LoadBalancingPolicy.RoundRobin,
            [.. backends.Select(b => TestSnapshots.Endpoint(b.Port))],
            tls: expected is null ? null : new UpstreamTlsSettings(alsoExpected is null ? ImmutableArray.Create(expected) : ImmutableArray.Create(expected, alsoExpected)));
        return new MeshSnapshot("test", TestSnapshots.Bind("inventory", TestSnapshots.Service("inventory", 80, cluster)), [cluster]);
    }

    /// <summary>Calls until the mesh refuses the server's identity; any call that succeeds meanwhile fails the test.</summary>
    private static async Task<string> NextRefusalAsync(Greeter.GreeterClient client)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            Assert.True(DateTime.UtcNow < deadline, "no call was refused for the server's identity");
            try
            {
                await client.HelloAsync(new HelloRequest());
                Assert.Fail("a call reached inventory after the control plane changed the identity it must present");
            }
            catch (RpcException ex) when (ex.Status.Detail.Contains("Expected identity", StringComparison.Ordinal))
            {
                return ex.Status.Detail;
            }
            catch (RpcException)
            {
                // The closed connection's in-flight teardown; the next call dials anew.
            }
        }
    }

    private static bool TryCall(Greeter.GreeterClient client)
    {
        try
        {
            client.Hello(new HelloRequest());
            return true;
        }
        catch (RpcException)
        {
            return false;
        }
    }
}
