using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Client.Security;

/// <summary>
/// Validates a peer's X.509-SVID (SPIFFE X509-SVID §5): RFC 5280 path to a root of the current bundle only (custom
/// root trust, no system store, no downloads), then the leaf rules: exactly one URI SAN, a spiffe ID of the expected
/// trust domain with a non-root path, not a CA, digitalSignature and neither keyCertSign nor cRLSign, and when an
/// extended key usage is present both serverAuth and clientAuth.
/// </summary>
internal static class SvidValidator
{
    /// <summary>How far a peer's NotBefore may be in the future (Istio backdates by the same amount).</summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(2);

    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    /// <summary>Validates <paramref name="leaf"/>; <paramref name="presented"/> holds the other certificates the peer sent.</summary>
    public static bool TryValidate(
        X509Certificate2? leaf,
        IEnumerable<X509Certificate2> presented,
        TrustBundle bundle,
        string trustDomain,
        DateTimeOffset now,
        out SpiffeId? id,
        out string error)
    {
        ArgumentNullException.ThrowIfNull(presented);
        ArgumentNullException.ThrowIfNull(bundle);
        id = null;
        if (leaf is null)
        {
            error = "the peer presented no certificate";
            return false;
        }

        if (!TryGetSpiffeId(leaf, out var uri, out error))
        {
            return false;
        }

        if (!SpiffeId.TryParse(uri, out var parsed, out var reason))
        {
            error = $"the URI SAN '{uri}' is not a SPIFFE ID: {reason}";
            return false;
        }

        id = parsed;
        if (!string.Equals(parsed.TrustDomain, trustDomain, StringComparison.Ordinal))
        {
            error = $"{parsed} belongs to trust domain '{parsed.TrustDomain}', not '{trustDomain}'";
            return false;
        }

        if (!CheckLeafUsage(leaf, out error))
        {
            error = $"{parsed}: {error}";
            return false;
        }

        if (!CheckChain(leaf, presented, bundle, now, out error))
        {
            error = $"{parsed}: {error}";
            return false;
        }

        error = string.Empty;
        return true;
    }

    /// <summary>Reads the single URI SAN of a certificate.</summary>
    public static bool TryGetSpiffeId(X509Certificate2 certificate, out string uri, out string error)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        uri = string.Empty;
        var uris = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17")
            {
                continue;
            }

            try
            {
                var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
                var names = reader.ReadSequence();
                while (names.HasData)
                {
                    var tag = names.PeekTag();
                    if (tag.HasSameClassAndValue(UriTag))
                    {
                        uris.Add(names.ReadCharacterString(UniversalTagNumber.IA5String, UriTag));
                    }
                    else
                    {
                        names.ReadEncodedValue();
                    }
                }
            }
            catch (AsnContentException ex)
            {
                error = $"the subject alternative name extension cannot be decoded: {ex.Message}";
                return false;
            }
        }

        if (uris.Count != 1)
        {
            error = $"an X.509-SVID has exactly one URI SAN; this certificate (subject '{certificate.Subject}') has {uris.Count}";
            return false;
        }

        uri = uris[0];
        error = string.Empty;
        return true;
    }

    private static bool CheckLeafUsage(X509Certificate2 leaf, out string error)
    {
        var basic = leaf.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault();
        if (basic is { CertificateAuthority: true })
        {
            error = "the leaf is a CA certificate (basicConstraints CA:true); a CA must never authenticate";
            return false;
        }

        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (usage is null || !usage.KeyUsages.HasFlag(X509KeyUsageFlags.DigitalSignature))
        {
            error = "the leaf's key usage lacks digitalSignature";
            return false;
        }

        if ((usage.KeyUsages & (X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign)) != 0)
        {
            error = "the leaf's key usage allows keyCertSign or cRLSign";
            return false;
        }

        if (leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is { } eku)
        {
            var oids = eku.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value).ToHashSet(StringComparer.Ordinal);
            if (!oids.Contains(ServerAuth) || !oids.Contains(ClientAuth))
            {
                error = "the leaf's extended key usage must include both serverAuth and clientAuth";
                return false;
            }
        }

        error = string.Empty;
        return true;
    }

    private static bool CheckChain(X509Certificate2 leaf, IEnumerable<X509Certificate2> presented, TrustBundle bundle, DateTimeOffset now, out string error)
    {
        if (bundle.Roots.Count == 0)
        {
            error = "no trust bundle yet: cannot validate peers";
            return false;
        }

        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.AddRange(bundle.Roots);
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now.UtcDateTime;

        // Validity is checked below with the skew allowance; the chain engine would apply none.
        policy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        foreach (var certificate in presented)
        {
            if (!ReferenceEquals(certificate, leaf) && certificate.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span) is false)
            {
                policy.ExtraStore.Add(certificate);
            }
        }

        if (!chain.Build(leaf))
        {
            var problems = chain.ChainStatus
                .Where(s => s.Status != X509ChainStatusFlags.NoError)
                .Select(s => s.Status.ToString())
                .Distinct(StringComparer.Ordinal);
            error = $"the certificate chain does not lead to a root of the trust bundle from {bundle.Source} ({string.Join(", ", problems)})";
            return false;
        }

        foreach (var element in chain.ChainElements)
        {
            var certificate = element.Certificate;
            var notBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime());
            var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime());
            if (notAfter < now)
            {
                error = $"certificate '{certificate.Subject}' expired at {notAfter:O}";
                return false;
            }

            if (notBefore > now + ClockSkew)
            {
                error = $"certificate '{certificate.Subject}' is not valid before {notBefore:O} (more than {ClockSkew.TotalMinutes} min ahead)";
                return false;
            }
        }

        error = string.Empty;
        return true;
    }
}
