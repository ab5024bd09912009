using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Xds.Identity;

/// <summary>
/// What a leaf X.509-SVID carries (SPIFFE X509-SVID §4, §5.2): the control plane's CA builds leaves with
/// <see cref="AddLeafExtensions"/> and both sides check peers with <see cref="TryCheckLeaf"/>, so issuance and
/// validation cannot drift apart.
/// </summary>
internal static class SvidProfile
{
    /// <summary>How far a NotBefore may lie ahead of our clock; the CA backdates leaves by the same amount (as Istio does).</summary>
    public static readonly TimeSpan ClockSkew = TimeSpan.FromMinutes(2);

    public const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";
    public const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";
    public const string SubjectAltNameOid = "2.5.29.17";
    public const string RsaKeyOid = "1.2.840.113549.1.1.1";

    /// <summary>
    /// Adds the leaf extensions: basicConstraints CA:false, keyUsage digitalSignature (plus keyEncipherment for RSA),
    /// extendedKeyUsage serverAuth and clientAuth (every workload is both), a critical SAN (the subject is empty)
    /// holding the one URI and optional DNS/IP names (the control plane's serving certificate), and the key identifier.
    /// </summary>
    public static void AddLeafExtensions(CertificateRequest request, SpiffeId id, IEnumerable<string>? dnsNames = null, IEnumerable<IPAddress>? ipAddresses = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(id);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        var usage = X509KeyUsageFlags.DigitalSignature | (request.PublicKey.Oid.Value == RsaKeyOid ? X509KeyUsageFlags.KeyEncipherment : X509KeyUsageFlags.None);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(usage, true));
        // Value and friendly name both given: Oid(string) looks the text up as a friendly name first, a native lookup that
        // concurrent issuance was seen to answer with another OID (a leaf with clientAuth twice and no serverAuth).
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(ServerAuthOid, "Server Authentication"), new Oid(ClientAuthOid, "Client Authentication")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri(id.Value));
        foreach (var dns in dnsNames ?? [])
        {
            san.AddDnsName(dns);
        }

        foreach (var ip in ipAddresses ?? [])
        {
            san.AddIpAddress(ip);
        }

        request.CertificateExtensions.Add(san.Build(critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
    }

    /// <summary>
    /// The leaf rules: not a CA, digitalSignature without keyCertSign or cRLSign, and an extended key usage naming
    /// both serverAuth and clientAuth. X509-SVID §4.4 only says SHOULD for the extension; requiring it is stricter
    /// on purpose (every SVID this mesh issues has it, and a certificate without it was never meant to be one).
    /// </summary>
    public static bool TryCheckLeaf(X509Certificate2 leaf, out string error)
    {
        ArgumentNullException.ThrowIfNull(leaf);
        if (leaf.Extensions.OfType<X509BasicConstraintsExtension>().FirstOrDefault() is { CertificateAuthority: true })
        {
            error = "it is a CA certificate (basicConstraints CA:true); a CA certificate may not authenticate (X509-SVID §5.2)";
            return false;
        }

        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        if (usage is null || (usage.KeyUsages & X509KeyUsageFlags.DigitalSignature) == 0)
        {
            error = "its key usage lacks digitalSignature (X509-SVID §4.3)";
            return false;
        }

        if ((usage.KeyUsages & (X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign)) != 0)
        {
            error = "its key usage allows keyCertSign or cRLSign, which a leaf must not (X509-SVID §5.2)";
            return false;
        }

        var eku = leaf.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault();
        var hasServerAuth = false;
        var hasClientAuth = false;
        if (eku is not null && !TryReadKeyPurposes(eku.RawData, ref hasServerAuth, ref hasClientAuth))
        {
            error = "its extended key usage is not a valid DER sequence of OIDs";
            return false;
        }

        if (!hasServerAuth || !hasClientAuth)
        {
            error = eku is null
                ? "it has no extended key usage; an SVID must name both serverAuth and clientAuth"
                : $"its extended key usage lacks {(hasServerAuth ? "clientAuth" : hasClientAuth ? "serverAuth" : "serverAuth and clientAuth")}; an SVID must name both";
            return false;
        }

        error = string.Empty;
        return true;
    }

    /// <summary>
    /// Reads the key purposes from the extension's own bytes (RFC 5280 §4.2.1.12: a SEQUENCE OF OBJECT IDENTIFIER) rather
    /// than through <see cref="X509EnhancedKeyUsageExtension.EnhancedKeyUsages"/>. A control plane in CI once refused a
    /// client certificate it had issued, and checked the same way, a moment before as "lacks serverAuth", on every call of
    /// that connection; the cause was not reproduced. Issuance had met the like before: an <see cref="Oid"/> built from a
    /// string is looked up as a friendly name first, and under concurrency that native lookup was seen to answer the other
    /// purpose. Dotted strings read here involve no lookup and no shared decoded state, and a refusal now reflects the
    /// certificate's bytes.
    /// </summary>
    private static bool TryReadKeyPurposes(byte[] der, ref bool serverAuth, ref bool clientAuth)
    {
        try
        {
            var reader = new AsnReader(der, AsnEncodingRules.DER);
            var purposes = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            while (purposes.HasData)
            {
                var purpose = purposes.ReadObjectIdentifier();
                serverAuth |= purpose == ServerAuthOid;
                clientAuth |= purpose == ClientAuthOid;
            }

            return true;
        }
        catch (AsnContentException)
        {
            return false;
        }
    }
}
