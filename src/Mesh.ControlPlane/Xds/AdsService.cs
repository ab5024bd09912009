using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Aggregated discovery: the state-of-the-world stream (<see cref="AdsConnection"/>, what grpc-js-xds speaks) and the
/// incremental one (<see cref="DeltaAdsConnection"/>). Both authenticate the same way and serve the same resources.
/// </summary>
/// <remarks>
/// On the secure port a stream needs a client certificate: a workload SVID chained to this mesh's CA (a bootstrap token
/// is not enough; it buys the certificate first). The stream ends when that certificate expires, so a client reconnects
/// with its renewed one. On the plaintext port (ControlPlane:XdsAddress) nobody is authenticated and only outbound
/// config is served.
/// </remarks>
internal sealed partial class AdsService(
    XdsPublisher publisher,
    CertificateAuthority ca,
    ControlPlaneOptions options,
    TimeProvider time,
    IHostApplicationLifetime lifetime,
    ILoggerFactory loggerFactory,
    ControlPlaneMetrics? metrics = null) : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
{
    // Timers run at most this far ahead (System.Threading.Timer's limit is ~49 days); a later expiry re-arms.
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromDays(30);
    private static long s_nextId;

    // Every open stream of either variant, by id: what /debug/clients lists.
    private readonly ConcurrentDictionary<long, Func<ClientInfo>> _connections = new();
    private readonly ILogger _logger = loggerFactory.CreateLogger<AdsConnection>();
    private readonly ILogger _deltaLogger = loggerFactory.CreateLogger<DeltaAdsConnection>();
    private readonly AdsLimits _limits = AdsLimits.From(options);

    public IReadOnlyList<ClientInfo> Clients() =>
        [.. _connections.OrderBy(c => c.Key).Select(c => c.Value())];

    public override Task StreamAggregatedResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context) =>
        ServeAsync(context, (id, identity, certificate) =>
        {
            var connection = new AdsConnection(id, context.Peer, publisher, time, _logger, identity, _limits, certificate, metrics);
            return (connection.Describe, token => connection.RunAsync(requestStream, responseStream, token));
        });

    public override Task DeltaAggregatedResources(IAsyncStreamReader<DeltaDiscoveryRequest> requestStream, IServerStreamWriter<DeltaDiscoveryResponse> responseStream, ServerCallContext context) =>
        ServeAsync(context, (id, identity, certificate) =>
        {
            var connection = new DeltaAdsConnection(id, context.Peer, publisher, time, _deltaLogger, identity, _limits, certificate, metrics);
            return (connection.Describe, token => connection.RunAsync(requestStream, responseStream, token));
        });

    /// <summary>
    /// Authenticates the caller, runs the stream <paramref name="open"/> makes until the client, the host or the client
    /// certificate's expiry ends it, and lists it for /debug/clients meanwhile.
    /// </summary>
    private async Task ServeAsync(ServerCallContext context, Func<long, string?, ClientCertificateInfo?, (Func<ClientInfo> Describe, Func<CancellationToken, Task> Run)> open)
    {
        ArgumentNullException.ThrowIfNull(context);
        var (identity, certificate) = SecureTransport.IsSecure(context) ? Authenticate(context) : (null, null);
        var notAfter = certificate?.NotAfter;
        var id = Interlocked.Increment(ref s_nextId);
        var (describe, run) = open(id, identity?.SpiffeId, certificate);
        _connections[id] = describe;

        // ADS streams live forever; end them when the host stops so shutdown does not wait for its timeout.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        using var expiry = notAfter is { } deadline ? ExpireAt(deadline, stop) : null;
        try
        {
            await run(stop.Token);
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.DeadlineExceeded && ex.Status.Detail.Contains(AdsResponseWriter.WriteTimeoutKey, StringComparison.Ordinal))
        {
            // The unread response is stuck behind HTTP/2 flow control: reset the stream so its buffers are released now.
            context.GetHttpContext().Abort();
            throw;
        }
        finally
        {
            _connections.TryRemove(id, out _);
        }

        if (notAfter is { } end && time.GetUtcNow() >= end && !context.CancellationToken.IsCancellationRequested && !lifetime.ApplicationStopping.IsCancellationRequested)
        {
            LogCertificateExpired(_logger, identity!.SpiffeId, context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                $"the client certificate of {identity.SpiffeId} expired at {end.UtcDateTime.ToString("O", CultureInfo.InvariantCulture)}; reconnect presenting the renewed SVID"));
        }
    }

    private (WorkloadIdentity Identity, ClientCertificateInfo Certificate) Authenticate(ServerCallContext context)
    {
        var certificate = context.GetHttpContext().Connection.ClientCertificate;
        if (certificate is null)
        {
            LogRefused(_logger, context.Peer, "no client certificate");
            throw new RpcException(new Status(StatusCode.Unauthenticated,
                "ADS on the secure port (ControlPlane:SecureAddress) requires the workload's certificate (an SVID from this control plane's CA) as the TLS client certificate; none was presented. " +
                "Get one with CreateCertificate (a bootstrap token) first, then open the ADS stream on a connection that presents it"));
        }

        var identity = ca.ValidateWorkloadCertificate(certificate, out var reason);
        if (identity is null)
        {
            LogRefused(_logger, context.Peer, reason);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "ADS on the secure port refused the client certificate: " + reason));
        }

        return (identity, new ClientCertificateInfo(certificate.SerialNumber, new DateTimeOffset(certificate.NotAfter.ToUniversalTime())));
    }

    /// <summary>Cancels <paramref name="stream"/> when the certificate's validity ends: no stream outlives its credential.</summary>
    private ITimer ExpireAt(DateTimeOffset notAfter, CancellationTokenSource stream)
    {
        ITimer? timer = null;
        timer = time.CreateTimer(
            _ =>
            {
                var left = notAfter - time.GetUtcNow();
                if (left > TimeSpan.Zero)
                {
                    timer?.Change(left < MaxTimerDelay ? left : MaxTimerDelay, Timeout.InfiniteTimeSpan);
                    return;
                }

                try
                {
                    stream.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // The stream already ended.
                }
            },
            null,
            Clamp(notAfter - time.GetUtcNow()),
            Timeout.InfiniteTimeSpan);
        return timer;
    }

    private static TimeSpan Clamp(TimeSpan delay) => delay <= TimeSpan.Zero ? TimeSpan.Zero : delay < MaxTimerDelay ? delay : MaxTimerDelay;

    [LoggerMessage(EventId = 20, EventName = "AdsRefused", Level = LogLevel.Warning, Message = "ADS stream from {Peer} refused on the secure port: {Reason}")]
    private static partial void LogRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 21, EventName = "AdsCertificateExpired", Level = LogLevel.Information, Message = "ADS stream of {SpiffeId} from {Peer} ended: its client certificate expired")]
    private static partial void LogCertificateExpired(ILogger logger, string spiffeId, string peer);
}
