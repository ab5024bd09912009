using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Tests.Security;

public class CertificateServiceTests
{
    private const string OrdersId = "spiffe://cluster.local/ns/default/sa/orders";

    [Fact]
    public async Task CreateCertificate_ValidToken_IssuesSpiffeX509Svid()
    {
        await using var cp = await SecureHost.StartAsync();
        var before = DateTimeOffset.UtcNow;

        var (chain, leaf) = await cp.IssueAsync(cp.Token("default", "orders"));

        Assert.Equal(2, chain.Count);
        Assert.Equal([OrdersId], CertificateAuthority.UriSans(leaf));
        var san = leaf.Extensions["2.5.29.17"]!;
        Assert.True(san.Critical, "SAN must be critical because the subject is empty");
        Assert.Equal(string.Empty, leaf.Subject);
        var constraints = leaf.Extensions.OfType<X509BasicConstraintsExtension>().Single();
        Assert.True(constraints.Critical);
        Assert.False(constraints.CertificateAuthority);
        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().Single();
        Assert.True(usage.Critical);
        Assert.Equal(X509KeyUsageFlags.DigitalSignature, usage.KeyUsages);
        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<Oid>().Select(o => o.Value).ToList();
        Assert.Contains("1.3.6.1.5.5.7.3.1", eku);
        Assert.Contains("1.3.6.1.5.5.7.3.2", eku);
        Assert.Equal(32, leaf.SerialNumber.Length);
        Assert.True(Convert.ToByte(leaf.SerialNumber[..2], 16) < 0x80, "serial must be positive");
        var backdate = before - new DateTimeOffset(leaf.NotBefore.ToUniversalTime());
        Assert.InRange(backdate, TimeSpan.FromSeconds(100), TimeSpan.FromSeconds(130));
        // Bought with a token: capped at ControlPlane:Bootstrap:MaxCertificateTtl (1 h), not Ca:DefaultTtl (24 h).
        var lifetime = new DateTimeOffset(leaf.NotAfter.ToUniversalTime()) - before;
        Assert.InRange(lifetime, TimeSpan.FromHours(1) - TimeSpan.FromSeconds(30), TimeSpan.FromHours(1) + TimeSpan.FromSeconds(30));
        var ski = leaf.Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single();
        Assert.NotNull(ski.SubjectKeyIdentifier);
        var aki = leaf.Extensions.OfType<X509AuthorityKeyIdentifierExtension>().Single();
        Assert.Equal(chain[1].Extensions.OfType<X509SubjectKeyIdentifierExtension>().Single().RawData.AsSpan(2).ToArray(), aki.KeyIdentifier!.Value.ToArray());
        Assert.Equal(chain[1].Thumbprint, cp.Ca.Roots[0].Thumbprint);
        AssertChainsTo(leaf, chain[1], []);
    }

    [Fact]
    public async Task CreateCertificate_ResponseChain_EachPemEndsWithNewline()
    {
        await using var cp = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var response = await cp.CaClient().CreateCertificateAsync(new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, SecureHost.Bearer(cp.Token("default", "orders")));

        Assert.True(response.CertChain.Count >= 2);
        Assert.All(response.CertChain, pem => Assert.EndsWith("-----END CERTIFICATE-----\n", pem, StringComparison.Ordinal));
    }

    [Fact]
    public async Task CreateCertificate_CsrAsksForAnotherIdentity_CertificateCarriesTokenIdentity()
    {
        await using var cp = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var csr = SecureHost.Csr(key, "CN=spiffe://cluster.local/ns/default/sa/b", request =>
        {
            var san = new SubjectAlternativeNameBuilder();
            san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/b"));
            san.AddDnsName("b.default.svc.cluster.local");
            request.CertificateExtensions.Add(san.Build());
        });

        var response = await cp.CaClient().CreateCertificateAsync(new IstioCertificateRequest { Csr = csr }, SecureHost.Bearer(cp.Token("default", "a")));

        using var leaf = X509Certificate2.CreateFromPem(response.CertChain[0]);
        Assert.Equal(["spiffe://cluster.local/ns/default/sa/a"], CertificateAuthority.UriSans(leaf));
        Assert.Equal(string.Empty, leaf.Subject);
        Assert.Empty(leaf.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single().EnumerateDnsNames());
    }

    public static TheoryData<string, string> BadCsrs()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var rsa1024 = RSA.Create(1024);
        using var p521 = ECDsa.Create(ECCurve.NamedCurves.nistP521);
        using var secp256k1 = ECDsa.Create(ECCurve.CreateFromFriendlyName("secp256k1"));
        var valid = SecureHost.Csr(ec);
        var fields = PemEncoding.Find(valid);
        var tampered = Convert.FromBase64String(valid[fields.Base64Data]);
        tampered[^5] ^= 0x55;
        return new()
        {
            { "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n-----END CERTIFICATE REQUEST-----\n", "csr is not a valid PEM PKCS#10 request" },
            { "hello", "csr is not a valid PEM PKCS#10 request" },
            { PemEncodingText(tampered), "csr is not a valid PEM PKCS#10 request" },
            { SecureHost.Csr(ec, configure: r => r.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true))), "csr requests a CA certificate (basic constraints CA:true)" },
            { SecureHost.Csr(rsa1024), "csr key is RSA 1024 bits; RSA keys must have at least 2048 bits" },
            { valid + new string(' ', 64 * 1024), "the limit is 65536 bytes (64 KiB)" },
            { SecureHost.Csr(p521), "csr key is ECDSA on curve P-521 (secp521r1); only P-256, P-384 and RSA of at least 2048 bits are accepted" },
            { SecureHost.Csr(secp256k1), "csr key is ECDSA on curve secp256k1; only P-256, P-384" },
            { Ed25519Csr(), "csr key algorithm Ed25519 (1.3.101.112) is not accepted; use ECDSA P-256/P-384 or RSA of at least 2048 bits" },
            // A decoy block with an accepted key in front of the real request: one parser must not check one key and certify another.
            { Relabel(valid, "DECOY") + SecureHost.Csr(p521), "csr PEM block is labelled 'DECOY'; exactly one block labelled 'CERTIFICATE REQUEST' is accepted" },
            { Relabel(valid, "DECOY") + SecureHost.Csr(secp256k1), "csr PEM block is labelled 'DECOY'" },
            { Relabel(valid, "CERTIFICATE"), "csr PEM block is labelled 'CERTIFICATE'; exactly one block labelled 'CERTIFICATE REQUEST' is accepted" },
            { valid + "\n" + SecureHost.Csr(p521), "csr has more than one PEM block; exactly one block labelled 'CERTIFICATE REQUEST' is accepted" },
            { valid + "\n" + Relabel(valid, "DECOY"), "csr has more than one PEM block" },
        };
    }

    private static string Relabel(string pem, string label)
    {
        var fields = PemEncoding.Find(pem);
        return PemEncoding.WriteString(label, Convert.FromBase64String(pem[fields.Base64Data])) + "\n";
    }

    /// <summary>A PKCS#10 request with an Ed25519 key, written by hand: .NET cannot make one, a workload in another language can.</summary>
    private static string Ed25519Csr()
    {
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            using (writer.PushSequence())
            {
                writer.WriteInteger(0);
                writer.WriteEncodedValue(new X500DistinguishedName("CN=workload").RawData);
                using (writer.PushSequence())
                {
                    using (writer.PushSequence())
                    {
                        writer.WriteObjectIdentifier("1.3.101.112");
                    }

                    writer.WriteBitString(RandomNumberGenerator.GetBytes(32));
                }

                using (writer.PushSetOf(new Asn1Tag(TagClass.ContextSpecific, 0)))
                {
                    // attributes [0]: none
                }
            }

            using (writer.PushSequence())
            {
                writer.WriteObjectIdentifier("1.3.101.112");
            }

            writer.WriteBitString(RandomNumberGenerator.GetBytes(64));
        }

        return PemEncoding.WriteString("CERTIFICATE REQUEST", writer.Encode());
    }

    private static Dictionary<string, object> WithoutJti(Dictionary<string, object> claims)
    {
        claims.Remove("jti");
        return claims;
    }

    [Theory]
    [MemberData(nameof(BadCsrs))]
    public async Task CreateCertificate_BadCsr_InvalidArgument(string csr, string expected)
    {
        await using var cp = await SecureHost.StartAsync();

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = csr }, SecureHost.Bearer(cp.Token("default", "orders"))).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_Rsa2048AndP384_Accepted()
    {
        await using var cp = await SecureHost.StartAsync();
        using var rsa = RSA.Create(2048);
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var client = cp.CaClient();

        var rsaResponse = await client.CreateCertificateAsync(new IstioCertificateRequest { Csr = SecureHost.Csr(rsa) }, SecureHost.Bearer(cp.Token("default", "orders")));
        var p384Response = await client.CreateCertificateAsync(new IstioCertificateRequest { Csr = SecureHost.Csr(p384) }, SecureHost.Bearer(cp.Token("default", "orders")));

        using var rsaLeaf = X509Certificate2.CreateFromPem(rsaResponse.CertChain[0]);
        Assert.Equal(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, rsaLeaf.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages);
        using var p384Leaf = X509Certificate2.CreateFromPem(p384Response.CertChain[0]);
        Assert.Equal(384, p384Leaf.GetECDsaPublicKey()!.KeySize);
    }

    [Fact]
    public async Task CreateCertificate_TtlAboveMax_InvalidArgumentNamingBoth()
    {
        await using var cp = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key), ValidityDuration = 8_000_000 }, SecureHost.Bearer(cp.Token("default", "orders"))).ResponseAsync);

        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.StartsWith("validity_duration 8000000 s exceeds the maximum 7776000 s", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_RequestedTtl_IsHonoured()
    {
        await using var cp = await SecureHost.StartAsync();
        var before = DateTimeOffset.UtcNow;

        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "orders"), ttlSeconds: 3600);

        Assert.InRange(new DateTimeOffset(leaf.NotAfter.ToUniversalTime()) - before, TimeSpan.FromMinutes(59), TimeSpan.FromMinutes(61));
    }

    public static TheoryData<string, string> BadTokens() => new()
    {
        { "expired", "bearer token expired at" },
        { "forged", "bearer token signature does not verify" },
        { "none", "bearer token alg 'none' is not accepted" },
        { "hs256", "bearer token alg 'HS256' is not accepted" },
        { "audience", "bearer token audience \"istio-ca\" is wrong; it must be 'mesh-ca'" },
        { "garbage", "bearer token is not a compact JWS" },
        { "issuer", "bearer token issuer 'kubernetes/serviceaccount' is not 'mesh-control-plane'" },
        { "notyet", "bearer token is not valid before" },
        { "nojti", "bearer token has no jti claim" },
        { "reserved", "bearer token names spiffe://cluster.local/ns/mesh-system/sa/mesh-control-plane is a reserved identity (the control plane's own)" },
    };

    [Theory]
    [MemberData(nameof(BadTokens))]
    public async Task CreateCertificate_BadToken_UnauthenticatedSayingWhy(string kind, string expected)
    {
        await using var cp = await SecureHost.StartAsync();
        using var foreignKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var es256 = new Dictionary<string, object> { ["alg"] = "ES256", ["typ"] = "JWT" };
        var token = kind switch
        {
            "expired" => SecureHost.Jws(es256, SecureHost.Claims(exp: DateTimeOffset.UtcNow.AddMinutes(-5)), cp.TokenSigningKey()),
            "forged" => SecureHost.Jws(es256, SecureHost.Claims(), foreignKey),
            "none" => SecureHost.Jws(new Dictionary<string, object> { ["alg"] = "none" }, SecureHost.Claims(), null),
            "hs256" => SecureHost.Jws(new Dictionary<string, object> { ["alg"] = "HS256" }, SecureHost.Claims(), cp.TokenSigningKey()),
            "audience" => SecureHost.Jws(es256, SecureHost.Claims(aud: "istio-ca"), cp.TokenSigningKey()),
            "issuer" => SecureHost.Jws(es256, SecureHost.Claims(iss: "kubernetes/serviceaccount"), cp.TokenSigningKey()),
            "notyet" => SecureHost.Jws(es256, SecureHost.Claims(nbf: DateTimeOffset.UtcNow.AddMinutes(10)), cp.TokenSigningKey()),
            "nojti" => SecureHost.Jws(es256, WithoutJti(SecureHost.Claims()), cp.TokenSigningKey()),

            // Signed with our own key, as an older build (which had no reserved identities) would have minted it.
            "reserved" => SecureHost.Jws(es256, SecureHost.Claims(ns: "mesh-system", sa: "mesh-control-plane"), cp.TokenSigningKey()),
            _ => "not-a-token",
        };
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, SecureHost.Bearer(token)).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_NoCredential_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(new IstioCertificateRequest { Csr = SecureHost.Csr(key) }).ResponseAsync);

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains("no credential", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_RenewalWithCurrentCertificate_SameIdentityNewCertificate()
    {
        await using var cp = await SecureHost.StartAsync();
        var (_, first) = await cp.IssueAsync(cp.Token("default", "orders"));

        var (chain, second) = await cp.IssueAsync(clientCertificate: first);

        Assert.Equal([OrdersId], CertificateAuthority.UriSans(second));
        Assert.NotEqual(first.SerialNumber, second.SerialNumber);
        AssertChainsTo(second, chain[^1], []);
    }

    [Fact]
    public async Task CreateCertificate_CertificateFromForeignCa_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync();
        await using var other = await SecureHost.StartAsync();
        var (_, foreign) = await other.IssueAsync(other.Token("default", "orders"));

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(clientCertificate: foreign));

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains("client certificate: certificate 'spiffe://cluster.local/ns/default/sa/orders'", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("is not issued by a CA of the trust bundle from this control plane's CA (foreign CA or self-signed", ex.Status.Detail, StringComparison.Ordinal);
    }

    public static TheoryData<string[], string> RenewalEkus => new()
    {
        { ["1.3.6.1.5.5.7.3.1"], "its extended key usage lacks clientAuth" },
        { [], "it has no extended key usage" },
    };

    // The hole: renewal validated the client certificate without the EKU check the client applies, so a
    // certificate not meant for client authentication bought a fresh SVID.
    [Theory]
    [MemberData(nameof(RenewalEkus))]
    public async Task CreateCertificate_RenewalWithCertificateLackingClientAuth_Unauthenticated(string[] ekus, string expected)
    {
        await using var cp = await SecureHost.StartAsync();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        if (ekus.Length > 0)
        {
            var oids = new OidCollection();
            foreach (var eku in ekus)
            {
                oids.Add(new Oid(eku));
            }

            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(oids, false));
        }

        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(OrdersId));
        request.CertificateExtensions.Add(san.Build(critical: true));
        var now = DateTimeOffset.UtcNow;
        using var signed = request.Create(cp.Ca.SigningCertificate, now.AddMinutes(-2), now.AddHours(1), RandomNumberGenerator.GetBytes(16));
        using var leaf = signed.CopyWithPrivateKey(key);

        var ex = await Assert.ThrowsAsync<RpcException>(() => cp.IssueAsync(clientCertificate: leaf));

        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Contains(expected, ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains($"client certificate: certificate '{OrdersId}'", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateCertificate_OnPlaintextPort_Unimplemented()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var client = new IstioCertificateService.IstioCertificateServiceClient(cp.PlaintextChannel());

        var ex = await Assert.ThrowsAsync<RpcException>(() => client.CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }, SecureHost.Bearer(cp.Token("default", "orders"))).ResponseAsync);

        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
        Assert.Contains("served only on the TLS port", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecurePort_ServerCertificate_IsControlPlaneSvidWithLocalhostNames()
    {
        await using var cp = await SecureHost.StartAsync();
        X509Certificate2? seen = null;
        using var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
        {
            seen = certificate is null ? null : X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
            return seen is not null && ChainsTo(seen, cp.Ca.Roots[0]);
        };
        using var http = new HttpClient(handler) { DefaultRequestVersion = new Version(2, 0), DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        var bundle = await http.GetStringAsync(new Uri(cp.Host.SecureAddress, "/ca/bundle.pem"));

        Assert.Equal(cp.Ca.BundlePem, bundle);
        Assert.NotNull(seen);
        Assert.Equal(["spiffe://cluster.local/ns/mesh-system/sa/mesh-control-plane"], CertificateAuthority.UriSans(seen));
        var san = seen.Extensions.OfType<X509SubjectAlternativeNameExtension>().Single();
        Assert.Contains("localhost", san.EnumerateDnsNames());
        Assert.Contains(System.Net.IPAddress.Loopback, san.EnumerateIPAddresses());
    }

    [Fact]
    public async Task Bundle_AdminAndSecurePorts_ServedButNotOnPlaintextXds()
    {
        await using var cp = await SecureHost.StartAsync(plaintextXds: true);
        using var plaintext = new HttpClient { DefaultRequestVersion = new Version(2, 0), DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        var fromAdmin = await cp.Admin.GetStringAsync(new Uri("/ca/bundle.pem", UriKind.Relative));
        Assert.NotNull(cp.Host.XdsAddress);
        var fromXds = await plaintext.GetAsync(new Uri(cp.Host.XdsAddress, "/ca/bundle.pem"));

        Assert.StartsWith("-----BEGIN CERTIFICATE-----", fromAdmin, StringComparison.Ordinal);
        Assert.Equal(cp.Ca.BundlePem, fromAdmin);
        Assert.Equal(System.Net.HttpStatusCode.NotFound, fromXds.StatusCode);
    }

    [Fact]
    public async Task SecurePort_Ads_ServesClustersOverTls()
    {
        const string yaml = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata:
              name: payments
            spec:
              hosts: [payments]
              ports:
              - number: 50051
                name: grpc
                protocol: GRPC
              endpoints:
              - address: 127.0.0.2
            """;
        await using var cp = await SecureHost.StartAsync(files: ("payments.yaml", yaml));
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "frontend"));
        await using var ads = new Integration.AdsTestClient(
            new Mesh.Xds.Envoy.Service.Discovery.V3.AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(leaf)).StreamAggregatedResources());

        await ads.SendAsync(Mesh.ControlPlane.Xds.TypeUrls.Cluster, [], Integration.AdsTestClient.Node());
        var response = await ads.NextAsync();

        Assert.Equal(Mesh.ControlPlane.Xds.TypeUrls.Cluster, response.TypeUrl);
        Assert.Single(response.Resources);
    }

    internal static void AssertChainsTo(X509Certificate2 leaf, X509Certificate2 root, X509Certificate2[] intermediates)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        chain.ChainPolicy.ExtraStore.AddRange(intermediates);
        Assert.True(chain.Build(leaf), string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation)));
    }

    private static bool ChainsTo(X509Certificate2 leaf, X509Certificate2 root)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.CustomTrustStore.Add(root);
        return chain.Build(leaf);
    }

    private static string PemEncodingText(byte[] der) => PemEncoding.WriteString("CERTIFICATE REQUEST", der);
}
