using System.Buffers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Mesh.Sidecar.Outbound;

/// <summary>
/// Lets a cleartext Http1AndHttp2 endpoint take HTTP/2 with prior knowledge (h2c, what gRPC clients send to an http://
/// address) as well as HTTP/1.1. Kestrel 10 answers such an endpoint in HTTP/1.1 only, because it picks HTTP/2 only by
/// ALPN; this connection middleware peeks at the first bytes (consuming nothing) and, when they are the HTTP/2 client
/// preface (RFC 9113 §3.4), tells Kestrel the connection negotiated <c>h2</c>.
/// </summary>
internal static class CleartextHttp2Detection
{
    private static readonly byte[] Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8.ToArray();

    /// <summary>The middleware, for <c>ListenOptions.Use</c>; a connection that sends nothing for <paramref name="timeout"/> is closed.</summary>
    public static Func<ConnectionDelegate, ConnectionDelegate> Middleware(TimeSpan timeout) => next => async connection =>
    {
        bool? http2;
        using (var timer = new CancellationTokenSource(timeout))
        using (timer.Token.UnsafeRegister(static state => ((ConnectionContext)state!).Transport.Input.CancelPendingRead(), connection))
        {
            http2 = await StartsWithPrefaceAsync(connection.Transport.Input, connection.ConnectionClosed).ConfigureAwait(false);
        }

        if (http2 is null)
        {
            connection.Abort(new ConnectionAbortedException("The connection sent no request within the request header timeout."));
            return;
        }

        if (http2.Value)
        {
            connection.Features.Set<ITlsApplicationProtocolFeature>(PriorKnowledge.Instance);
            connection.Features.Set<ITlsConnectionFeature>(PriorKnowledge.Instance);
        }

        await next(connection).ConfigureAwait(false);
    };

    /// <summary>True for the HTTP/2 preface, false for anything else (or a closed connection), null when the read was cancelled.</summary>
    internal static async ValueTask<bool?> StartsWithPrefaceAsync(System.IO.Pipelines.PipeReader input, CancellationToken closed)
    {
        while (true)
        {
            System.IO.Pipelines.ReadResult result;
            try
            {
                result = await input.ReadAsync(closed).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return false;
            }

            var buffer = result.Buffer;
            bool? decision;
            if (result.IsCanceled)
            {
                decision = null;
            }
            else
            {
                var length = (int)Math.Min(buffer.Length, Preface.Length);
                var head = buffer.Slice(0, length).ToArray();
                decision = !head.AsSpan().SequenceEqual(Preface.AsSpan(0, length)) ? false
                    : length == Preface.Length ? true
                    : result.IsCompleted ? false
                    : default(bool?);
                if (decision is null)
                {
                    // A prefix of the preface so far: wait for more bytes (all of these examined, none consumed).
                    input.AdvanceTo(buffer.Start, buffer.End);
                    continue;
                }
            }

            // Nothing consumed nor examined: Kestrel's protocol handler reads the same bytes at once.
            input.AdvanceTo(buffer.Start);
            return decision;
        }
    }

    /// <summary>
    /// Kestrel selects HTTP/2 on a connection with TLS features whose ALPN is h2; the connection is cleartext, so the
    /// features say only that (no certificate, no cipher).
    /// </summary>
    private sealed class PriorKnowledge : ITlsApplicationProtocolFeature, ITlsConnectionFeature
    {
        public static readonly PriorKnowledge Instance = new();

        public ReadOnlyMemory<byte> ApplicationProtocol => SslApplicationProtocol.Http2.Protocol;

        public X509Certificate2? ClientCertificate
        {
            get => null;
            set => throw new NotSupportedException("A cleartext connection has no client certificate.");
        }

        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult<X509Certificate2?>(null);
    }
}
