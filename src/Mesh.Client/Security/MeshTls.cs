using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace Mesh.Client.Security;

/// <summary>The outcome of a peer validation, kept per handshake so the failure can name both identities.</summary>
internal sealed class PeerValidation
{
    public SpiffeId? PeerId { get; set; }

    public string? Error { get; set; }
}

/// <summary>A mesh TLS handshake was refused: the peer's certificate or identity is not acceptable.</summary>
internal sealed class MeshTlsException(string message, Exception? inner = null) : AuthenticationException(message, inner);

/// <summary>SslStream options of mesh connections: the current SVID, the current bundle, TLS 1.2 minimum.</summary>
internal static class MeshTls
{
    public static readonly SslApplicationProtocol[] Http2First = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11];

    /// <summary>Client options for one outbound connection; <paramref name="expected"/> decides secure naming.</summary>
    public static SslClientAuthenticationOptions ClientOptions(
        IWorkloadCertificateSource certificates,
        TimeProvider time,
        string targetHost,
        bool http2,
        Func<SpiffeId, bool> expected,
        PeerValidation result) =>
        ClientOptions(certificates, time, targetHost, [http2 ? SslApplicationProtocol.Http2 : SslApplicationProtocol.Http11], expected, result);

    /// <summary>Client options offering <paramref name="applicationProtocols"/> (null: no ALPN, as for an opaque TCP tunnel).</summary>
    public static SslClientAuthenticationOptions ClientOptions(
        IWorkloadCertificateSource certificates,
        TimeProvider time,
        string targetHost,
        List<SslApplicationProtocol>? applicationProtocols,
        Func<SpiffeId, bool> expected,
        PeerValidation result)
    {
        var current = certificates.Current;
        return new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ApplicationProtocols = applicationProtocols,
            CertificateChainPolicy = SvidValidator.HandshakeChainPolicy(),
            ClientCertificateContext = current?.Context,

            // A resumed session carries the peer's leaf but not its intermediates, so the chain could not be rebuilt
            // against the bundle; connections are pooled, a full handshake per connection costs little.
            AllowTlsResume = false,

            // Read per handshake: a rotated bundle applies to the next connection without rebuilding anything.
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                Validate(certificates, time, certificate, chain, expected, result),
        };
    }

    /// <summary>Server options: the SVID is chosen per handshake, the client must present an SVID of the trust domain.</summary>
    public static SslServerAuthenticationOptions ServerOptions(
        IWorkloadCertificateSource certificates,
        TimeProvider time,
        List<SslApplicationProtocol> protocols,
        PeerValidation result) => new()
        {
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            ApplicationProtocols = protocols,
            ClientCertificateRequired = true,
            CertificateChainPolicy = SvidValidator.HandshakeChainPolicy(),
            ServerCertificateContext = certificates.Current?.Context,
            AllowTlsResume = false,
            RemoteCertificateValidationCallback = (_, certificate, chain, _) =>
                Validate(certificates, time, certificate, chain, static _ => true, result),
        };

    public static bool Validate(
        IWorkloadCertificateSource certificates,
        TimeProvider time,
        X509Certificate? certificate,
        X509Chain? chain,
        Func<SpiffeId, bool> expected,
        PeerValidation result)
    {
        // Our own chain validation replaces the platform's: the bundle is the only trust, hostnames play no part.
        var leaf = certificate as X509Certificate2 ?? (certificate is null ? null : new X509Certificate2(certificate));
        var presented = new List<X509Certificate2>();
        if (chain is not null)
        {
            presented.AddRange(chain.ChainPolicy.ExtraStore);
            presented.AddRange(chain.ChainElements.Select(e => e.Certificate));
        }

        if (!SvidValidator.TryValidate(leaf, presented, certificates.Bundle, certificates.TrustDomain, time.GetUtcNow(), out var id, out var error))
        {
            result.PeerId = id;
            result.Error = error;
            return false;
        }

        result.PeerId = id;
        if (!expected(id!))
        {
            result.Error = $"the peer presented {id}";
            return false;
        }

        return true;
    }
}
