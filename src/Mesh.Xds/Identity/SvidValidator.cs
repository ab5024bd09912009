using System.Diagnostics.CodeAnalysis;
using System.Formats.Asn1;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Xds.Identity;

/// <summary>
/// Validates an X.509-SVID (SPIFFE X509-SVID §5) the same way on both sides: the client for its peers and the CA's
/// response, the control plane for a renewing workload. In order: an RFC 5280 path to a root of the given bundle only
/// (custom root trust, no system store, no downloads), every certificate of that path valid now (NotBefore may be up
/// to <see cref="SvidProfile.ClockSkew"/> ahead), the leaf rules of <see cref="SvidProfile.TryCheckLeaf"/>, exactly
/// one URI SAN, an Istio workload SPIFFE ID (<see cref="SpiffeId.TryParseWorkload(string?, out SpiffeId?, out string?)"/>)
/// in the expected trust domain.
/// </summary>
internal static class SvidValidator
{
    private static readonly Asn1Tag UriTag = new(TagClass.ContextSpecific, 6);

    /// <summary>
    /// Validates <paramref name="leaf"/>; <paramref name="intermediates"/> may hold intermediates (and anything else the
    /// peer sent: only a path to <paramref name="roots"/> counts). <paramref name="id"/> is set once the ID is read,
    /// also when a later rule fails, so callers can log who was refused.
    /// </summary>
    public static bool TryValidate(
        X509Certificate2? leaf,
        IEnumerable<X509Certificate2> intermediates,
        IEnumerable<X509Certificate2> roots,
        string rootsSource,
        string trustDomain,
        DateTimeOffset now,
        [NotNullWhen(true)] out SpiffeId? id,
        out string error)
    {
        ArgumentNullException.ThrowIfNull(intermediates);
        ArgumentNullException.ThrowIfNull(roots);
        id = null;
        if (leaf is null)
        {
            error = "the peer presented no certificate";
            return false;
        }

        if (!CheckChain(leaf, intermediates, roots, rootsSource, now, out error)
            || !SvidProfile.TryCheckLeaf(leaf, out error))
        {
            error = $"certificate {Describe(leaf)}: {error}";
            return false;
        }

        if (!TryGetSpiffeId(leaf, out var uri, out error))
        {
            return false;
        }

        if (!SpiffeId.TryParse(uri, out id, out var reason))
        {
            error = $"the URI SAN of certificate {Describe(leaf)} is not a SPIFFE ID: {reason}";
            return false;
        }

        if (id.Workload is null)
        {
            error = $"{id} is not a workload identity (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, lowercase DNS labels)";
            return false;
        }

        if (!string.Equals(id.TrustDomain, trustDomain, StringComparison.Ordinal))
        {
            error = $"{id} belongs to trust domain '{id.TrustDomain}', not '{trustDomain}'";
            return false;
        }

        error = string.Empty;
        return true;
    }

    /// <summary>Reads the single URI SAN of a certificate; more or fewer than one is an error (X509-SVID §2).</summary>
    public static bool TryGetSpiffeId(X509Certificate2 certificate, out string uri, out string error)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        uri = string.Empty;
        if (!TryReadUriSans(certificate, out var uris, out error))
        {
            return false;
        }

        if (uris.Count != 1)
        {
            error = $"an X.509-SVID has exactly one URI SAN; certificate {Describe(certificate, uris)} has {uris.Count}";
            return false;
        }

        uri = uris[0];
        return true;
    }

    /// <summary>The URI entries of a certificate's subjectAltName extension (empty when it has none or cannot be decoded).</summary>
    public static IReadOnlyList<string> UriSans(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return TryReadUriSans(certificate, out var uris, out _) ? uris : [];
    }

    private static bool TryReadUriSans(X509Certificate2 certificate, out List<string> uris, out string error)
    {
        uris = [];
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != SvidProfile.SubjectAltNameOid)
            {
                continue;
            }

            try
            {
                var names = new AsnReader(extension.RawData, AsnEncodingRules.DER).ReadSequence();
                while (names.HasData)
                {
                    if (names.PeekTag().HasSameClassAndValue(UriTag))
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
                error = $"the subjectAltName extension of certificate '{certificate.Subject}' (issuer '{certificate.Issuer}') cannot be decoded: {ex.Message}";
                return false;
            }
        }

        error = string.Empty;
        return true;
    }

    /// <summary>
    /// The policy of the chain SslStream builds during a handshake, before the validation callback whose verdict replaces
    /// that chain's (the mesh's own <see cref="TryValidate"/>, or the control plane's authenticators): it trusts nothing and
    /// fetches nothing, so the platform's chain stays the short, failed one it always was here, with no downloads. Without
    /// it the platform downloads a missing issuer from the URL the peer's certificate names (its Authority Information
    /// Access), synchronously and for up to 15 s, on the handshake's thread: any peer that can open a connection could hold
    /// threads with a certificate of its own making (on the sidecar's socket event threads, every connection they carry).
    /// SslStream copies the policy it is given, so one per handshake or per handler both do.
    /// </summary>
    public static X509ChainPolicy HandshakeChainPolicy() => new()
    {
        TrustMode = X509ChainTrustMode.CustomRootTrust,
        RevocationMode = X509RevocationMode.NoCheck,
        DisableCertificateDownloads = true,
    };

    private static bool CheckChain(X509Certificate2 leaf, IEnumerable<X509Certificate2> intermediates, IEnumerable<X509Certificate2> roots, string rootsSource, DateTimeOffset now, out string error)
    {
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        foreach (var root in roots)
        {
            policy.CustomTrustStore.Add(root);
        }

        if (policy.CustomTrustStore.Count == 0)
        {
            error = $"no trust bundle yet ({rootsSource} holds no root): cannot validate certificates";
            return false;
        }

        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = now.UtcDateTime;

        // Validity is checked below with the skew allowance; the chain engine would allow none.
        policy.VerificationFlags = X509VerificationFlags.IgnoreNotTimeValid;
        foreach (var certificate in intermediates)
        {
            if (!certificate.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span))
            {
                policy.ExtraStore.Add(certificate);
            }
        }

        if (!chain.Build(leaf))
        {
            var statuses = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, s) => all | s.Status);
            error = (statuses & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0
                ? $"it is not issued by a CA of the trust bundle from {rootsSource} (foreign CA or self-signed: {statuses})"
                : $"its chain to the trust bundle from {rootsSource} is not valid ({statuses})";
            return false;
        }

        foreach (var element in chain.ChainElements)
        {
            var certificate = element.Certificate;
            var notBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime());
            var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime());
            var which = ReferenceEquals(certificate, leaf) || certificate.RawDataMemory.Span.SequenceEqual(leaf.RawDataMemory.Span) ? "it" : $"its issuer '{certificate.Subject}'";
            if (notAfter < now)
            {
                error = $"{which} expired at {notAfter:O} (valid {notBefore:O} to {notAfter:O})";
                return false;
            }

            if (notBefore > now + SvidProfile.ClockSkew)
            {
                error = $"{which} is not valid before {notBefore:O}, more than {SvidProfile.ClockSkew.TotalMinutes:0} min ahead of now ({now:O})";
                return false;
            }
        }

        error = string.Empty;
        return true;
    }

    private static string Describe(X509Certificate2 certificate) => Describe(certificate, UriSans(certificate));

    private static string Describe(X509Certificate2 certificate, IReadOnlyList<string> uris) =>
        uris.Count > 0
            ? $"'{string.Join(", ", uris)}' (issuer '{certificate.Issuer}')"
            : $"'{certificate.Subject}' (issuer '{certificate.Issuer}')";
}
