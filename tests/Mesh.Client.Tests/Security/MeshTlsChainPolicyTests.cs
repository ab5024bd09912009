using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Security;

namespace Mesh.Client.Tests.Security;

/// <summary>
/// A peer on the network presents a certificate whose issuer is missing and whose Authority Information Access names an
/// issuer URL. The platform's chain engine fetches such URLs by default, synchronously, for up to 15 s, on the
/// handshake's thread: a mesh handshake must refuse the certificate without fetching anything, on both sides.
/// </summary>
public sealed class MeshTlsChainPolicyTests : IDisposable
{
    private readonly TestCa _mesh = new();
    private readonly TestCa _foreign = new("evil", intermediate: true);
    private readonly TcpListener _issuerUrl = new(IPAddress.Loopback, 0);
    private int _fetches;

    public MeshTlsChainPolicyTests()
    {
        // Where the rogue certificate says its issuer can be downloaded: accepts and never answers.
        _issuerUrl.Start();
        _ = CountFetchesAsync();
    }

    [Fact]
    public async Task ServerHandshake_ClientCertificateWithUnreachableIssuerUrl_RefusedWithoutFetching()
    {
        using var store = _mesh.Store(_mesh.Issue([TestCa.Id("orders")]));
        using var rogue = RogueLeaf();
        var validation = new PeerValidation();

        await RefusedWithoutFetchingAsync(
            mesh: stream => stream.AuthenticateAsServerAsync(MeshTls.ServerOptions(store, TimeProvider.System, [SslApplicationProtocol.Http11], validation)),
            attacker: stream => stream.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "orders",
                ClientCertificateContext = SslStreamCertificateContext.Create(rogue, [], offline: true),
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null, // the attacker takes any server
            }),
            meshIsServer: true);
        Assert.NotNull(validation.Error);
    }

    [Fact]
    public async Task ClientHandshake_ServerCertificateWithUnreachableIssuerUrl_RefusedWithoutFetching()
    {
        using var store = _mesh.Store(_mesh.Issue([TestCa.Id("frontend")]));
        using var rogue = RogueLeaf();
        var validation = new PeerValidation();

        await RefusedWithoutFetchingAsync(
            mesh: stream => stream.AuthenticateAsClientAsync(MeshTls.ClientOptions(store, TimeProvider.System, "orders", http2: false, _ => true, validation)),
            attacker: stream => stream.AuthenticateAsServerAsync(new SslServerAuthenticationOptions
            {
                ServerCertificateContext = SslStreamCertificateContext.Create(rogue, [], offline: true),
            }),
            meshIsServer: false);
        Assert.NotNull(validation.Error);
    }

    /// <summary>Runs both sides of a handshake; the mesh's side must fail, promptly, and the trap must see no fetch.</summary>
    private async Task RefusedWithoutFetchingAsync(Func<SslStream, Task> mesh, Func<SslStream, Task> attacker, bool meshIsServer)
    {
        var (server, client) = await ConnectedStreamsAsync();
        await using (server)
        await using (client)
        {
            var clock = Stopwatch.StartNew();
            var meshSide = mesh(meshIsServer ? server : client);
            var attackerSide = attacker(meshIsServer ? client : server);

            await Assert.ThrowsAnyAsync<AuthenticationException>(() => meshSide.WaitAsync(TimeSpan.FromSeconds(30)));
            clock.Stop();
            await EndedAsync(attackerSide);

            Assert.Equal(0, Volatile.Read(ref _fetches));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the handshake took {clock.Elapsed}: the issuer URL was waited for");
        }
    }

    public void Dispose()
    {
        _issuerUrl.Stop();
        _mesh.Dispose();
        _foreign.Dispose();
    }

    /// <summary>A leaf of the foreign CA's intermediate, presented without it, naming the trap as its issuer's URL.</summary>
    private X509Certificate2 RogueLeaf()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(TestCa.Id("orders")));
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(SvidProfile.ServerAuthOid), new Oid(SvidProfile.ClientAuthOid)], false));
        var port = ((IPEndPoint)_issuerUrl.LocalEndpoint).Port;
        request.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(ocspUris: null, caIssuersUris: [$"http://127.0.0.1:{port}/issuer.crt"]));
        var now = DateTimeOffset.UtcNow;
        using var issued = request.Create(_foreign.Intermediate!, now.AddMinutes(-2), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        return issued.CopyWithPrivateKey(key);
    }

    private async Task CountFetchesAsync()
    {
        try
        {
            while (true)
            {
                var connection = await _issuerUrl.AcceptSocketAsync().ConfigureAwait(false);
                Interlocked.Increment(ref _fetches);
                _ = connection; // held open, never answered, until the listener stops
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The test ended.
        }
    }

    /// <summary>The attacker's side of the handshake: with TLS 1.3 it may even complete before the refusal reaches it.</summary>
    private static async Task EndedAsync(Task handshake)
    {
        try
        {
            await handshake.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // Refused, as expected.
        }
    }

    private static async Task<(SslStream Server, SslStream Client)> ConnectedStreamsAsync()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var client = new TcpClient();
        var accept = listener.AcceptTcpClientAsync();
        await client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        var server = await accept;
        return (new SslStream(server.GetStream(), leaveInnerStreamOpen: false), new SslStream(client.GetStream(), leaveInnerStreamOpen: false));
    }
}
