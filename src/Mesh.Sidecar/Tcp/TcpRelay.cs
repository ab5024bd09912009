using System.IO.Pipelines;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.AspNetCore.Connections;

namespace Mesh.Sidecar.Tcp;

/// <summary>How a relayed connection ended.</summary>
internal enum TcpRelayEnd
{
    /// <summary>Both sides finished sending (each end of stream passed on to the other side).</summary>
    Completed,

    /// <summary>No byte moved either way for the idle timeout.</summary>
    IdleTimeout,

    /// <summary>A side reset or failed; the other side was closed at once.</summary>
    Aborted,
}

/// <summary>
/// Copies bytes both ways between a Kestrel connection (<c>downstream</c>) and a stream to the other end (<c>upstream</c>),
/// as Envoy's tcp_proxy: the downstream's end of stream is passed on as a half-close of the upstream (TLS close_notify or
/// a socket shutdown) while the answer keeps flowing back; the upstream's end of stream completes the downstream's output.
/// Each direction holds at most one buffer of <see cref="BufferSize"/> bytes (the pipes' own limits apply behind it). A
/// failure on either side closes both; no byte either way for the idle timeout closes both.
/// </summary>
internal static class TcpRelay
{
    public const int BufferSize = 16 * 1024;

    /// <param name="downstream">The accepted connection's pipes.</param>
    /// <param name="upstream">The stream to the other end; the caller disposes it.</param>
    /// <param name="shutdownUpstream">Half-closes the upstream (ends what we send, keeps reading).</param>
    /// <param name="idleTimeout">Zero turns the idle timeout off.</param>
    /// <param name="time">Times the idle timeout.</param>
    /// <param name="received">Called with each count of bytes read from the downstream and written upstream.</param>
    /// <param name="sent">Called with each count of bytes read from the upstream and written downstream.</param>
    /// <param name="cancellationToken">Closes both sides. Not Kestrel's <c>ConnectionClosed</c>: it fires on the client's half-close.</param>
    public static async Task<TcpRelayEnd> RunAsync(
        IDuplexPipe downstream,
        Stream upstream,
        Func<ValueTask> shutdownUpstream,
        TimeSpan idleTimeout,
        TimeProvider time,
        Action<long> received,
        Action<long> sent,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(downstream);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(shutdownUpstream);
        ArgumentNullException.ThrowIfNull(time);
        using var idle = idleTimeout > TimeSpan.Zero ? new CancellationTokenSource(idleTimeout, time) : new CancellationTokenSource();
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        void Touch()
        {
            if (idleTimeout > TimeSpan.Zero)
            {
                try
                {
                    idle.CancelAfter(idleTimeout);
                }
                catch (ObjectDisposedException)
                {
                }
            }
        }

        var toUpstream = CopyToUpstreamAsync(downstream.Input, upstream, shutdownUpstream, received, Touch, abort);
        var toDownstream = CopyToDownstreamAsync(upstream, downstream.Output, sent, Touch, abort);
        var ok = await toUpstream.ConfigureAwait(false) & await toDownstream.ConfigureAwait(false);
        if (idle.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return TcpRelayEnd.IdleTimeout;
        }

        return ok && !abort.IsCancellationRequested ? TcpRelayEnd.Completed : TcpRelayEnd.Aborted;
    }

    private static async Task<bool> CopyToUpstreamAsync(PipeReader input, Stream upstream, Func<ValueTask> shutdown, Action<long> counted, Action touch, CancellationTokenSource abort)
    {
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(abort.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (!buffer.IsEmpty)
                {
                    foreach (var segment in buffer)
                    {
                        await upstream.WriteAsync(segment, abort.Token).ConfigureAwait(false);
                    }

                    await upstream.FlushAsync(abort.Token).ConfigureAwait(false);
                    counted(buffer.Length);
                    touch();
                }

                input.AdvanceTo(buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }

            await shutdown().ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (IsConnectionError(ex))
        {
            await abort.CancelAsync().ConfigureAwait(false);
            return false;
        }
    }

    private static async Task<bool> CopyToDownstreamAsync(Stream upstream, PipeWriter output, Action<long> counted, Action touch, CancellationTokenSource abort)
    {
        try
        {
            while (true)
            {
                var memory = output.GetMemory(BufferSize);
                var read = await upstream.ReadAsync(memory, abort.Token).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                output.Advance(read);
                counted(read);
                touch();
                var flush = await output.FlushAsync(abort.Token).ConfigureAwait(false);
                if (flush.IsCompleted || flush.IsCanceled)
                {
                    // The downstream stopped reading: nothing more can be delivered.
                    await abort.CancelAsync().ConfigureAwait(false);
                    return false;
                }
            }

            await output.CompleteAsync().ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (IsConnectionError(ex))
        {
            await abort.CancelAsync().ConfigureAwait(false);
            return false;
        }
    }

    internal static bool IsConnectionError(Exception ex) =>
        ex is IOException or SocketException or OperationCanceledException or ConnectionResetException or ConnectionAbortedException or AuthenticationException or ObjectDisposedException or InvalidOperationException;
}
