using System.Globalization;
using Grpc.Core;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Writes ADS responses (both variants) with the write timeout: a client that stopped reading holds one response in
/// flight (and the newest state pending), never more, and its stream ends when that write does not complete in time.
/// </summary>
internal static partial class AdsResponseWriter
{
    /// <summary>The option named in the status of a stream ended by the write timeout (how <see cref="AdsService"/> tells it apart).</summary>
    public const string WriteTimeoutKey = "ControlPlane:AdsWriteTimeout";

    public static async Task WriteAsync<T>(
        IServerStreamWriter<T> responses, T response, string typeUrl, AdsLimits limits, TimeProvider time, ControlPlaneMetrics? metrics,
        ILogger logger, string clientId, string peer, CancellationToken cancellationToken)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(responses);
        ArgumentNullException.ThrowIfNull(limits);

        // Waiting for a slot is not the client's fault: the write timeout starts once this write may go. A write holds its
        // slot for at most SlotHold: a client that does not read (on the plaintext port, anyone) cannot keep the slots
        // and stall every other client's pushes; its write goes on without one until the write timeout.
        var throttle = limits.PushThrottle;
        if (throttle is not null)
        {
            await throttle.WaitAsync(cancellationToken);
        }

        try
        {
            var write = responses.WriteAsync(response, cancellationToken);
            if (throttle is not null && limits.WriteTimeout > SlotHold)
            {
                var done = await Task.WhenAny(write, Task.Delay(SlotHold, time, cancellationToken));
                if (done != write)
                {
                    var held = Interlocked.Exchange(ref throttle, null);
                    held?.Release();
                }

                await write.WaitAsync(limits.WriteTimeout - SlotHold, time, cancellationToken);
            }
            else
            {
                await write.WaitAsync(limits.WriteTimeout, time, cancellationToken);
            }
        }
        catch (TimeoutException)
        {
            metrics?.WriteTimedOut(typeUrl);
            var limit = limits.WriteTimeout.ToString("c", CultureInfo.InvariantCulture);
            LogWriteTimeout(logger, clientId, peer, typeUrl, limit);
            throw new RpcException(new Status(StatusCode.DeadlineExceeded,
                $"a {typeUrl} response was not taken by the client within {limit} ({WriteTimeoutKey}); the stream is closed, reconnect and read the responses"));
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // A client going away mid-push or the host shutting down is normal (istiod skips Canceled and Unavailable):
            // only a write that failed while the stream was still wanted counts as a send error.
            if (!cancellationToken.IsCancellationRequested && ex is IOException)
            {
                metrics?.PushFailed(typeUrl);
            }

            throw;
        }
        finally
        {
            throttle?.Release();
        }
    }

    /// <summary>How long one write may hold a push-throttle slot before it goes on without one.</summary>
    internal static readonly TimeSpan SlotHold = TimeSpan.FromSeconds(1);

    [LoggerMessage(EventId = 9, EventName = "AdsWriteTimeout", Level = LogLevel.Warning, Message = "ADS client {ClientId} ({Peer}) did not take a {TypeUrl} response within {Limit} (ControlPlane:AdsWriteTimeout): it stopped reading its stream, which is closed")]
    private static partial void LogWriteTimeout(ILogger logger, string clientId, string peer, string typeUrl, string limit);
}
