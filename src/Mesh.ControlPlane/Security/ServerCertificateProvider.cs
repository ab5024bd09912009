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
internal sealed partial class ServerCertificateProvider
{
    private readonly Lock _gate = new();
    private readonly CertificateAuthority _ca;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Profile _profile;
    private Issued? _current;

    public ServerCertificateProvider(CertificateAuthority ca, TimeProvider time, ILogger<ServerCertificateProvider> logger)
        : this(ca, time, logger, new Profile("Secure port", ["localhost"], [IPAddress.Loopback], [SslApplicationProtocol.Http2], RequestClientCertificate: true))
    {
    }

    private ServerCertificateProvider(CertificateAuthority ca, TimeProvider time, ILogger logger, Profile profile)
    {
        _ca = ca;
        _time = time;
        _logger = logger;
        _profile = profile;
    }

    /// <summary>
    /// The admission webhook's certificate: DNS <paramref name="dnsName"/> only (<c>&lt;service&gt;.&lt;namespace&gt;.svc</c>, the
    /// name the API server checks), HTTP/2 and HTTP/1.1, no client certificate asked for.
    /// </summary>
    public static ServerCertificateProvider ForWebhook(CertificateAuthority ca, TimeProvider time, ILogger logger, string dnsName) =>
        new(ca, time, logger, new Profile("Admission webhook", [dnsName], [], [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11], RequestClientCertificate: false));

    public WorkloadIdentity Identity => ControlPlaneIdentity.In(_ca.TrustDomain);

    /// <summary>The certificate context (leaf + intermediates) to serve now.</summary>
    public SslStreamCertificateContext Current
    {
        get
        {
            var now = _time.GetUtcNow();
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

    public SslServerAuthenticationOptions CreateSslOptions() => _profile.RequestClientCertificate
        ? new()
        {
            ServerCertificateContext = Current,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ApplicationProtocols = [.. _profile.Protocols],
            CertificateChainPolicy = SvidValidator.HandshakeChainPolicy(),

            // Ask for a client certificate but accept any at the TLS level: the authenticators decide
            // what it proves, and a call without one may still use a bootstrap token.
            ClientCertificateRequired = true,
#pragma warning disable CA5359 // client certificates are validated by ClientCertificateAuthenticator, not here
            RemoteCertificateValidationCallback = static (_, _, _, _) => true,
#pragma warning restore CA5359
        }
        : new()
        {
            ServerCertificateContext = Current,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ApplicationProtocols = [.. _profile.Protocols],
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };

    private Issued Issue(DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=unused", key, HashAlgorithmName.SHA256);
        using var issued = _ca.Issue(request.PublicKey, Identity, _ca.DefaultTtl, _profile.DnsNames, _profile.Addresses);
        var certificate = issued.CopyWithPrivateKey(key);
        var context = SslStreamCertificateContext.Create(certificate, [.. _ca.Intermediates], offline: true);
        var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime());
        var renewAt = now + ((notAfter - now) / 2);
        LogIssued(_logger, _profile.Purpose, Identity.SpiffeId, _profile.DnsText, notAfter.UtcDateTime, renewAt.UtcDateTime);
        return new Issued(certificate, context, renewAt);
    }

    private sealed record Profile(string Purpose, string[] DnsNames, IPAddress[] Addresses, SslApplicationProtocol[] Protocols, bool RequestClientCertificate)
    {
        public string DnsText { get; } = string.Join(", ", DnsNames);
    }

    private sealed record Issued(X509Certificate2 Certificate, SslStreamCertificateContext Context, DateTimeOffset RenewAt);

    [LoggerMessage(EventId = 1, EventName = "ServerCertificateIssued", Level = LogLevel.Information, Message = "{Purpose} certificate {SpiffeId} (DNS {DnsNames}) issued, valid until {NotAfter:O}, renewed after {RenewAt:O}")]
    private static partial void LogIssued(ILogger logger, string purpose, string spiffeId, string dnsNames, DateTime notAfter, DateTime renewAt);
}
