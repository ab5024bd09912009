using System.Globalization;
using System.Threading.Channels;
using Grpc.Core;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// The single loop of one ADS stream, either variant: the client's requests and the publisher's snapshot wake-ups go into
/// one inbox that one reader handles, so a stream's per-type state has exactly one writer. Wake-ups are coalesced (at
/// most one waits: a slow client gets the newest state, never a backlog), and requests waiting to be handled are bounded
/// (past the limit the stream ends with RESOURCE_EXHAUSTED).
/// </summary>
internal sealed class AdsStreamLoop<TRequest>(int maxPendingRequests, string requestKind)
    where TRequest : class
{
    private readonly Channel<TRequest?> _inbox = Channel.CreateUnbounded<TRequest?>(new UnboundedChannelOptions { SingleReader = true });
    private RpcException? _failure;
    private int _pendingRequests;
    private int _wakePending;

    /// <summary>Asks the loop to push the current snapshot (a publisher callback: never blocks, never queues twice).</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _wakePending, 1) == 0)
        {
            _inbox.Writer.TryWrite(null);
        }
    }

    /// <summary>
    /// Runs until the client ends the stream, <paramref name="cancellationToken"/> fires or a handler throws; returns the
    /// RpcException that ended it (a handler's, or the pending-requests limit), null for a normal end. Other endings
    /// (cancellation, a connection gone) go to <paramref name="onClosed"/>.
    /// </summary>
    public async Task<RpcException?> RunAsync(
        IAsyncStreamReader<TRequest> requests,
        Func<CancellationToken, Task> onWake,
        Func<TRequest, CancellationToken, Task> onRequest,
        Action<Exception> onClosed,
        CancellationToken cancellationToken)
    {
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var reader = ReadAsync(requests, abort, onClosed);
        RpcException? failure = null;
        try
        {
            await foreach (var item in _inbox.Reader.ReadAllAsync(abort.Token))
            {
                if (item is null)
                {
                    Interlocked.Exchange(ref _wakePending, 0);
                    await onWake(cancellationToken);
                }
                else
                {
                    Interlocked.Decrement(ref _pendingRequests);
                    await onRequest(item, abort.Token);
                }
            }
        }
        catch (RpcException ex)
        {
            failure = ex;
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            onClosed(ex);
        }

        await abort.CancelAsync();
        await reader;
        return failure ?? Volatile.Read(ref _failure);
    }

    private async Task ReadAsync(IAsyncStreamReader<TRequest> requests, CancellationTokenSource abort, Action<Exception> onClosed)
    {
        try
        {
            while (await requests.MoveNext(abort.Token))
            {
                // A client that sends faster than its responses are written (or read) must not grow this stream's memory.
                if (Interlocked.Increment(ref _pendingRequests) > maxPendingRequests)
                {
                    Volatile.Write(ref _failure, new RpcException(new Status(StatusCode.ResourceExhausted,
                        $"more than {maxPendingRequests.ToString(CultureInfo.InvariantCulture)} {requestKind}s are waiting on this ADS stream (ControlPlane:AdsMaxPendingRequests); read the responses before sending more")));
                    await abort.CancelAsync();
                    return;
                }

                _inbox.Writer.TryWrite(requests.Current);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException or RpcException)
        {
            onClosed(ex);
        }
        finally
        {
            _inbox.Writer.TryComplete();
        }
    }
}
