using System.Collections.Concurrent;
using System.Globalization;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Telemetry;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>State-of-the-world ADS. Delta is not implemented (grpc clients answer UNIMPLEMENTED).</summary>
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
    private readonly ConcurrentDictionary<long, AdsConnection> _connections = new();
    private readonly ILogger _logger = loggerFactory.CreateLogger<AdsConnection>();
    private readonly AdsLimits _limits = AdsLimits.From(options);

    public IReadOnlyList<ClientInfo> Clients() =>
        [.. _connections.Values.OrderBy(c => c.Id).Select(c => c.Describe())];

    public override async Task StreamAggregatedResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var (identity, certificate) = SecureTransport.IsSecure(context) ? Authenticate(context) : (null, null);
        var notAfter = certificate?.NotAfter;
        var connection = new AdsConnection(Interlocked.Increment(ref s_nextId), context.Peer, publisher, time, _logger, identity?.SpiffeId, _limits, certificate, metrics);
        _connections[connection.Id] = connection;

        // ADS streams live forever; end them when the host stops so shutdown does not wait for its timeout.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        using var expiry = notAfter is { } deadline ? ExpireAt(deadline, stop) : null;
        try
        {
            await connection.RunAsync(requestStream, responseStream, stop.Token);
        }
        catch (RpcException) when (connection.WriteTimedOut)
        {
            // The unread response is stuck behind HTTP/2 flow control: reset the stream so its buffers are released now.
            context.GetHttpContext().Abort();
            throw;
        }
        finally
        {
            _connections.TryRemove(connection.Id, out _);
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

    [LoggerMessage(EventId = 20, Level = LogLevel.Warning, Message = "ADS stream from {Peer} refused on the secure port: {Reason}")]
    private static partial void LogRefused(ILogger logger, string peer, string reason);

    [LoggerMessage(EventId = 21, Level = LogLevel.Information, Message = "ADS stream of {SpiffeId} from {Peer} ended: its client certificate expired")]
    private static partial void LogCertificateExpired(ILogger logger, string spiffeId, string peer);
}
