using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// The control plane's own SVID for the secure port (spiffe://td/ns/mesh-system/sa/mesh-control-plane plus
/// DNS localhost and IP 127.0.0.1), reissued at half life; each TLS handshake picks the current one.
/// </summary>
internal sealed partial class ServerCertificateProvider(CertificateAuthority ca, TimeProvider time, ILogger<ServerCertificateProvider> logger)
{
    private readonly Lock _gate = new();
    private Issued? _current;

    public WorkloadIdentity Identity => ControlPlaneIdentity.In(ca.TrustDomain);

    /// <summary>The certificate context (leaf + intermediates) to serve now.</summary>
    public SslStreamCertificateContext Current
    {
        get
        {
            var now = time.GetUtcNow();
            lock (_gate)
            {
                if (_current is null || now >= _current.RenewAt)
                {
                    _current = Issue(now);
                }

                return _current.Context;
            }
        }
    }

    public X509Certificate2 CurrentCertificate
    {
        get
        {
            _ = Current;
            lock (_gate)
            {
                return _current!.Certificate;
            }
        }
    }

    public SslServerAuthenticationOptions CreateSslOptions() => new()
    {
        ServerCertificateContext = Current,
        EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
        ApplicationProtocols = [SslApplicationProtocol.Http2],
        CertificateRevocationCheckMode = X509RevocationMode.NoCheck,

        // Ask for a client certificate but accept any at the TLS level: the authenticators decide
        // what it proves, and a call without one may still use a bootstrap token.
        ClientCertificateRequired = true,
#pragma warning disable CA5359 // client certificates are validated by ClientCertificateAuthenticator, not here
        RemoteCertificateValidationCallback = static (_, _, _, _) => true,
#pragma warning restore CA5359
    };

    private Issued Issue(DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=unused", key, HashAlgorithmName.SHA256);
        using var issued = ca.Issue(request.PublicKey, Identity, ca.DefaultTtl, ["localhost"], [IPAddress.Loopback]);
        var certificate = issued.CopyWithPrivateKey(key);
        var context = SslStreamCertificateContext.Create(certificate, [.. ca.Intermediates], offline: true);
        var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime());
        var renewAt = now + ((notAfter - now) / 2);
        LogIssued(logger, Identity.SpiffeId, notAfter.UtcDateTime, renewAt.UtcDateTime);
        return new Issued(certificate, context, renewAt);
    }

    private sealed record Issued(X509Certificate2 Certificate, SslStreamCertificateContext Context, DateTimeOffset RenewAt);

    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Secure port certificate {SpiffeId} issued, valid until {NotAfter:O}, renewed after {RenewAt:O}")]
    private static partial void LogIssued(ILogger logger, string spiffeId, DateTime notAfter, DateTime renewAt);
}
