using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// The mesh CA: a self-signed root kept in StateDirectory/ca, or a supplied signing CA. Issues
/// X.509-SVIDs for authenticated identities and validates workload certificates against the bundle.
/// </summary>
internal sealed class CertificateAuthority : IDisposable
{
    public const string RsaOid = SvidProfile.RsaKeyOid;
    public const string EcOid = "1.2.840.10045.2.1";

    /// <summary>How far leaves are backdated: the skew every SVID check allows (<see cref="SvidProfile.ClockSkew"/>).</summary>
    public static readonly TimeSpan ClockSkew = SvidProfile.ClockSkew;
    public static readonly TimeSpan RootLifetime = TimeSpan.FromDays(3650);

    private readonly X509Certificate2 _signing;
    private readonly X509SignatureGenerator _generator;
    private readonly IDisposable _signingKey;
    private readonly TimeProvider _time;

    private CertificateAuthority(
        X509Certificate2 signing, IReadOnlyList<X509Certificate2> chainAfterLeaf, IReadOnlyList<X509Certificate2> roots,
        string trustDomain, CaOptions options, TimeProvider time, bool createdRoot)
    {
        _signing = signing;
        _time = time;
        ChainAfterLeaf = chainAfterLeaf;
        Roots = roots;
        TrustDomain = trustDomain;
        DefaultTtl = options.DefaultTtl;
        MaxTtl = options.MaxTtl;
        CreatedRoot = createdRoot;
        if (signing.GetECDsaPrivateKey() is { } ec)
        {
            _signingKey = ec;
            _generator = X509SignatureGenerator.CreateForECDsa(ec);
        }
        else if (signing.GetRSAPrivateKey() is { } rsa)
        {
            _signingKey = rsa;
            _generator = X509SignatureGenerator.CreateForRSA(rsa, RSASignaturePadding.Pkcs1);
        }
        else
        {
            throw new InvalidOperationException($"CA certificate {signing.Subject} has no ECDSA or RSA private key; supply one with ControlPlane:Ca:KeyFile.");
        }

        Intermediates = [.. chainAfterLeaf.Take(chainAfterLeaf.Count - 1)];
        BundlePem = string.Concat(roots.Select(ToPem));
    }

    public string TrustDomain { get; }

    public TimeSpan DefaultTtl { get; }

    public TimeSpan MaxTtl { get; }

    /// <summary>True when this start made a new self-signed root.</summary>
    public bool CreatedRoot { get; }

    public X509Certificate2 SigningCertificate => _signing;

    /// <summary>What follows a leaf in a response: the signing CA and its intermediates, ending with the root.</summary>
    public IReadOnlyList<X509Certificate2> ChainAfterLeaf { get; }

    public IReadOnlyList<X509Certificate2> Intermediates { get; }

    /// <summary>The trust bundle: the signing root plus ControlPlane:Ca:ExtraRootsFile.</summary>
    public IReadOnlyList<X509Certificate2> Roots { get; }

    public string BundlePem { get; }

    public static string RootCertPath(ControlPlaneOptions options) => Path.Combine(Path.GetFullPath(options.StateDirectory), "ca", "root-cert.pem");

    public static string RootKeyPath(ControlPlaneOptions options) => Path.Combine(Path.GetFullPath(options.StateDirectory), "ca", "root-key.pem");

    public static string ToPem(X509Certificate2 certificate) => PemEncoding.WriteString("CERTIFICATE", certificate.RawData) + "\n";

    /// <summary>Loads (or on first start creates) the signing CA; every problem names the file and the fix.</summary>
    public static CertificateAuthority Load(ControlPlaneOptions options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        var ca = options.Ca;
        var now = time.GetUtcNow();
        X509Certificate2 signing;
        List<X509Certificate2> chainAfterLeaf;
        var created = false;
        if (ca.CertificateFile is not null && ca.KeyFile is not null)
        {
            var certificateKey = ca.Setting(nameof(CaOptions.CertificateFile), ca.CertificateFile);
            var chainKey = ca.Setting(nameof(CaOptions.ChainFile), ca.ChainFile);
            (signing, var following) = LoadSupplied(ca);

            // Certificates after the signing one in its own file (tls.crt) come first; a chain file that starts with the
            // signing certificate itself (Istio's cert-chain.pem) is read from the one after it.
            List<X509Certificate2> chain = [.. following, .. ca.ChainFile is null ? [] : LoadCertificates(ca.ChainFile, chainKey)];
            chain = [.. chain.Where(c => c.Thumbprint != signing.Thumbprint).DistinctBy(c => c.Thumbprint)];
            chainAfterLeaf = IsSelfSigned(signing) ? [signing] : [signing, .. chain];
            if (!IsSelfSigned(chainAfterLeaf[^1]))
            {
                throw new InvalidOperationException(
                    $"{certificateKey} {ca.CertificateFile} is not self-signed, so {chainKey} must list its intermediates and end with the self-signed root (got {(ca.ChainFile is null ? "no ChainFile" : $"a chain ending with {chainAfterLeaf[^1].Subject}")}).");
            }
        }
        else
        {
            (signing, created) = LoadOrCreateRoot(options, now);
            chainAfterLeaf = [signing];
        }

        var root = chainAfterLeaf[^1];
        foreach (var certificate in chainAfterLeaf)
        {
            CheckCa(certificate, "CA certificate", now);
        }

        var roots = new List<X509Certificate2> { root };
        if (ca.ExtraRootsFile is not null)
        {
            var rootsKey = ca.Setting(nameof(CaOptions.ExtraRootsFile), ca.ExtraRootsFile);
            foreach (var extra in LoadCertificates(ca.ExtraRootsFile, rootsKey))
            {
                CheckCa(extra, $"{rootsKey} {ca.ExtraRootsFile}: root", now);
                if (!roots.Any(r => r.Thumbprint == extra.Thumbprint))
                {
                    roots.Add(extra);
                }
            }
        }

        if (chainAfterLeaf.Count > 1)
        {
            using var chain = NewChain(roots, chainAfterLeaf[..^1], now);
            if (!chain.Build(signing))
            {
                throw new InvalidOperationException(
                    $"{ca.Setting(nameof(CaOptions.CertificateFile), ca.CertificateFile)} {ca.CertificateFile} does not chain to the root in {ca.Setting(nameof(CaOptions.ChainFile), ca.ChainFile)}: {Describe(chain)}. List the intermediates in order, then the root.");
            }
        }

        return new CertificateAuthority(signing, chainAfterLeaf, roots, options.TrustDomain, ca, time, created);
    }

    /// <summary>Issues an X.509-SVID for <paramref name="identity"/> to <paramref name="publicKey"/>.</summary>
    public X509Certificate2 Issue(PublicKey publicKey, WorkloadIdentity identity, TimeSpan ttl, IEnumerable<string>? dnsNames = null, IEnumerable<IPAddress>? ipAddresses = null)
    {
        ArgumentNullException.ThrowIfNull(publicKey);
        ArgumentNullException.ThrowIfNull(identity);
        var now = _time.GetUtcNow();
        var notAfter = now + ttl;

        // No leaf outlives the chain that vouches for it: clamped to the first of the signing certificate, intermediates
        // and root to expire. Once that has passed, nothing valid can be issued: a clear error, not a malformed certificate.
        var chainNotAfter = new DateTimeOffset(ChainAfterLeaf.Append(_signing).Min(c => c.NotAfter.ToUniversalTime()));
        if (chainNotAfter <= now)
        {
            var expired = ChainAfterLeaf.Append(_signing).MinBy(c => c.NotAfter)!;
            throw new CertificateAuthorityExpiredException(
                $"the CA cannot issue certificates: its certificate '{expired.Subject}' expired at {chainNotAfter:u} (replace ControlPlane:Ca:CertificateFile/ChainFile, or the self-signed root in the state directory)");
        }

        if (notAfter > chainNotAfter)
        {
            notAfter = chainNotAfter;
        }

        var request = new CertificateRequest(new X500DistinguishedName(string.Empty), publicKey, HashAlgorithmName.SHA256);

        // ForWorkload re-checks the identity by the same rules peers apply, so the CA cannot mint an ID they would refuse.
        SvidProfile.AddLeafExtensions(request, SpiffeId.ForWorkload(identity.TrustDomain, identity.Namespace, identity.ServiceAccount), dnsNames, ipAddresses);
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_signing, true, false));
        var leaf = request.Create(_signing.SubjectName, _generator, now - ClockSkew, notAfter, NewSerial());

        // Never hand out a leaf the mesh's own peers would refuse: the workload could not authenticate with it until it
        // renews, and nothing would say why on its side.
        if (!SvidProfile.TryCheckLeaf(leaf, out var refused))
        {
            leaf.Dispose();
            throw new CryptographicException($"the CA built a leaf for {identity.Namespace}/{identity.ServiceAccount} that the SVID profile refuses: {refused}");
        }

        return leaf;
    }

    /// <summary>The response chain for a leaf: leaf, intermediates…, root; each PEM ends with "\n".</summary>
    public IReadOnlyList<string> ChainPem(X509Certificate2 leaf) => [ToPem(leaf), .. ChainAfterLeaf.Select(ToPem)];

    /// <summary>Validates a workload certificate by the shared SVID rules (chain to this CA's bundle, leaf profile, workload ID in our trust domain).</summary>
    public WorkloadIdentity? ValidateWorkloadCertificate(X509Certificate2 leaf, out string reason)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        if (!SvidValidator.TryValidate(leaf, Intermediates, Roots, "this control plane's CA", TrustDomain, _time.GetUtcNow(), out var id, out var error))
        {
            reason = $"{error}; present a certificate this control plane issued, or a bootstrap token";
            return null;
        }

        reason = string.Empty;
        return id.Workload;
    }

    /// <summary>The URI entries of the certificate's subjectAltName extension.</summary>
    public static IReadOnlyList<string> UriSans(X509Certificate2 certificate) => SvidValidator.UriSans(certificate);

    public void Dispose()
    {
        _signingKey.Dispose();
    }

    private static X509Chain NewChain(IEnumerable<X509Certificate2> roots, IEnumerable<X509Certificate2> intermediates, DateTimeOffset now)
    {
        var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.VerificationTime = now.LocalDateTime;
        chain.ChainPolicy.VerificationTimeIgnored = false;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots.ToArray());
        chain.ChainPolicy.ExtraStore.AddRange(intermediates.ToArray());
        return chain;
    }

    private static string Describe(X509Chain chain) =>
        string.Join("; ", chain.ChainStatus.Select(s => $"{s.Status}: {s.StatusInformation.Trim()}"));

    private static bool IsSelfSigned(X509Certificate2 certificate) => certificate.SubjectName.RawData.AsSpan().SequenceEqual(certificate.IssuerName.RawData);

    private static void CheckCa(X509Certificate2 certificate, string what, DateTimeOffset now)
    {
        var constraints = certificate.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (constraints is not { CertificateAuthority: true })
        {
            throw new InvalidOperationException($"{what} '{certificate.Subject}' is not a CA (basic constraints CA:true missing); supply a CA certificate.");
        }

        var keyUsage = certificate.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (keyUsage is not null && (keyUsage.KeyUsages & X509KeyUsageFlags.KeyCertSign) == 0)
        {
            throw new InvalidOperationException($"{what} '{certificate.Subject}' key usage lacks keyCertSign, so it cannot sign certificates; supply a signing CA.");
        }

        if (certificate.NotAfter.ToUniversalTime() <= now.UtcDateTime || certificate.NotBefore.ToUniversalTime() > now.UtcDateTime)
        {
            throw new InvalidOperationException(
                $"{what} '{certificate.Subject}' is not valid now (valid {certificate.NotBefore.ToUniversalTime():O} to {certificate.NotAfter.ToUniversalTime():O}); replace or rotate it.");
        }
    }

    /// <summary>The signing certificate with its key, and any certificates that follow it in the same file.</summary>
    private static (X509Certificate2 Signing, List<X509Certificate2> Following) LoadSupplied(CaOptions ca)
    {
        var certificateFile = ca.CertificateFile!;
        var keyFile = ca.KeyFile!;
        var certificateKey = ca.Setting(nameof(CaOptions.CertificateFile), certificateFile);
        var keyKey = ca.Setting(nameof(CaOptions.KeyFile), keyFile);
        foreach (var (key, file) in new[] { (certificateKey, certificateFile), (keyKey, keyFile) })
        {
            if (!File.Exists(file))
            {
                throw new InvalidOperationException($"{key} {Path.GetFullPath(file)} does not exist; point it at a PEM file.");
            }
        }

        // A mounted Secret is group-readable when the pod has an fsGroup (the kubelet adds 0440); never world-readable.
        PrivateKeyFiles.EnsureOwnerOnly(keyFile, allowGroupRead: ca.FromCaCerts, ca.FromCaCerts ? $"{keyKey}: mount the Secret with defaultMode 0400 (0440 with an fsGroup)" : null);
        var certificates = LoadCertificates(certificateFile, certificateKey);
        var pem = File.ReadAllText(keyFile);
        try
        {
            var certificate = certificates[0];
            var signing = certificate.GetKeyAlgorithm() == RsaOid ? WithKey(certificate, RSA.Create(), pem) : WithKey(certificate, ECDsa.Create(), pem);
            return (signing, certificates[1..]);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException(
                $"{keyKey} {Path.GetFullPath(keyFile)} does not hold the private key of {certificateKey} {Path.GetFullPath(certificateFile)} ({ex.Message}); supply the matching key.", ex);
        }
    }

    private static X509Certificate2 WithKey(X509Certificate2 certificate, AsymmetricAlgorithm key, string pem)
    {
        using (key)
        {
            key.ImportFromPem(pem);
            return key switch
            {
                RSA rsa => certificate.CopyWithPrivateKey(rsa),
                ECDsa ec => certificate.CopyWithPrivateKey(ec),
                _ => throw new CryptographicException("unsupported key type"),
            };
        }
    }

    private static List<X509Certificate2> LoadCertificates(string file, string key)
    {
        if (!File.Exists(file))
        {
            throw new InvalidOperationException($"{key} {Path.GetFullPath(file)} does not exist; point it at a PEM file of certificates.");
        }

        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPemFile(file);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidOperationException($"{key} {Path.GetFullPath(file)} is not a PEM certificate file ({ex.Message}).", ex);
        }

        if (collection.Count == 0)
        {
            throw new InvalidOperationException($"{key} {Path.GetFullPath(file)} contains no PEM CERTIFICATE block.");
        }

        return [.. collection];
    }

    private static (X509Certificate2 Root, bool Created) LoadOrCreateRoot(ControlPlaneOptions options, DateTimeOffset now)
    {
        var certPath = RootCertPath(options);
        var keyPath = RootKeyPath(options);
        var certExists = File.Exists(certPath);
        var keyExists = File.Exists(keyPath);
        if (certExists != keyExists)
        {
            throw new InvalidOperationException(
                $"{(certExists ? keyPath : certPath)} is missing but {(certExists ? certPath : keyPath)} exists; restore the missing file, or delete both to create a new root (every workload certificate then has to be reissued).");
        }

        if (!certExists)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest(new X500DistinguishedName("CN=Mesh Root CA, O=Mesh"), key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            // Backdated like the leaves so a leaf's NotBefore (now − 2 min) lies inside the root's validity.
            using var root = request.CreateSelfSigned(now - TimeSpan.FromHours(1), now - TimeSpan.FromHours(1) + RootLifetime);
            PrivateKeyFiles.TryCreate(keyPath, key.ExportPkcs8PrivateKeyPem());
            File.WriteAllText(certPath, ToPem(root), Encoding.ASCII);
        }

        PrivateKeyFiles.EnsureOwnerOnly(keyPath);
        try
        {
            return (X509Certificate2.CreateFromPemFile(certPath, keyPath), !certExists);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException($"Cannot load the mesh root from {certPath} and {keyPath} ({ex.Message}); restore them, or delete both to create a new root.", ex);
        }
    }

    private static byte[] NewSerial()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] = (byte)((serial[0] & 0x7F) | 0x01); // positive and never all zero
        return serial;
    }
}

/// <summary>The CA's signing chain has expired: no certificate it could issue would be valid.</summary>
internal sealed class CertificateAuthorityExpiredException(string message) : Exception(message);
