using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Security;

/// <summary>
/// Kestrel connection middleware on every endpoint in secure mode. It peeks the first byte: a TLS ClientHello (0x16)
/// gets a mesh mTLS handshake (current SVID, client SVID required and validated against the current bundle) and the
/// connection continues over the SslStream with the TLS features set; plaintext continues untouched when the port's
/// PeerAuthentication mode is PERMISSIVE or DISABLE and is closed under STRICT.
/// </summary>
internal sealed partial class MeshInboundConnectionMiddleware
{
    private const byte TlsHandshakeRecord = 0x16;
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private readonly ConnectionDelegate _next;
    private readonly ListenOptions _listen;
    private readonly IWorkloadCertificateSource _certificates;
    private readonly IPeerAuthenticationModeSource _modes;
    private readonly MeshEndpointFeature _endpoint;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _loggedPeers = new(StringComparer.Ordinal);

    public MeshInboundConnectionMiddleware(
        ConnectionDelegate next,
        ListenOptions listen,
        IWorkloadCertificateSource certificates,
        IPeerAuthenticationModeSource modes,
        MeshExcludedListeners excluded,
        TimeProvider time,
        ILogger logger)
    {
        _next = next;
        _listen = listen;
        _certificates = certificates;
        _modes = modes;
        _endpoint = new MeshEndpointFeature(listen, excluded);
        _time = time;
        _logger = logger;
    }

    public Task OnConnectionAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection.Features.Set(_endpoint);

        // Marked after the endpoint defaults added this middleware, so it is asked per connection (a short array).
        return _endpoint.Excluded ? _next(connection) : OnMeshConnectionAsync(connection);
    }

    private async Task OnMeshConnectionAsync(ConnectionContext connection)
    {
        var port = (connection.LocalEndPoint as IPEndPoint)?.Port ?? 0;
        var mode = _modes.GetMode(port);
        var input = connection.Transport.Input;
        ReadResult read;
        using (var firstByte = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed))
        {
            // Kestrel's own timeouts start after this middleware: a silent connection must not be held forever.
            firstByte.CancelAfter(HandshakeTimeout);
            try
            {
                read = await input.ReadAsync(firstByte.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }

        if (read.Buffer.IsEmpty)
        {
            input.AdvanceTo(read.Buffer.Start);
            return;
        }

        var first = read.Buffer.FirstSpan[0];
        input.AdvanceTo(read.Buffer.Start); // peeked, not consumed
        if (first != TlsHandshakeRecord)
        {
            if (mode == PeerAuthenticationMode.Strict)
            {
                LogOnce(connection, port, "plaintext", mode);
                return;
            }

            await _next(connection).ConfigureAwait(false);
            return;
        }

        if (mode == PeerAuthenticationMode.Disable)
        {
            LogOnce(connection, port, "TLS", mode);
            return;
        }

        await HandleTlsAsync(connection, port, mode).ConfigureAwait(false);
    }

    private async Task HandleTlsAsync(ConnectionContext connection, int port, PeerAuthenticationMode mode)
    {
        if (_certificates.Current is null)
        {
            LogOnce(connection, port, "TLS before this workload has a certificate", mode);
            return;
        }

        var transport = connection.Transport;
        var ssl = new SslStream(new DuplexPipeStream(transport), leaveInnerStreamOpen: false);
        var validation = new PeerValidation();
        var protocols = _listen.Protocols switch
        {
            HttpProtocols.Http2 => [SslApplicationProtocol.Http2],
            HttpProtocols.Http1 => [SslApplicationProtocol.Http11],
            _ => new List<SslApplicationProtocol>(MeshTls.Http2First),
        };
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
            timeout.CancelAfter(HandshakeTimeout);
            await ssl.AuthenticateAsServerAsync(MeshTls.ServerOptions(_certificates, _time, protocols, validation), timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is AuthenticationException or IOException or OperationCanceledException)
        {
            Log.HandshakeRefused(_logger, connection.RemoteEndPoint?.ToString() ?? "?", port, validation.Error ?? ex.Message);
            await ssl.DisposeAsync().ConfigureAwait(false);
            return;
        }

        var peer = new MeshPeerIdentity(ssl, validation.PeerId!);
        var features = connection.Features;
        features.Set<IMeshPeerIdentityFeature>(peer);
        features.Set<ITlsConnectionFeature>(peer);
        features.Set<ITlsHandshakeFeature>(peer);
        features.Set<ITlsApplicationProtocolFeature>(peer);

        var reader = PipeReader.Create(ssl, new StreamPipeReaderOptions(leaveOpen: true));
        var writer = PipeWriter.Create(ssl, new StreamPipeWriterOptions(leaveOpen: true));
        connection.Transport = new DuplexPipe(reader, writer);
        try
        {
            await _next(connection).ConfigureAwait(false);
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            await writer.CompleteAsync().ConfigureAwait(false);
            await ssl.DisposeAsync().ConfigureAwait(false);
            connection.Transport = transport;
        }
    }

    private void LogOnce(ConnectionContext connection, int port, string kind, PeerAuthenticationMode mode)
    {
        var peer = (connection.RemoteEndPoint as IPEndPoint)?.Address.ToString() ?? "?";
        if (_loggedPeers.Count < 10_000 && _loggedPeers.TryAdd($"{peer}|{port}|{kind}", 0))
        {
            Log.Refused(_logger, kind, peer, port, mode);
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>A stream over the connection's transport pipes, for SslStream.</summary>
    private sealed class DuplexPipeStream(IDuplexPipe pipe) : Stream
    {
        private readonly Stream _input = pipe.Input.AsStream(leaveOpen: true);
        private readonly Stream _output = pipe.Output.AsStream(leaveOpen: true);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => _input.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => _input.ReadAsync(buffer, cancellationToken);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _input.ReadAsync(buffer, offset, count, cancellationToken);

        public override void Write(byte[] buffer, int offset, int count) => _output.Write(buffer, offset, count);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) => _output.WriteAsync(buffer, cancellationToken);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => _output.WriteAsync(buffer, offset, count, cancellationToken);

        public override void Flush() => _output.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => _output.FlushAsync(cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    private static partial class Log
    {
        [LoggerMessage(1, LogLevel.Debug, "Refused {Kind} connection from {Peer} to port {Port} (PeerAuthentication {Mode}).")]
        public static partial void Refused(ILogger logger, string kind, string peer, int port, PeerAuthenticationMode mode);

        [LoggerMessage(2, LogLevel.Debug, "Refused mTLS handshake from {Peer} on port {Port}: {Error}")]
        public static partial void HandshakeRefused(ILogger logger, string peer, int port, string error);
    }
}
