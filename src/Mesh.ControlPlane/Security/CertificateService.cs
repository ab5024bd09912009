using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Mesh.Xds.Istio.Auth.V1;

namespace Mesh.ControlPlane.Security;

/// <summary>istio.v1.auth.IstioCertificateService: signs a CSR's public key for the caller's authenticated identity.</summary>
internal sealed partial class CertificateService(CertificateAuthority ca, CallerAuthentication authentication, ILogger<CertificateService> logger)
    : IstioCertificateService.IstioCertificateServiceBase
{
    public const int MaxCsrLength = 64 * 1024;

    public override Task<IstioCertificateResponse> CreateCertificate(IstioCertificateRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        SecureTransport.Require(context, "the CA (istio.v1.auth.IstioCertificateService)");
        var identity = authentication.Authenticate(context);

        var ttl = Ttl(request.ValidityDuration);
        var publicKey = ReadCsrPublicKey(request.Csr);
        using var leaf = ca.Issue(publicKey, identity, ttl);
        var response = new IstioCertificateResponse();
        response.CertChain.AddRange(ca.ChainPem(leaf));
        var serial = leaf.SerialNumber;
        var notAfter = leaf.NotAfter.ToUniversalTime();
        LogIssued(logger, identity.SpiffeId, serial, notAfter, context.Peer);
        return Task.FromResult(response);
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

        CertificateRequest request;
        try
        {
            request = CertificateRequest.LoadSigningRequestPem(csr, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.UnsafeLoadCertificateExtensions);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            throw Invalid($"csr is not a valid PEM PKCS#10 request with a valid self-signature ({ex.Message})");
        }

        if (request.CertificateExtensions.OfType<X509BasicConstraintsExtension>().Any(b => b.CertificateAuthority))
        {
            throw Invalid("csr requests a CA certificate (basic constraints CA:true); workload certificates are never CAs");
        }

        var key = request.PublicKey;
        switch (key.Oid.Value)
        {
            case CertificateAuthority.EcOid:
                using (var ec = key.GetECDsaPublicKey())
                {
                    var curve = ec?.ExportParameters(false).Curve.Oid;
                    var name = curve?.FriendlyName ?? curve?.Value;
                    if (curve?.Value is not ("1.2.840.10045.3.1.7" or "1.3.132.0.34"))
                    {
                        throw Invalid($"csr key is ECDSA on curve {name ?? "unknown"}; only P-256, P-384 and RSA of at least 2048 bits are accepted");
                    }
                }

                break;
            case CertificateAuthority.RsaOid:
                using (var rsa = key.GetRSAPublicKey())
                {
                    if (rsa is null || rsa.KeySize < 2048)
                    {
                        throw Invalid(string.Create(CultureInfo.InvariantCulture, $"csr key is RSA {rsa?.KeySize ?? 0} bits; RSA keys must have at least 2048 bits"));
                    }
                }

                break;
            default:
                throw Invalid($"csr key algorithm {key.Oid.FriendlyName ?? key.Oid.Value} is not accepted; use ECDSA P-256/P-384 or RSA of at least 2048 bits");
        }

        return key;
    }

    private static RpcException Invalid(string message) => new(new Status(StatusCode.InvalidArgument, message));

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Issued certificate for {SpiffeId} serial {Serial} valid until {NotAfter:O} to {Peer}")]
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
