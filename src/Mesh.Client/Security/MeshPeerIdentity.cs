using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace Mesh.Client.Security;

/// <summary>
/// The TLS features of an inbound mesh connection: Kestrel reads the negotiated ALPN (h2 or http/1.1) and TLS
/// version from it, ASP.NET Core the client certificate, and the app the peer's SPIFFE ID.
/// </summary>
internal sealed class MeshPeerIdentity(SslStream stream, SpiffeId peer) :
    IMeshPeerIdentityFeature, ITlsConnectionFeature, ITlsHandshakeFeature, ITlsApplicationProtocolFeature
{
    private readonly X509Certificate2? _certificate = stream.RemoteCertificate as X509Certificate2;

    public string? SpiffeId => peer.Value;

    public string? PeerNamespace => peer.Namespace;

    public string? PeerServiceAccount => peer.ServiceAccount;

    public X509Certificate2? Certificate => _certificate;

    public X509Certificate2? ClientCertificate
    {
        get => _certificate;
        set => throw new NotSupportedException("The mesh peer certificate is fixed by the handshake.");
    }

    public ReadOnlyMemory<byte> ApplicationProtocol { get; } = stream.NegotiatedApplicationProtocol.Protocol;

    public SslProtocols Protocol { get; } = stream.SslProtocol;

    public TlsCipherSuite? NegotiatedCipherSuite { get; } = stream.NegotiatedCipherSuite;

    public string HostName => stream.TargetHostName;

#pragma warning disable SYSLIB0058 // ITlsHandshakeFeature still declares the legacy algorithm properties.
    public CipherAlgorithmType CipherAlgorithm => stream.CipherAlgorithm;

    public int CipherStrength => stream.CipherStrength;

    public HashAlgorithmType HashAlgorithm => stream.HashAlgorithm;

    public int HashStrength => stream.HashStrength;

    public ExchangeAlgorithmType KeyExchangeAlgorithm => stream.KeyExchangeAlgorithm;

    public int KeyExchangeStrength => stream.KeyExchangeStrength;
#pragma warning restore SYSLIB0058

    public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult(_certificate);
}
