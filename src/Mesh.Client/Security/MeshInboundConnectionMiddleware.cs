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
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Security;

/// <summary>
/// Kestrel connection middleware on every endpoint in secure mode. It peeks the first byte: a TLS ClientHello (0x16)
/// gets a mesh mTLS handshake (current SVID, client SVID required and validated against the current bundle) and the
/// connection continues over the SslStream with the TLS features set; plaintext continues untouched when the port's
/// PeerAuthentication mode is PERMISSIVE or DISABLE and is closed under STRICT. The mode is a property of the port, not
/// of the moment a connection opened: when the control plane changes it, every open connection the new mode refuses
/// (plaintext under STRICT, TLS under DISABLE) is drained as Envoy drains a replaced filter chain — asked to close at
/// once (HTTP/1.1 <c>Connection: close</c> after the request in flight, an idle keep-alive closed now; HTTP/2 GOAWAY)
/// and aborted after <see cref="PolicyChangeDrain"/> — so a keep-alive connection opened under PERMISSIVE outlives the
/// switch to STRICT by that long at most (HTTP/2 admits new streams while one is still open, as Envoy's drain does).
/// </summary>
internal sealed partial class MeshInboundConnectionMiddleware
{
    private const byte TlsHandshakeRecord = 0x16;
    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long a connection that a changed mode refuses may finish its requests in flight before it is aborted.</summary>
    internal static readonly TimeSpan PolicyChangeDrain = TimeSpan.FromSeconds(10);

    private readonly ConnectionDelegate _next;
    private readonly ListenOptions _listen;
    private readonly IWorkloadCertificateSource _certificates;
    private readonly IPeerAuthenticationModeSource _modes;
    private readonly MeshEndpointFeature _endpoint;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _loggedPeers = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<ConnectionContext, OpenConnection> _open = new();

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

        // Lives as long as the listener (the middleware is never disposed), as does the mode source it listens to.
        ChangeToken.OnChange(_modes.GetChangeToken, CloseRefusedConnections);
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
        var input = connection.Transport.Input;
        ReadResult read;
        // Not linked to ConnectionClosed: Kestrel fires it when the peer half-closes, and a client may send its bytes and its
        // FIN together (a TCP tunnel's half-close); a peer that is gone ends the read (and the handshake) by itself.
        using (var firstByte = new CancellationTokenSource())
        {
            // Kestrel's own timeouts start after this middleware: a silent connection must not be held forever.
            firstByte.CancelAfter(HandshakeTimeout);
            try
            {
                read = await input.ReadAsync(firstByte.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException)
            {
                // Silent past the timeout, or reset by the peer before a byte.
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
        // The mode now, not when the connection opened: the first byte may come long after.
        var mode = _modes.GetMode(port);
        if (first != TlsHandshakeRecord)
        {
            if (mode == PeerAuthenticationMode.Strict)
            {
                LogOnce(connection, port, "plaintext", mode);
                return;
            }

            await ServeAsync(connection, port, tls: false).ConfigureAwait(false);
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
            using var timeout = new CancellationTokenSource(HandshakeTimeout);
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
            await ServeAsync(connection, port, tls: true).ConfigureAwait(false);
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
            await writer.CompleteAsync().ConfigureAwait(false);
            await ssl.DisposeAsync().ConfigureAwait(false);
            connection.Transport = transport;
        }
    }

    /// <summary>Runs the rest of the pipeline with the connection on the open list, so that a later mode change can close it.</summary>
    private async Task ServeAsync(ConnectionContext connection, int port, bool tls)
    {
        var open = new OpenConnection(port, tls);
        _open[connection] = open;
        try
        {
            // The mode may have changed between the first byte and now, with this connection not yet on the list: it has
            // served nothing, so it is refused as a new connection would be, not drained.
            var mode = _modes.GetMode(port);
            if (Refuses(mode, tls))
            {
                LogOnce(connection, port, tls ? "TLS" : "plaintext", mode);
                return;
            }

            await _next(connection).ConfigureAwait(false);
        }
        finally
        {
            _open.TryRemove(connection, out _);
            open.Dispose();
        }
    }

    private static bool Refuses(PeerAuthenticationMode mode, bool tls) =>
        tls ? mode == PeerAuthenticationMode.Disable : mode == PeerAuthenticationMode.Strict;

    /// <summary>
    /// On a mode change: drains every open connection that the port's new mode refuses. Runs on the thread that changed
    /// the mode (the xDS client applying a push), so it never throws and logs one line per change, not per connection.
    /// </summary>
    private void CloseRefusedConnections()
    {
        var closing = 0;
        foreach (var (connection, open) in _open)
        {
            try
            {
                var mode = _modes.GetMode(open.Port);
                if (Refuses(mode, open.Tls) && open.BeginClose())
                {
                    closing++;
                    Log.Closing(_logger, open.Tls ? "TLS" : "plaintext", connection.RemoteEndPoint?.ToString() ?? "?", open.Port, mode);
                    connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
                    open.AbortAfter(_time, PolicyChangeDrain, () => connection.Abort(new ConnectionAbortedException(
                        $"The connection outlived the drain after this port's PeerAuthentication changed to {mode}.")));
                }
            }
            catch (Exception ex) when (ex is ObjectDisposedException or InvalidOperationException)
            {
                // The connection ended while it was being closed.
            }
        }

        if (closing > 0)
        {
            Log.Drained(_logger, closing, PolicyChangeDrain);
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

    /// <summary>A served connection: its port, whether it is mTLS, and the abort timer once a mode change refused it.</summary>
    private sealed class OpenConnection(int port, bool tls) : IDisposable
    {
        private int _closing;
        private ITimer? _abort;

        public int Port { get; } = port;

        public bool Tls { get; } = tls;

        /// <summary>Marks the connection closing; false when it already was.</summary>
        public bool BeginClose() => Interlocked.Exchange(ref _closing, 1) == 0;

        public void AbortAfter(TimeProvider time, TimeSpan drain, Action abort)
        {
            var timer = time.CreateTimer(_ => abort(), null, drain, Timeout.InfiniteTimeSpan);
            if (Interlocked.CompareExchange(ref _abort, timer, null) is not null)
            {
                timer.Dispose();
            }
        }

        /// <summary>The connection ended: a pending abort is cancelled.</summary>
        public void Dispose() => Interlocked.Exchange(ref _abort, NullTimer.Instance)?.Dispose();

        private sealed class NullTimer : ITimer
        {
            public static readonly NullTimer Instance = new();

            public bool Change(TimeSpan dueTime, TimeSpan period) => false;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
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
}
