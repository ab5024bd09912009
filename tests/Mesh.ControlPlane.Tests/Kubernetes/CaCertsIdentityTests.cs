using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Tests.Security;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>The CA's signing certificate from Istio's <c>cacerts</c> Secret, as mounted in the pod (ControlPlane:Ca:CaCertsDirectory).</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CaCertsIdentityTests : IDisposable
{
    private const UnixFileMode Mode0440 = UnixFileMode.UserRead | UnixFileMode.GroupRead;
    private const UnixFileMode Mode0644 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;

    private readonly string _dir = SecureHost.NewRoot();
    private readonly string _cacerts;

    public CaCertsIdentityTests()
    {
        _cacerts = Path.Combine(_dir, "cacerts");
        Directory.CreateDirectory(_cacerts);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task IstioLayout_LeafChainsThroughCaCertToRoot_AndEveryRootIsInTheBundle()
    {
        var root = MakeCa("CN=Cluster Root", null);
        var otherRoot = MakeCa("CN=Next Root", null);
        var intermediate = MakeCa("CN=Cluster Intermediate", root);
        Write("ca-cert.pem", intermediate.Cert);
        WriteKey("ca-key.pem", intermediate.Key, Mode0440); // a Secret volume with defaultMode 0400 in a pod with an fsGroup
        Write("root-cert.pem", root.Cert, otherRoot.Cert);
        Write("cert-chain.pem", intermediate.Cert, root.Cert); // Istio's: ca-cert.pem first, then the root

        await using var cp = await SecureHost.StartAsync(args: [$"--ControlPlane:Ca:CaCertsDirectory={_cacerts}"]);
        var (chain, leaf) = await cp.IssueAsync(cp.Token("a", "b"));

        Assert.Equal([leaf.Thumbprint, intermediate.Cert.Thumbprint, root.Cert.Thumbprint], chain.Select(c => c.Thumbprint));
        Assert.Equal(["spiffe://cluster.local/ns/a/sa/b"], CertificateAuthority.UriSans(leaf));
        Assert.Equal([root.Cert.Thumbprint, otherRoot.Cert.Thumbprint], cp.Ca.Roots.Select(r => r.Thumbprint));
        Assert.False(cp.Ca.CreatedRoot);
        Assert.False(File.Exists(CertificateAuthority.RootKeyPath(new ControlPlaneOptions { StateDirectory = cp.StateDirectory })));
        CertificateServiceTests.AssertChainsTo(leaf, root.Cert, [intermediate.Cert]);
    }

    [Fact]
    public async Task TlsLayout_ChainInTlsCrtThenCaCrt()
    {
        var root = MakeCa("CN=Root", null);
        var first = MakeCa("CN=First Intermediate", root);
        var second = MakeCa("CN=Second Intermediate", first);
        Write("tls.crt", second.Cert, first.Cert); // cert-manager: the certificate, then its issuers
        WriteKey("tls.key", second.Key, UnixFileMode.UserRead);
        Write("ca.crt", root.Cert);

        await using var cp = await SecureHost.StartAsync(args: [$"--ControlPlane:Ca:CaCertsDirectory={_cacerts}"]);
        var (chain, leaf) = await cp.IssueAsync(cp.Token("a", "b"));

        Assert.Equal([leaf.Thumbprint, second.Cert.Thumbprint, first.Cert.Thumbprint, root.Cert.Thumbprint], chain.Select(c => c.Thumbprint));
        CertificateServiceTests.AssertChainsTo(leaf, root.Cert, [second.Cert, first.Cert]);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void EmptyOrMissingDirectory_SelfSignedRoot(bool exists)
    {
        var directory = exists ? _cacerts : Path.Combine(_dir, "not-mounted");

        var options = Options(("Ca:CaCertsDirectory", directory), ("StateDirectory", Path.Combine(_dir, "state")));
        using var ca = CertificateAuthority.Load(options, TimeProvider.System);

        Assert.False(options.Ca.FromCaCerts);
        Assert.Null(options.Ca.CertificateFile);
        Assert.True(ca.CreatedRoot);
    }

    [Fact]
    public void KeyWithoutCertificate_FailsNamingTheDirectoryAndFile()
    {
        WriteKey("ca-key.pem", MakeCa("CN=x", null).Key, UnixFileMode.UserRead);

        var ex = Assert.Throws<InvalidOperationException>(() => Options(("Ca:CaCertsDirectory", _cacerts)));

        Assert.Contains($"ControlPlane:Ca:CaCertsDirectory {_cacerts} has ca-key.pem but no ca-cert.pem", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void WorldReadableKey_Refused_NamingTheSecretFileAndDefaultMode()
    {
        var ca = MakeCa("CN=Root", null);
        Write("ca-cert.pem", ca.Cert);
        WriteKey("ca-key.pem", ca.Key, Mode0644);

        var ex = Assert.Throws<InvalidOperationException>(() => CertificateAuthority.Load(Options(("Ca:CaCertsDirectory", _cacerts)), TimeProvider.System));

        Assert.Contains("ca-key.pem is accessible by others or writable by group (mode 644)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("ControlPlane:Ca:CaCertsDirectory (ca-key.pem for KeyFile): mount the Secret with defaultMode 0400", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void KeyOfAnotherCertificate_FailsNamingBothFiles()
    {
        var ca = MakeCa("CN=Root", null);
        Write("ca-cert.pem", ca.Cert);
        WriteKey("ca-key.pem", MakeCa("CN=Other", null).Key, UnixFileMode.UserRead);

        var ex = Assert.Throws<InvalidOperationException>(() => CertificateAuthority.Load(Options(("Ca:CaCertsDirectory", _cacerts)), TimeProvider.System));

        Assert.Contains("ControlPlane:Ca:CaCertsDirectory (ca-key.pem for KeyFile)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("does not hold the private key of ControlPlane:Ca:CaCertsDirectory (ca-cert.pem for CertificateFile)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void IntermediateWithoutChainOrRoot_FailsNamingTheChain()
    {
        var intermediate = MakeCa("CN=Intermediate", MakeCa("CN=Root", null));
        Write("ca-cert.pem", intermediate.Cert);
        WriteKey("ca-key.pem", intermediate.Key, UnixFileMode.UserRead);

        var ex = Assert.Throws<InvalidOperationException>(() => CertificateAuthority.Load(Options(("Ca:CaCertsDirectory", _cacerts)), TimeProvider.System));

        Assert.Contains("ControlPlane:Ca:CaCertsDirectory (ca-cert.pem for CertificateFile)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("is not self-signed, so ControlPlane:Ca:ChainFile must list its intermediates", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CombinedWithCertificateFile_OptionError()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Options(("Ca:CaCertsDirectory", _cacerts), ("Ca:CertificateFile", "a.pem"), ("Ca:KeyFile", "a-key.pem")));

        Assert.Contains("ControlPlane:Ca:CaCertsDirectory cannot be combined with ControlPlane:Ca:CertificateFile", ex.Message, StringComparison.Ordinal);
    }

    private ControlPlaneOptions Options(params (string Key, string Value)[] values)
    {
        var settings = values.ToDictionary(v => "ControlPlane:" + v.Key, v => (string?)v.Value);
        settings.TryAdd("ControlPlane:StateDirectory", Path.Combine(_dir, "state"));
        return ControlPlaneOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
    }

    private void Write(string file, params X509Certificate2[] certificates) =>
        File.WriteAllText(Path.Combine(_cacerts, file), string.Concat(certificates.Select(CertificateAuthority.ToPem)));

    private void WriteKey(string file, ECDsa key, UnixFileMode mode)
    {
        var path = Path.Combine(_cacerts, file);
        File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        File.SetUnixFileMode(path, mode);
    }

    private static (X509Certificate2 Cert, ECDsa Key) MakeCa(string subject, (X509Certificate2 Cert, ECDsa Key)? issuer)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var notBefore = DateTimeOffset.UtcNow.AddDays(-2);
        var notAfter = DateTimeOffset.UtcNow.AddDays(30);
        if (issuer is not { } signer)
        {
            return (request.CreateSelfSigned(notBefore, notAfter), key);
        }

        var issued = request.Create(signer.Cert.SubjectName, X509SignatureGenerator.CreateForECDsa(signer.Key), notBefore, notAfter, RandomNumberGenerator.GetBytes(8));
        return (issued, key);
    }
}
