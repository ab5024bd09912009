using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Security;

namespace Mesh.Client.Tests.Security;

/// <summary>An in-test mesh CA: a self-signed root (optionally an intermediate) issuing SPIFFE leaves.</summary>
internal sealed class TestCa : IDisposable
{
    private readonly X509Certificate2 _signer;

    public TestCa(string name = "mesh-root", bool intermediate = false, TimeProvider? time = null)
    {
        Time = time ?? TimeProvider.System;
        var now = Time.GetUtcNow();
        var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"O={name}", rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        Root = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(10));
        _signer = Root;
        if (intermediate)
        {
            var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var inter = new CertificateRequest($"O={name}-intermediate", key, HashAlgorithmName.SHA256);
            inter.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            inter.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            using var issued = inter.Create(Root, now.AddDays(-1), now.AddYears(5), RandomNumberGenerator.GetBytes(16));
            Intermediate = issued.CopyWithPrivateKey(key);
            _signer = Intermediate;
        }
    }

    public TimeProvider Time { get; }

    public X509Certificate2 Root { get; }

    public X509Certificate2? Intermediate { get; }

    public string RootPem => Root.ExportCertificatePem() + "\n";

    public TrustBundle Bundle => new([Root], "test");

    public static string Id(string sa, string ns = "default", string trustDomain = "cluster.local") => $"spiffe://{trustDomain}/ns/{ns}/sa/{sa}";

    /// <summary>Issues a leaf with a private key. Defaults follow Istio: backdated 2 min, 1 h, digitalSignature, server+client auth.</summary>
    public X509Certificate2 Issue(
        string[] uris,
        TimeSpan? notBeforeOffset = null,
        TimeSpan? lifetime = null,
        bool isCa = false,
        X509KeyUsageFlags usage = X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment,
        string[]? dnsNames = null,
        ECDsa? key = null,
        bool selfSigned = false,
        string[]? ekus = null)
    {
        key ??= ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var uri in uris)
        {
            san.AddUri(new Uri(uri));
        }

        foreach (var dns in dnsNames ?? [])
        {
            san.AddDnsName(dns);
        }

        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        ekus ??= [SvidProfile.ServerAuthOid, SvidProfile.ClientAuthOid];
        if (ekus.Length > 0)
        {
            var oids = new OidCollection();
            foreach (var eku in ekus)
            {
                oids.Add(new Oid(eku));
            }

            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(oids, false));
        }

        var notBefore = Time.GetUtcNow() + (notBeforeOffset ?? TimeSpan.FromMinutes(-2));
        var notAfter = notBefore + (lifetime ?? TimeSpan.FromHours(1));
        if (selfSigned)
        {
            return request.CreateSelfSigned(notBefore, notAfter);
        }

        using var issued = request.Create(_signer, notBefore, notAfter, RandomNumberGenerator.GetBytes(16));
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>Signs a PEM CSR's public key for <paramref name="uri"/> (the CA ignores the CSR's names, as Istio's does).</summary>
    public string[] SignCsr(string csrPem, string uri, TimeSpan lifetime)
    {
        var csr = CertificateRequest.LoadSigningRequestPem(csrPem, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), csr.PublicKey, HashAlgorithmName.SHA256);
        SvidProfile.AddLeafExtensions(request, SpiffeId.Parse(uri));
        var notBefore = Time.GetUtcNow().AddMinutes(-2);
        using var leaf = request.Create(_signer.SubjectName, X509SignatureGenerator.CreateForECDsa(_signer.GetECDsaPrivateKey()!), notBefore, notBefore + lifetime, RandomNumberGenerator.GetBytes(16));
        var chain = new List<string> { leaf.ExportCertificatePem() + "\n" };
        if (Intermediate is not null)
        {
            chain.Add(Intermediate.ExportCertificatePem() + "\n");
        }

        chain.Add(RootPem);
        return [.. chain];
    }

    /// <summary>A leaf that breaks one SVID rule, for the real-handshake tests (the full table is in Mesh.ControlPlane.Tests/Identity/SvidTests).</summary>
    public X509Certificate2 BadCertificate(TestCa foreign, string kind) => kind switch
    {
        "expired" => Issue([Id("orders")], notBeforeOffset: TimeSpan.FromHours(-3), lifetime: TimeSpan.FromHours(1)),
        "not-yet-valid" => Issue([Id("orders")], notBeforeOffset: TimeSpan.FromMinutes(5)),
        "self-signed" => Issue([Id("orders")], selfSigned: true),
        "foreign-ca" => foreign.Issue([Id("orders")]),
        "other-trust-domain" => Issue([Id("orders", trustDomain: "evil.local")]),
        "two-uri-sans" => Issue([Id("orders"), Id("payments")]),
        "ca-leaf" => Issue([Id("orders")], isCa: true, usage: X509KeyUsageFlags.DigitalSignature),
        "no-eku" => Issue([Id("orders")], ekus: []),
        "server-auth-only" => Issue([Id("orders")], ekus: [SvidProfile.ServerAuthOid]),
        "non-workload-path" => Issue(["spiffe://cluster.local/orders"]),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown bad certificate kind"),
    };

    /// <summary>A store holding <paramref name="leaf"/> (with this CA's intermediate) and this CA's root as the bundle.</summary>
    public WorkloadCertificateStore Store(X509Certificate2 leaf, string trustDomain = "cluster.local", TrustBundle? bundle = null)
    {
        var store = new WorkloadCertificateStore(true, trustDomain, bundle ?? Bundle);
        SvidValidator.TryGetSpiffeId(leaf, out var uri, out _);
        var intermediates = Intermediate is null ? new X509Certificate2Collection() : new X509Certificate2Collection(Intermediate);
        store.SetCertificate(new WorkloadCertificate(leaf, intermediates, SpiffeId.Parse(uri)));
        return store;
    }

    public void Dispose()
    {
        Root.Dispose();
        Intermediate?.Dispose();
    }
}
