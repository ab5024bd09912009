using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Identity;

/// <summary>
/// The shared SPIFFE ID and X.509-SVID rules (src/Mesh.Xds/Identity): parse, build, validate. Every attacker
/// certificate goes through both sides: the validator as the client calls it for a peer (bundle roots, presented
/// chain) and the control plane's renewal check (<see cref="CertificateAuthority.ValidateWorkloadCertificate"/>).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SvidTests : IDisposable
{
    private const string Orders = "spiffe://cluster.local/ns/default/sa/orders";
    private readonly string _state = Path.Combine(Path.GetTempPath(), "mesh-svid-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly CertificateAuthority _ca;

    public SvidTests()
    {
        _ca = CertificateAuthority.Load(new ControlPlaneOptions { StateDirectory = _state }, _time);
    }

    public void Dispose()
    {
        _ca.Dispose();
        Directory.Delete(_state, recursive: true);
    }

    public static TheoryData<string, bool, string?> Ids => new()
    {
        { Orders, true, null },
        { "spiffe://cluster.local/ns/kube-system/sa/a-b-1", true, null },
        { "spiffe://my_domain.example-1/ns/default/sa/orders", true, null },
        { "spiffe://cluster.local/orders", false, null },
        { "spiffe://cluster.local/ns/default/sa/orders/extra", false, null },
        { "spiffe://cluster.local/ns/Default/sa/orders", false, null },
        { "spiffe://cluster.local/ns/default/sa/-orders", false, null },
        { "spiffe://cluster.local/ns/default/sa/orders.v1", false, null },
        { "spiffe://cluster.local/ns/default/sa/" + new string('a', 64), false, null },
        { "spiffe://cluster.local/ns/default/svc/orders", false, null },
        { "", false, "must not be empty" },
        { "SPIFFE://cluster.local/ns/default/sa/orders", false, "must start with spiffe://" },
        { "Spiffe://cluster.local/ns/default/sa/orders", false, "must start with spiffe://" },
        { "https://cluster.local/ns/default/sa/orders", false, "must start with spiffe://" },
        { "spiffe:cluster.local/ns/default/sa/orders", false, "must start with spiffe://" },
        { "spiffe://Cluster.local/ns/default/sa/orders", false, "invalid trust domain 'Cluster.local'" },
        { "spiffe://cluster.local:443/ns/default/sa/orders", false, "invalid trust domain 'cluster.local:443'" },
        { "spiffe://user@cluster.local/ns/default/sa/orders", false, "invalid trust domain 'user@cluster.local'" },
        { "spiffe:///ns/default/sa/orders", false, "invalid trust domain ''" },
        { "spiffe://" + new string('a', 256) + "/ns/default/sa/orders", false, "invalid trust domain" },
        { "spiffe://cluster.local", false, "has no path" },
        { "spiffe://cluster.local/", false, "has no path" },
        { "spiffe://cluster.local/ns/default/sa/orders/", false, "invalid path segment ''" },
        { "spiffe://cluster.local/ns//default/sa/orders", false, "invalid path segment ''" },
        { "spiffe://cluster.local/ns/default/sa/../sa/x", false, "invalid path segment '..'" },
        { "spiffe://cluster.local/ns/./default/sa/orders", false, "invalid path segment '.'" },
        { "spiffe://cluster.local/ns/default/sa/%6frders", false, "invalid path segment '%6frders'" },
        { "spiffe://cluster.local/ns/default/sa/orders?x=1", false, "invalid path segment 'orders?x=1'" },
        { "spiffe://cluster.local/ns/default/sa/orders#x", false, "invalid path segment 'orders#x'" },
        { "spiffe://cluster.local/ns/default/sa/ord ers", false, "invalid path segment 'ord ers'" },
        { "spiffe://cluster.local/ns/default/sa/ordérs", false, "invalid path segment 'ordérs'" },
        { "spiffe://cluster.local/" + new string('a', 2048), false, "longer than 2048 bytes" },
    };

    /// <summary>Valid SPIFFE IDs that are not workload IDs parse (reason null) but are no workload; the rest are refused saying why.</summary>
    [Theory]
    [MemberData(nameof(Ids))]
    public void TryParse_SpiffeIdTable_WorkloadOnlyForNsSaForm(string value, bool workload, string? reason)
    {
        var parsed = SpiffeId.TryParse(value, out var id, out var parseReason);
        var workloadIdentity = SpiffeId.TryParseWorkload(value, out var workloadReason);

        Assert.Equal(reason is null, parsed);
        Assert.Equal(workload, workloadIdentity is not null);
        if (reason is not null)
        {
            Assert.Contains(reason, parseReason, StringComparison.Ordinal);
            Assert.Contains(reason, workloadReason, StringComparison.Ordinal);
        }
        else if (workload)
        {
            Assert.Equal(value, id!.Value);
            Assert.Equal(value, workloadIdentity!.SpiffeId);
            Assert.Equal(id.Workload, workloadIdentity);
        }
        else
        {
            Assert.Null(id!.Workload);
            Assert.Contains("is not a workload identity", workloadReason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void TryParse_WorkloadId_HasItsParts()
    {
        Assert.True(SpiffeId.TryParse("spiffe://example.org/ns/shop/sa/cart", out var id, out _));

        Assert.Equal("example.org", id.TrustDomain);
        Assert.Equal("/ns/shop/sa/cart", id.Path);
        Assert.Equal("shop", id.Namespace);
        Assert.Equal("cart", id.ServiceAccount);
        Assert.Equal(new WorkloadIdentity("example.org", "shop", "cart"), id.Workload);
    }

    [Theory]
    [InlineData("cluster.local", "Default", "orders")]
    [InlineData("cluster.local", "default", "../x")]
    [InlineData("Cluster.Local", "default", "orders")]
    [InlineData("cluster.local:8443", "default", "orders")]
    public void ForWorkload_InvalidPart_ThrowsNamingTheId(string trustDomain, string ns, string sa)
    {
        var ex = Assert.Throws<FormatException>(() => SpiffeId.ForWorkload(trustDomain, ns, sa));

        Assert.Contains($"spiffe://{trustDomain}/ns/{ns}/sa/{sa}", ex.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string> AttackerCertificates => new()
    {
        { "two URI SANs", "has 2" },
        { "no URI SAN", "has 0" },
        { "leaf with CA:true", "CA certificate" },
        { "keyCertSign", "keyCertSign or cRLSign" },
        { "cRLSign", "keyCertSign or cRLSign" },
        { "no digitalSignature", "lacks digitalSignature" },
        { "no key usage", "lacks digitalSignature" },
        { "EKU serverAuth only", "lacks clientAuth" },
        { "EKU clientAuth only", "lacks serverAuth" },
        { "EKU codeSigning only", "lacks serverAuth and clientAuth" },
        { "no EKU", "no extended key usage" },
        { "wrong trust domain", "trust domain 'evil.org'" },
        { "non-workload path", "is not a workload identity" },
        { "service account not a DNS label", "is not a workload identity" },
        { "uppercase scheme", "must start with spiffe://" },
        { "uppercase trust domain", "invalid trust domain 'Cluster.local'" },
        { "uppercase namespace", "is not a workload identity" },
        { "percent-encoded", "invalid path segment '%6frders'" },
        { "dot segment", "invalid path segment '..'" },
        { "trailing slash", "invalid path segment ''" },
        { "port in trust domain", "invalid trust domain 'cluster.local:443'" },
        { "userinfo", "invalid trust domain 'x@cluster.local'" },
        { "query", "invalid path segment 'orders?x'" },
        { "not a spiffe URI", "must start with spiffe://" },
        { "expired", "expired at" },
        { "not yet valid beyond the skew", "is not valid before" },
        { "foreign CA", "not issued by a CA of the trust bundle" },
        { "self-signed", "not issued by a CA of the trust bundle" },
        { "CA's own root", "CA certificate" },
    };

    /// <summary>Both sides refuse every attacker certificate, for the same reason (one implementation).</summary>
    [Theory]
    [MemberData(nameof(AttackerCertificates))]
    public void Validate_AttackerCertificate_RefusedByClientAndControlPlane(string kind, string reason)
    {
        using var leaf = Attacker(kind);

        var clientAccepts = ValidateAsClient(leaf, out var clientError);
        var controlPlaneIdentity = _ca.ValidateWorkloadCertificate(leaf, out var controlPlaneReason);

        Assert.False(clientAccepts, $"client accepted '{kind}'");
        Assert.Null(controlPlaneIdentity);
        Assert.Contains(reason, clientError, StringComparison.Ordinal);
        Assert.Contains(reason, controlPlaneReason, StringComparison.Ordinal);
    }

    public static TheoryData<string> GoodCertificates => new() { "issued by the CA", "NotBefore within the skew" };

    [Theory]
    [MemberData(nameof(GoodCertificates))]
    public void Validate_GoodCertificate_AcceptedByClientAndControlPlane(string kind)
    {
        using var leaf = Good(kind);

        var clientAccepts = SvidValidator.TryValidate(leaf, [], _ca.Roots, "the test bundle", "cluster.local", _time.GetUtcNow(), out var id, out var error);
        var controlPlaneIdentity = _ca.ValidateWorkloadCertificate(leaf, out var reason);

        Assert.True(clientAccepts, error);
        Assert.Equal(Orders, id!.Value);
        Assert.Equal(new WorkloadIdentity("cluster.local", "default", "orders"), id.Workload);
        Assert.True(controlPlaneIdentity is not null, reason);
        Assert.Equal(id.Workload, controlPlaneIdentity);
    }

    /// <summary>
    /// A peer may send its intermediates and the client uses them to reach a root; the control plane builds only
    /// through its own intermediates (Kestrel hands it the leaf alone), so an intermediate it did not sign is refused.
    /// </summary>
    [Fact]
    public void Validate_LeafUnderPresentedIntermediate_ClientAcceptsControlPlaneDoesNot()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Intermediate", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = _time.GetUtcNow();
        using var signed = request.Create(_ca.SigningCertificate, now.AddMinutes(-30), now.AddDays(1), RandomNumberGenerator.GetBytes(16));
        using var intermediate = signed.CopyWithPrivateKey(key);
        using var leaf = Leaf([Orders], issuer: intermediate);

        Assert.True(SvidValidator.TryValidate(leaf, [intermediate], _ca.Roots, "the test bundle", "cluster.local", now, out _, out var error), error);
        Assert.False(ValidateAsClient(leaf, out error));
        Assert.Contains("not issued by a CA of the trust bundle", error, StringComparison.Ordinal);
        Assert.Null(_ca.ValidateWorkloadCertificate(leaf, out var reason));
        Assert.Contains("not issued by a CA of the trust bundle", reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NoCertificate_RefusedSayingSo()
    {
        Assert.False(SvidValidator.TryValidate(null, [], _ca.Roots, "the test bundle", "cluster.local", _time.GetUtcNow(), out _, out var error));
        Assert.Contains("no certificate", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_EmptyBundle_RefusedNamingTheSource()
    {
        using var leaf = LeafFor(Orders);

        Assert.False(SvidValidator.TryValidate(leaf, [], [], "Mesh:ControlPlane:RootCertificate", "cluster.local", _time.GetUtcNow(), out _, out var error));
        Assert.Contains("no trust bundle yet (Mesh:ControlPlane:RootCertificate holds no root)", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_LeafExpiresWhileInUse_RefusedAfterNotAfter()
    {
        using var leaf = Leaf([Orders], lifetime: TimeSpan.FromMinutes(30));
        Assert.True(ValidateAsClient(leaf, out var error), error);

        _time.Advance(TimeSpan.FromMinutes(27));
        Assert.True(ValidateAsClient(leaf, out error), error);
        Assert.NotNull(_ca.ValidateWorkloadCertificate(leaf, out _));

        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.False(ValidateAsClient(leaf, out error));
        Assert.Contains("expired at", error, StringComparison.Ordinal);
        Assert.Null(_ca.ValidateWorkloadCertificate(leaf, out _));
    }

    /// <summary>Build and validate are one rule set: whatever the CA issues, for any key it accepts, passes the validator.</summary>
    [Theory]
    [InlineData("P-256")]
    [InlineData("P-384")]
    [InlineData("RSA-2048")]
    public void Issue_AnyAcceptedKey_LeafPassesTheSharedRules(string keyKind)
    {
        using AsymmetricAlgorithm key = keyKind switch
        {
            "P-256" => ECDsa.Create(ECCurve.NamedCurves.nistP256),
            "P-384" => ECDsa.Create(ECCurve.NamedCurves.nistP384),
            _ => RSA.Create(2048),
        };
        var publicKey = key is RSA rsa
            ? new CertificateRequest("CN=x", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1).PublicKey
            : new CertificateRequest("CN=x", (ECDsa)key, HashAlgorithmName.SHA256).PublicKey;

        using var leaf = _ca.Issue(publicKey, new WorkloadIdentity("cluster.local", "shop", "cart"), TimeSpan.FromHours(1));

        Assert.True(SvidProfile.TryCheckLeaf(leaf, out var profileError), profileError);
        Assert.True(SvidValidator.TryValidate(leaf, [], _ca.Roots, "the CA", "cluster.local", _time.GetUtcNow(), out var id, out var error), error);
        Assert.Equal("spiffe://cluster.local/ns/shop/sa/cart", id.Value);
        Assert.Equal(new WorkloadIdentity("cluster.local", "shop", "cart"), _ca.ValidateWorkloadCertificate(leaf, out _));
        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().Single().KeyUsages;
        Assert.Equal(key is RSA ? X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment : X509KeyUsageFlags.DigitalSignature, usage);
    }

    [Fact]
    public void Issue_IdentityThePeersWouldRefuse_Throws()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var publicKey = new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256).PublicKey;

        var ex = Assert.Throws<FormatException>(() => _ca.Issue(publicKey, new WorkloadIdentity("cluster.local", "default", "../sa/x"), TimeSpan.FromHours(1)));

        Assert.Contains("spiffe://cluster.local/ns/default/sa/../sa/x", ex.Message, StringComparison.Ordinal);
    }

    private bool ValidateAsClient(X509Certificate2 leaf, out string error) =>
        SvidValidator.TryValidate(leaf, [], _ca.Roots, "the test bundle", "cluster.local", _time.GetUtcNow(), out _, out error);

    private X509Certificate2 Attacker(string kind)
    {
        var now = _time.GetUtcNow();
        return kind switch
        {
            "two URI SANs" => LeafFor(Orders, "spiffe://cluster.local/ns/default/sa/payments"),
            "no URI SAN" => LeafFor(),
            "leaf with CA:true" => Leaf([Orders], isCa: true),
            "keyCertSign" => Leaf([Orders], usage: X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign),
            "cRLSign" => Leaf([Orders], usage: X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.CrlSign),
            "no digitalSignature" => Leaf([Orders], usage: X509KeyUsageFlags.KeyEncipherment),
            "no key usage" => Leaf([Orders], usage: X509KeyUsageFlags.None),
            "EKU serverAuth only" => Leaf([Orders], ekus: [SvidProfile.ServerAuthOid]),
            "EKU clientAuth only" => Leaf([Orders], ekus: [SvidProfile.ClientAuthOid]),
            "EKU codeSigning only" => Leaf([Orders], ekus: ["1.3.6.1.5.5.7.3.3"]),
            "no EKU" => Leaf([Orders], ekus: []),
            "wrong trust domain" => LeafFor("spiffe://evil.org/ns/default/sa/orders"),
            "non-workload path" => LeafFor("spiffe://cluster.local/orders"),
            "service account not a DNS label" => LeafFor("spiffe://cluster.local/ns/default/sa/orders.v1"),
            "uppercase scheme" => LeafFor("SPIFFE://cluster.local/ns/default/sa/orders"),
            "uppercase trust domain" => LeafFor("spiffe://Cluster.local/ns/default/sa/orders"),
            "uppercase namespace" => LeafFor("spiffe://cluster.local/ns/Default/sa/orders"),
            "percent-encoded" => LeafFor("spiffe://cluster.local/ns/default/sa/%6frders"),
            "dot segment" => LeafFor("spiffe://cluster.local/ns/default/sa/../sa/x"),
            "trailing slash" => LeafFor(Orders + "/"),
            "port in trust domain" => LeafFor("spiffe://cluster.local:443/ns/default/sa/orders"),
            "userinfo" => LeafFor("spiffe://x@cluster.local/ns/default/sa/orders"),
            "query" => LeafFor(Orders + "?x"),
            "not a spiffe URI" => LeafFor("https://orders.default.svc/"),

            // The CA's root is backdated an hour, so both windows lie inside it and only the leaf's validity is at fault.
            "expired" => Leaf([Orders], notBefore: now.AddMinutes(-50), lifetime: TimeSpan.FromMinutes(40)),
            "not yet valid beyond the skew" => Leaf([Orders], notBefore: now + SvidProfile.ClockSkew + TimeSpan.FromSeconds(30)),
            "foreign CA" => Foreign(selfSigned: false),
            "self-signed" => Foreign(selfSigned: true),
            "CA's own root" => X509Certificate2.CreateFromPem(CertificateAuthority.ToPem(_ca.Roots[0])),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown attacker certificate"),
        };
    }

    private X509Certificate2 Good(string kind)
    {
        if (kind == "NotBefore within the skew")
        {
            return Leaf([Orders], notBefore: _time.GetUtcNow() + SvidProfile.ClockSkew - TimeSpan.FromSeconds(10));
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        return _ca.Issue(new CertificateRequest("CN=x", key, HashAlgorithmName.SHA256).PublicKey, new WorkloadIdentity("cluster.local", "default", "orders"), TimeSpan.FromHours(1));
    }

    private X509Certificate2 Foreign(bool selfSigned)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Foreign Root", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        var now = _time.GetUtcNow();
        using var foreignRoot = request.CreateSelfSigned(now.AddDays(-1), now.AddDays(1));
        return Leaf([Orders], issuer: selfSigned ? null : foreignRoot, selfSigned: selfSigned);
    }

    private X509Certificate2 LeafFor(params string[] uris) => Leaf(uris);

    /// <summary>
    /// An SVID-shaped leaf, each part overridable. URI SANs are DER-encoded as given: System.Uri would lowercase the
    /// scheme and host and remove dot segments, hiding exactly the spellings an attacker would try.
    /// </summary>
    private X509Certificate2 Leaf(
        string[] uris,
        bool isCa = false,
        X509KeyUsageFlags usage = X509KeyUsageFlags.DigitalSignature,
        string[]? ekus = null,
        DateTimeOffset? notBefore = null,
        TimeSpan? lifetime = null,
        X509Certificate2? issuer = null,
        bool selfSigned = false)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(isCa, false, 0, true));
        if (usage != X509KeyUsageFlags.None)
        {
            request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        }

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

        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            foreach (var uri in uris)
            {
                writer.WriteCharacterString(UniversalTagNumber.IA5String, uri, new Asn1Tag(TagClass.ContextSpecific, 6));
            }

            if (uris.Length == 0)
            {
                writer.WriteCharacterString(UniversalTagNumber.IA5String, "orders.default.svc", new Asn1Tag(TagClass.ContextSpecific, 2));
            }
        }

        request.CertificateExtensions.Add(new X509Extension(SvidProfile.SubjectAltNameOid, writer.Encode(), critical: true));
        var from = notBefore ?? _time.GetUtcNow() - SvidProfile.ClockSkew;
        var to = from + (lifetime ?? TimeSpan.FromHours(1));
        if (selfSigned)
        {
            return request.CreateSelfSigned(from, to);
        }

        using var signed = request.Create(issuer ?? _ca.SigningCertificate, from, to, RandomNumberGenerator.GetBytes(16));
        return signed.CopyWithPrivateKey(key);
    }

    /// <summary>
    /// The extended key usage is read from the extension's own DER, not through the platform's Oid objects (whose lookup
    /// was seen to answer the other purpose under concurrency): both purposes written by hand are found, in either order,
    /// and bytes that are not a SEQUENCE OF OBJECT IDENTIFIER are refused saying so.
    /// </summary>
    [Theory]
    [InlineData("301406082B0601050507030106082B06010505070302", null)]
    [InlineData("301406082B0601050507030206082B06010505070301", null)]
    [InlineData("300A06082B06010505070302", "its extended key usage lacks serverAuth")]
    [InlineData("301406082B0601050507030106082B060105", "its extended key usage is not a valid DER sequence of OIDs")]
    [InlineData("06082B06010505070301", "its extended key usage is not a valid DER sequence of OIDs")]
    public void TryCheckLeaf_ExtendedKeyUsageReadFromItsBytes(string ekuDer, string? refusal)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509Extension(new Oid("2.5.29.37", "Enhanced Key Usage"), Convert.FromHexString(ekuDer), false));
        using var leaf = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));

        var accepted = SvidProfile.TryCheckLeaf(leaf, out var error);

        if (refusal is null)
        {
            Assert.True(accepted, error);
        }
        else
        {
            Assert.False(accepted);
            Assert.StartsWith(refusal, error, StringComparison.Ordinal);
        }
    }
}
