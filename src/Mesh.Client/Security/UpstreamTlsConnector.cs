using System.Net.Security;
using System.Security.Authentication;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

/// <summary>
/// The client side of a mesh mTLS handshake on a connected stream: the current SVID, the current bundle, the
/// peer's SPIFFE ID matched against the cluster's expected SANs, TLS 1.2 minimum. Shared by the per-endpoint pools of
/// IHttpClientFactory clients and by the subchannel connections of <c>xds:///</c> gRPC channels.
/// </summary>
internal sealed partial class UpstreamTlsConnector
{
    private readonly IWorkloadCertificateSource? _certificates;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Telemetry.MeshMetrics? _metrics;

    public UpstreamTlsConnector(IWorkloadCertificateSource? certificates, TimeProvider time, ILogger logger, Telemetry.MeshMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        _certificates = certificates;
        _time = time;
        _logger = logger;
        _metrics = metrics;
    }

    /// <summary>Throws when this workload cannot make mTLS connections at all; checked before dialing.</summary>
    public void ThrowIfNoCertificate(string service)
    {
        var certificates = _certificates;
        if (certificates is not { IsSecure: true } || certificates.Current is null)
        {
            throw new MeshTlsException(certificates is { IsSecure: true }
                ? $"Cannot call '{service}' over mTLS: this workload has no certificate from the control plane yet."
                : $"Cannot call '{service}': the control plane requires mTLS to it, but this workload has no identity (Mesh:ControlPlane:Address is http://; use https:// with Mesh:Identity settings).");
        }
    }

    /// <summary>
    /// Runs the handshake over <paramref name="stream"/> (which it owns from now on) and returns the authenticated
    /// stream with the peer's SPIFFE ID. On failure the stream is disposed and a <see cref="MeshTlsException"/> names the
    /// service, the endpoint, the expected identities and the one presented.
    /// </summary>
    public ValueTask<(SslStream Stream, SpiffeId Peer)> AuthenticateAsync(
        Stream stream,
        string service,
        string endPoint,
        string targetHost,
        bool http2,
        UpstreamTlsSettings tls,
        CancellationToken cancellationToken) =>
        AuthenticateAsync(stream, service, endPoint, targetHost, [http2 ? SslApplicationProtocol.Http2 : SslApplicationProtocol.Http11], tls, cancellationToken);

    /// <summary>
    /// As the HTTP overload, offering <paramref name="applicationProtocols"/> in ALPN; null offers none (the sidecar's opaque
    /// TCP tunnels: the peer's mesh port accepts a handshake without ALPN whatever protocols it serves).
    /// </summary>
    public async ValueTask<(SslStream Stream, SpiffeId Peer)> AuthenticateAsync(
        Stream stream,
        string service,
        string endPoint,
        string targetHost,
        List<SslApplicationProtocol>? applicationProtocols,
        UpstreamTlsSettings tls,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tls);
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            ThrowIfNoCertificate(service);
            var validation = new PeerValidation();
            var options = MeshTls.ClientOptions(_certificates!, _time, targetHost, applicationProtocols, id => tls.Matches(id.Value), validation);
            try
            {
                await ssl.AuthenticateAsClientAsync(options, cancellationToken).ConfigureAwait(false);
            }
            catch (AuthenticationException ex)
            {
                _metrics?.TlsHandshakes.Add(1, new KeyValuePair<string, object?>("mesh.service", service), new KeyValuePair<string, object?>("error.type", "refused"));
                var presented = validation.PeerId?.Value ?? "no valid SPIFFE ID";
                var reason = validation.Error ?? ex.Message;
                throw new MeshTlsException(
                    $"mTLS handshake with '{service}' at {endPoint} refused; nothing was sent. Expected identity: {tls.Describe()}; presented: {presented} ({reason}).",
                    ex);
            }

            _metrics?.TlsHandshakes.Add(1, new KeyValuePair<string, object?>("mesh.service", service));
            var peer = validation.PeerId!;
            Log.Handshake(_logger, service, endPoint, peer.Value, ssl.SslProtocol, ssl.NegotiatedApplicationProtocol.ToString());
            return (ssl, peer);
        }
        catch
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }
}
