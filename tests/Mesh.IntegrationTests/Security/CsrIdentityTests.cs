using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Xds.Istio.Auth.V1;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>security.md §5 test 14: a CSR naming another identity, sent with the caller's own token.</summary>
public sealed class CsrIdentityTests(ITestOutputHelper output)
{
    [Fact]
    public async Task CsrAskingForAnotherServiceAccountOrNamespace_IsIssuedForTheTokensIdentityOnly()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        // Several CSRs from one caller: a reusable token, deliberately (tokens are single-use by default).
        var token = await mesh.ControlPlane.MintTokenAsync("a", reusable: true);
        var asks = new[] { SpiffeId("b"), SpiffeId("orders", "kube-system"), SpiffeId("a", trustDomain: "evil.org") };

        using var root = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(mesh.ControlPlane.RootCertificate));
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, certificate, _, _) => ChainsTo(certificate, root) },
        };
        using var channel = GrpcChannel.ForAddress(mesh.ControlPlane.SecureAddress, new GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = false });
        var ca = new IstioCertificateService.IstioCertificateServiceClient(channel);

        var foreign = 0;
        foreach (var ask in asks)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest(new X500DistinguishedName("CN=" + ask.Split('/')[^1]), key, HashAlgorithmName.SHA256);
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri(ask));
            request.CertificateExtensions.Add(san.Build());
            var reply = await ca.CreateCertificateAsync(
                new IstioCertificateRequest { Csr = request.CreateSigningRequestPem(), ValidityDuration = 600 },
                new Metadata { { "authorization", $"Bearer {token}" } });

            using var leaf = X509Certificate2.CreateFromPem(reply.CertChain[0]);
            var sans = UriSans(leaf);
            output.WriteLine($"CSR for {ask} → issued URI SANs [{string.Join(", ", sans)}], subject '{leaf.Subject}', serial {leaf.SerialNumber}");
            Assert.Equal([SpiffeId("a")], sans);
            Assert.Equal(string.Empty, leaf.Subject);
            Assert.True(ChainsTo(leaf, root), "the issued certificate chains to the mesh root");
            if (sans.Any(s => s != SpiffeId("a")))
            {
                foreign++;
            }
        }

        Console.WriteLine($"[csr-other-identity] {asks.Length} CSRs naming another identity with a token for sa/a: certificates carrying a foreign ID {foreign}");
        Assert.Equal(0, foreign);
    }

    private static bool ChainsTo(X509Certificate? certificate, X509Certificate2 root)
    {
        if (certificate is null)
        {
            return false;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var presented = new X509Certificate2(certificate);
        return chain.Build(presented);
    }
}
