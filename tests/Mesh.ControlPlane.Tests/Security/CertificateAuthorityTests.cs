using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Security;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class CertificateAuthorityTests
{
    [Fact]
    public async Task StartAsync_SecondStart_ReusesPersistedRootWithOwnerOnlyKey()
    {
        var root = SecureHost.NewRoot();
        try
        {
            string firstThumbprint;
            await using (var first = await SecureHost.StartAsync(root))
            {
                firstThumbprint = first.Ca.Roots[0].Thumbprint;
                var rootCert = first.Ca.Roots[0];
                Assert.Equal("CN=Mesh Root CA, O=Mesh", rootCert.Subject);
                Assert.True(rootCert.Extensions.OfType<X509BasicConstraintsExtension>().Single() is { CertificateAuthority: true, Critical: true });
                Assert.True(rootCert.Extensions.OfType<X509KeyUsageExtension>().Single() is { Critical: true, KeyUsages: X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign });
                Assert.DoesNotContain(rootCert.Extensions.Cast<X509Extension>(), e => e.Oid?.Value == "2.5.29.17");
                Assert.Equal(ECCurve.NamedCurves.nistP256.Oid.Value, rootCert.GetECDsaPublicKey()!.ExportParameters(false).Curve.Oid.Value);
                Assert.InRange(rootCert.NotAfter - rootCert.NotBefore, TimeSpan.FromDays(3649), TimeSpan.FromDays(3651));
            }

            var keyFile = Path.Combine(root, "state", "ca", "root-key.pem");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyFile));
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(root, "state", "ca", "token-signing-key.pem")));
            Assert.True(File.Exists(Path.Combine(root, "state", "ca", "root-cert.pem")));

            await using var second = await SecureHost.StartAsync(root);
            Assert.Equal(firstThumbprint, second.Ca.Roots[0].Thumbprint);
            var (chain, _) = await second.IssueAsync(second.Token("default", "orders"));
            Assert.Equal(firstThumbprint, chain[^1].Thumbprint);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task StartAsync_GroupReadableRootKey_RefusesNamingTheFile()
    {
        var root = SecureHost.NewRoot();
        try
        {
            await (await SecureHost.StartAsync(root)).DisposeAsync();
            var keyFile = Path.Combine(root, "state", "ca", "root-key.pem");
            File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);

            var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => SecureHost.StartAsync(root));

            Assert.Contains(keyFile, ex.Message, StringComparison.Ordinal);
            Assert.Contains("chmod 600", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task StartAsync_SuppliedIntermediateCa_ChainHasIntermediateAndRootAndClampsNotAfter()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            var (rootCert, _) = MakeCa("CN=Supplied Root", null, TimeSpan.FromDays(30));
            var (intermediate, intermediateKey) = MakeCa("CN=Supplied Intermediate", (rootCert, null), TimeSpan.FromHours(2));
            var files = WriteCa(dir, intermediate, intermediateKey, [rootCert]);

            await using var cp = await SecureHost.StartAsync(args: [$"--ControlPlane:Ca:CertificateFile={files.Cert}", $"--ControlPlane:Ca:KeyFile={files.Key}", $"--ControlPlane:Ca:ChainFile={files.Chain}"]);
            var (chain, leaf) = await cp.IssueAsync(cp.Token("default", "orders"));

            Assert.Equal(3, chain.Count);
            Assert.Equal(intermediate.Thumbprint, chain[1].Thumbprint);
            Assert.Equal(rootCert.Thumbprint, chain[2].Thumbprint);
            CertificateServiceTests.AssertChainsTo(leaf, rootCert, [intermediate]);
            Assert.Equal(CertificateAuthority.ToPem(rootCert), await cp.Admin.GetStringAsync(new Uri("/ca/bundle.pem", UriKind.Relative)));

            // Renewal over TLS: the server presents its intermediate, and the client's leaf chains through it.
            var (_, renewed) = await cp.IssueAsync(clientCertificate: leaf);
            Assert.Equal(CertificateAuthority.UriSans(leaf), CertificateAuthority.UriSans(renewed));

            // The renewal asks for the default 24 h (the token-bought leaf was capped at 1 h): clamped to the 2 h signer.
            Assert.Equal(intermediate.NotAfter, renewed.NotAfter);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task StartAsync_ExtraRoots_BundleHoldsBothAndOldRootCertificatesStillAuthenticate()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            await using var old = await SecureHost.StartAsync();
            var (_, oldLeaf) = await old.IssueAsync(old.Token("default", "orders"));
            var extraRoots = Path.Combine(dir, "extra-roots.pem");
            await File.WriteAllTextAsync(extraRoots, old.Ca.BundlePem);

            await using var cp = await SecureHost.StartAsync(args: [$"--ControlPlane:Ca:ExtraRootsFile={extraRoots}"]);
            var bundle = new X509Certificate2Collection();
            bundle.ImportFromPem(await cp.Admin.GetStringAsync(new Uri("/ca/bundle.pem", UriKind.Relative)));
            var (chain, renewed) = await cp.IssueAsync(clientCertificate: oldLeaf);

            Assert.Equal(2, bundle.Count);
            Assert.Contains(bundle, c => c.Thumbprint == old.Ca.Roots[0].Thumbprint);
            Assert.Equal(cp.Ca.Roots[0].Thumbprint, chain[^1].Thumbprint);
            Assert.Equal(CertificateAuthority.UriSans(oldLeaf), CertificateAuthority.UriSans(renewed));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public static TheoryData<string, string> BadSuppliedCas() => new()
    {
        { "mismatched-key", "does not hold the private key of ControlPlane:Ca:CertificateFile" },
        { "not-ca", "is not a CA (basic constraints CA:true missing)" },
        { "expired", "is not valid now" },
        { "missing-chain", "ControlPlane:Ca:ChainFile must list its intermediates and end with the self-signed root" },
    };

    [Theory]
    [MemberData(nameof(BadSuppliedCas))]
    public void Load_BadSuppliedCa_FailsWithActionableMessage(string kind, string expected)
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            var (rootCert, rootKey) = MakeCa("CN=Root", null, TimeSpan.FromDays(30));
            var files = kind switch
            {
                "mismatched-key" => WriteCa(dir, rootCert, ECDsa.Create(ECCurve.NamedCurves.nistP256), []),
                "not-ca" => WriteCa(dir, MakeLeafCa(rootKey), rootKey, []),
                "expired" => WriteCa(dir, MakeCa("CN=Old", null, TimeSpan.FromDays(-1))),
                _ => WriteCa(dir, MakeCa("CN=Intermediate", (rootCert, rootKey), TimeSpan.FromDays(1))),
            };

            var options = new ControlPlaneOptions { StateDirectory = Path.Combine(dir, "state") };
            options.Ca.CertificateFile = files.Cert;
            options.Ca.KeyFile = files.Key;

            var ex = Assert.Throws<InvalidOperationException>(() => CertificateAuthority.Load(options, TimeProvider.System));

            Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Issue_IssuerExpiresBeforeTtl_NotAfterClampedToIssuer()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var dir = SecureHost.NewRoot();
        try
        {
            using var ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = dir }, time);
            time.Advance(CertificateAuthority.RootLifetime - TimeSpan.FromHours(3));
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

            using var leaf = ca.Issue(new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256).PublicKey, new WorkloadIdentity("cluster.local", "default", "orders"), TimeSpan.FromHours(24));

            Assert.Equal(ca.SigningCertificate.NotAfter, leaf.NotAfter);
            Assert.Equal(time.GetUtcNow().UtcDateTime - CertificateAuthority.ClockSkew, leaf.NotBefore.ToUniversalTime(), TimeSpan.FromSeconds(1));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Issue_ChainExpired_RefusedWithAnErrorNamingTheCertificate()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var dir = SecureHost.NewRoot();
        try
        {
            using var ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = dir }, time);
            time.Advance(CertificateAuthority.RootLifetime + TimeSpan.FromHours(1));
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

            var error = Assert.Throws<CertificateAuthorityExpiredException>(() =>
                ca.Issue(new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256).PublicKey, new WorkloadIdentity("cluster.local", "default", "orders"), TimeSpan.FromHours(24)));

            Assert.Contains(ca.SigningCertificate.Subject, error.Message, StringComparison.Ordinal);
            Assert.Contains("expired", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ServerCertificate_PastHalfLife_IsReissuedWithoutRestart()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var dir = SecureHost.NewRoot();
        try
        {
            using var ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = dir }, time);
            var provider = new ServerCertificateProvider(ca, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<ServerCertificateProvider>.Instance);
            var first = provider.CurrentCertificate;

            time.Advance(TimeSpan.FromHours(11));
            var beforeHalf = provider.CurrentCertificate;
            time.Advance(TimeSpan.FromHours(2));
            var afterHalf = provider.CurrentCertificate;

            Assert.Same(first, beforeHalf);
            Assert.NotEqual(first.SerialNumber, afterHalf.SerialNumber);
            Assert.True(afterHalf.NotAfter > first.NotAfter);
            Assert.Equal(CertificateAuthority.UriSans(first), CertificateAuthority.UriSans(afterHalf));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ValidateWorkloadCertificate_CaCertificateFromBundle_Rejected()
    {
        var dir = SecureHost.NewRoot();
        try
        {
            using var ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = dir }, TimeProvider.System);

            var identity = ca.ValidateWorkloadCertificate(ca.Roots[0], out var reason);

            Assert.Null(identity);
            Assert.Contains("is a CA certificate", reason, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static (X509Certificate2 Cert, ECDsa Key) MakeCa(string subject, (X509Certificate2 Cert, ECDsa? Key)? issuer, TimeSpan lifetime)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var notBefore = DateTimeOffset.UtcNow.AddDays(-2);
        if (issuer is null)
        {
            return (request.CreateSelfSigned(notBefore, DateTimeOffset.UtcNow + lifetime), key);
        }

        var issuerKey = issuer.Value.Key ?? issuer.Value.Cert.GetECDsaPrivateKey()!;
        var issued = request.Create(issuer.Value.Cert.SubjectName, X509SignatureGenerator.CreateForECDsa(issuerKey), notBefore, DateTimeOffset.UtcNow + lifetime, RandomNumberGenerator.GetBytes(8));
        return (issued, key);
    }

    private static X509Certificate2 MakeLeafCa(ECDsa key)
    {
        var request = new CertificateRequest("CN=Not A CA", key, HashAlgorithmName.SHA256);
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
    }

    private static (string Cert, string Key, string Chain) WriteCa(string dir, X509Certificate2 cert, ECDsa key, X509Certificate2[] chain)
    {
        var certFile = Path.Combine(dir, "ca-cert.pem");
        var keyFile = Path.Combine(dir, "ca-key.pem");
        var chainFile = Path.Combine(dir, "ca-chain.pem");
        File.WriteAllText(certFile, CertificateAuthority.ToPem(cert));
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(chainFile, string.Concat(chain.Select(CertificateAuthority.ToPem)));
        return (certFile, keyFile, chainFile);
    }

    private static (string Cert, string Key, string Chain) WriteCa(string dir, (X509Certificate2 Cert, ECDsa Key) ca) => WriteCa(dir, ca.Cert, ca.Key, []);
}
