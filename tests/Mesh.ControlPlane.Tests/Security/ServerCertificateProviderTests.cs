using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>The secure port's handshake with whatever certificate a caller on the network makes up.</summary>
public sealed class ServerCertificateProviderTests
{
    /// <summary>
    /// The secure port accepts any client certificate at the TLS level (the authenticators decide what it proves), but it
    /// must not fetch the issuer URL a caller's certificate names: the platform would, synchronously, for up to 15 s per
    /// handshake, so a few connections would hold the control plane's threads.
    /// </summary>
    [Fact]
    public async Task Handshake_ClientCertificateWithUnreachableIssuerUrl_AcceptedForTheAuthenticatorsWithoutFetching()
    {
        using var issuerUrl = new TcpListener(IPAddress.Loopback, 0);
        issuerUrl.Start();
        var fetches = 0;
        var trap = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    _ = await issuerUrl.AcceptSocketAsync(); // held open, never answered
                    Interlocked.Increment(ref fetches);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // The test ended.
            }
        });
        var dir = SecureHost.NewRoot();
        try
        {
            using var ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = dir }, TimeProvider.System);
            var provider = new ServerCertificateProvider(ca, TimeProvider.System, NullLogger<ServerCertificateProvider>.Instance);
            using var rogue = RogueLeaf($"http://127.0.0.1:{((IPEndPoint)issuerUrl.LocalEndpoint).Port}/issuer.crt");
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            using var tcp = new TcpClient();
            var accept = listener.AcceptTcpClientAsync();
            await tcp.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            using var accepted = await accept;
            await using var server = new SslStream(accepted.GetStream());
            await using var client = new SslStream(tcp.GetStream());

            var clock = Stopwatch.StartNew();
            var serverSide = server.AuthenticateAsServerAsync(provider.CreateSslOptions());
            var clientSide = client.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                ApplicationProtocols = [SslApplicationProtocol.Http2],
                ClientCertificateContext = SslStreamCertificateContext.Create(rogue, [], offline: true),
                RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null, // the caller takes any server
            });
            await Task.WhenAll(serverSide, clientSide).WaitAsync(TimeSpan.FromSeconds(30));
            clock.Stop();

            Assert.Equal(0, Volatile.Read(ref fetches));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the handshake took {clock.Elapsed}: the issuer URL was waited for");
            Assert.Equal(rogue.Thumbprint, Assert.IsType<X509Certificate2>(server.RemoteCertificate).Thumbprint);
        }
        finally
        {
            issuerUrl.Stop();
            await trap;
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A leaf of a foreign intermediate, presented without it, naming <paramref name="issuerUrl"/> as where its issuer is.</summary>
    private static X509Certificate2 RogueLeaf(string issuerUrl)
    {
        var now = DateTimeOffset.UtcNow;
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest("O=evil", rootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var root = rootRequest.CreateSelfSigned(now.AddDays(-1), now.AddYears(1));
        using var intermediateKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var intermediateRequest = new CertificateRequest("O=evil-intermediate", intermediateKey, HashAlgorithmName.SHA256);
        intermediateRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var intermediateIssued = intermediateRequest.Create(root, now.AddDays(-1), now.AddMonths(6), RandomNumberGenerator.GetBytes(16));
        using var intermediate = intermediateIssued.CopyWithPrivateKey(intermediateKey);

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/orders"));
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509AuthorityInformationAccessExtension(ocspUris: null, caIssuersUris: [issuerUrl]));
        using var issued = request.Create(intermediate, now.AddMinutes(-2), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        return issued.CopyWithPrivateKey(key);
    }
}
