using System.Formats.Asn1;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Security;

/// <summary>istio.v1.auth.IstioCertificateService: signs a CSR's public key for the caller's authenticated identity.</summary>
internal sealed partial class CertificateService(
    CertificateAuthority ca, CallerAuthentication authentication, SpentTokens spentTokens, ControlPlaneOptions options, ILogger<CertificateService> logger,
    ControlPlaneMetrics? metrics = null)
    : IstioCertificateService.IstioCertificateServiceBase
{
    public const int MaxCsrLength = 64 * 1024;
    private const string P256 = "1.2.840.10045.3.1.7";
    private const string P384 = "1.3.132.0.34";
    private const string CsrLabel = "CERTIFICATE REQUEST";

    public override async Task<IstioCertificateResponse> CreateCertificate(IstioCertificateRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        SecureTransport.Require(context, "the CA (istio.v1.auth.IstioCertificateService)");
        metrics?.CsrReceived();
        AuthenticationOutcome caller;
        try
        {
            caller = await authentication.AuthenticateCallerAsync(context).ConfigureAwait(false);
        }
        catch (RpcException)
        {
            metrics?.AuthenticationFailed();
            throw;
        }

        var identity = caller.Identity!;

        var ttl = Ttl(request.ValidityDuration);
        PublicKey publicKey;
        try
        {
            publicKey = ReadCsrPublicKey(request.Csr);
        }
        catch (RpcException)
        {
            metrics?.CsrParsingFailed();
            throw;
        }

        if (caller.Token is { } token)
        {
            // A token buys a short first certificate; renewing with it (the SVID) then gets the normal TTL.
            if (ttl > options.Bootstrap.MaxCertificateTtl)
            {
                ttl = options.Bootstrap.MaxCertificateTtl;
            }

            // Spent only once the request is known to be good (a malformed CSR does not burn the token), and before issuing.
            if (!token.Reusable && !spentTokens.TryConsume(token.Jti, token.Expires, out var reason))
            {
                metrics?.AuthenticationFailed();
                throw new RpcException(new Status(StatusCode.Unauthenticated, "caller is not authenticated: bearer token: " + reason));
            }
        }

        X509Certificate2 issued;
        try
        {
            issued = ca.Issue(publicKey, identity, ttl);
        }
        catch (CryptographicException)
        {
            metrics?.CsrSigningFailed("sign");
            throw;
        }
        catch (CertificateAuthorityExpiredException expired)
        {
            metrics?.CsrSigningFailed("expired");
            throw new RpcException(new Status(StatusCode.FailedPrecondition, expired.Message));
        }

        using var leaf = issued;
        metrics?.CertificateIssued();
        var response = new IstioCertificateResponse();
        response.CertChain.AddRange(ca.ChainPem(leaf));
        var serial = leaf.SerialNumber;
        var notAfter = leaf.NotAfter.ToUniversalTime();
        LogIssued(logger, identity.SpiffeId, serial, notAfter, context.Peer);
        return response;
    }

    private TimeSpan Ttl(long seconds)
    {
        if (seconds <= 0)
        {
            return ca.DefaultTtl;
        }

        var max = (long)ca.MaxTtl.TotalSeconds;
        if (seconds > max)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"validity_duration {seconds} s exceeds the maximum {max} s (ControlPlane:Ca:MaxTtl); request less, or 0 for the default {(long)ca.DefaultTtl.TotalSeconds} s"));
        }

        return TimeSpan.FromSeconds(seconds);
    }

    /// <summary>Takes only the CSR's public key: every name and extension it asks for is ignored, except that CA:true is refused.</summary>
    internal static PublicKey ReadCsrPublicKey(string csr)
    {
        if (string.IsNullOrEmpty(csr))
        {
            throw Invalid("csr is required: a PEM 'CERTIFICATE REQUEST' signed by the workload's key");
        }

        if (csr.Length > MaxCsrLength)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"csr is {csr.Length} bytes; the limit is {MaxCsrLength} bytes (64 KiB)"));
        }

        var der = ReadSingleCsrBlock(csr);
        var algorithm = CheckCsrKeyAlgorithm(der);
        CertificateRequest request;
        try
        {
            // The same bytes the algorithm check read: no second PEM parse that could pick another block.
            request = CertificateRequest.LoadSigningRequest(der, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw Invalid($"csr is not a valid PEM PKCS#10 request with a valid self-signature ({ex.Message})");
        }

        if (request.CertificateExtensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
        {
            throw Invalid("csr requests a CA certificate (basic constraints CA:true); workload certificates are never CAs");
        }

        // Checked again on the key that will be certified, not only on the pre-parse above.
        var key = request.PublicKey;
        if (key.Oid.Value != algorithm)
        {
            throw Invalid("csr public key could not be read consistently; send a DER PKCS#10 request in PEM");
        }

        if (algorithm == CertificateAuthority.RsaOid)
        {
            using var rsa = key.GetRSAPublicKey();
            if (rsa is null || rsa.KeySize < 2048)
            {
                throw Invalid(string.Create(CultureInfo.InvariantCulture, $"csr key is RSA {rsa?.KeySize ?? 0} bits; RSA keys must have at least 2048 bits"));
            }
        }
        else
        {
            CheckCurve(ReadNamedCurve(key.EncodedParameters?.RawData));
        }

        return key;
    }

    /// <summary>
    /// Exactly one PEM block, labelled CERTIFICATE REQUEST, and nothing PEM-like after it: a decoy block in front of (or behind)
    /// the real request must never let one parser check a key and another certify a different one.
    /// </summary>
    private static byte[] ReadSingleCsrBlock(string csr)
    {
        if (!PemEncoding.TryFind(csr, out var pem))
        {
            throw Invalid("csr is not a valid PEM PKCS#10 request (no PEM block found)");
        }

        var label = csr[pem.Label];
        if (!label.Equals(CsrLabel, StringComparison.Ordinal))
        {
            throw Invalid($"csr PEM block is labelled '{label}'; exactly one block labelled '{CsrLabel}' is accepted");
        }

        var rest = csr.AsSpan(pem.Location.End);
        if (PemEncoding.TryFind(rest, out _) || rest.Contains("-----BEGIN", StringComparison.Ordinal))
        {
            throw Invalid($"csr has more than one PEM block; exactly one block labelled '{CsrLabel}' is accepted");
        }

        try
        {
            return Convert.FromBase64String(csr[pem.Base64Data]);
        }
        catch (FormatException ex)
        {
            throw Invalid($"csr is not a valid PEM PKCS#10 request ({ex.Message})");
        }
    }

    /// <summary>
    /// Reads the key algorithm (and EC curve) from the CSR's SubjectPublicKeyInfo before anything else parses it, so a key
    /// the platform cannot even verify (Ed25519, an exotic curve) is refused by name rather than as "invalid signature".
    /// </summary>
    private static string CheckCsrKeyAlgorithm(byte[] der)
    {
        string algorithm;
        string? curve = null;
        try
        {
            var info = new AsnReader(der, AsnEncodingRules.DER).ReadSequence().ReadSequence();
            _ = info.ReadInteger();
            info.ReadEncodedValue(); // subject
            var algorithmIdentifier = info.ReadSequence().ReadSequence();
            algorithm = algorithmIdentifier.ReadObjectIdentifier();
            if (algorithm == CertificateAuthority.EcOid && algorithmIdentifier.HasData && algorithmIdentifier.PeekTag() == Asn1Tag.ObjectIdentifier)
            {
                curve = algorithmIdentifier.ReadObjectIdentifier();
            }
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or AsnContentException)
        {
            throw Invalid($"csr is not a valid PEM PKCS#10 request ({ex.Message})");
        }

        switch (algorithm)
        {
            case CertificateAuthority.RsaOid:
                return algorithm;
            case CertificateAuthority.EcOid:
                CheckCurve(curve);
                return algorithm;
            default:
                throw Invalid($"csr key algorithm {AlgorithmName(algorithm)} is not accepted; use ECDSA P-256/P-384 or RSA of at least 2048 bits");
        }
    }

    private static void CheckCurve(string? curve)
    {
        if (curve is not (P256 or P384))
        {
            throw Invalid($"csr key is ECDSA on curve {CurveName(curve)}; only P-256, P-384 and RSA of at least 2048 bits are accepted");
        }
    }

    /// <summary>The named-curve OID of an EC key's parameters, or null for explicit parameters (never accepted).</summary>
    private static string? ReadNamedCurve(byte[]? parameters)
    {
        if (parameters is null || parameters.Length == 0)
        {
            return null;
        }

        try
        {
            var reader = new AsnReader(parameters, AsnEncodingRules.DER);
            return reader.PeekTag() == Asn1Tag.ObjectIdentifier ? reader.ReadObjectIdentifier() : null;
        }
        catch (AsnContentException)
        {
            return null;
        }
    }

    private static string CurveName(string? oid) => oid switch
    {
        null => "(explicit parameters, not a named curve)",
        "1.3.132.0.35" => "P-521 (secp521r1)",
        "1.3.132.0.10" => "secp256k1",
        "1.2.840.10045.3.1.1" => "P-192 (secp192r1)",
        "1.3.132.0.33" => "P-224 (secp224r1)",
        _ => new Oid(oid).FriendlyName is { Length: > 0 } name ? $"{name} ({oid})" : oid,
    };

    private static string AlgorithmName(string oid) => oid switch
    {
        "1.3.101.112" => "Ed25519 (1.3.101.112)",
        "1.3.101.113" => "Ed448 (1.3.101.113)",
        "1.2.840.10040.4.1" => "DSA (1.2.840.10040.4.1)",
        _ => new Oid(oid).FriendlyName is { Length: > 0 } name ? $"{name} ({oid})" : oid,
    };

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    [LoggerMessage(EventId = 1, EventName = "LogIssued", Level = LogLevel.Information, Message = "Issued certificate for {SpiffeId} serial {Serial} valid until {NotAfter:O} to {Peer}")]
    private static partial void LogIssued(ILogger logger, string spiffeId, string serial, DateTime notAfter, string peer);
}

/// <summary>Which listener a call came in on: only the secure port is HTTPS.</summary>
internal static class SecureTransport
{
    public static bool IsSecure(ServerCallContext context) => context.GetHttpContext().Request.IsHttps;

    /// <summary>Throws UNIMPLEMENTED for calls on a plaintext listener: the service does not exist there.</summary>
    public static void Require(ServerCallContext context, string what)
    {
        if (!IsSecure(context))
        {
            throw new RpcException(new Status(StatusCode.Unimplemented,
                $"{what} is served only on the TLS port (ControlPlane:SecureAddress), never on the plaintext port; connect with https and trust /ca/bundle.pem"));
        }
    }
}
