using System.Collections.Concurrent;
using Grpc.Core;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Xds;

/// <summary>State-of-the-world ADS. Delta is not implemented (grpc clients answer UNIMPLEMENTED).</summary>
internal sealed class AdsService(XdsPublisher publisher, TimeProvider time, IHostApplicationLifetime lifetime, ILoggerFactory loggerFactory) : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
{
    private static long s_nextId;
    private readonly ConcurrentDictionary<long, AdsConnection> _connections = new();
    private readonly ILogger _logger = loggerFactory.CreateLogger<AdsConnection>();

    public IReadOnlyList<ClientInfo> Clients() =>
        [.. _connections.Values.OrderBy(c => c.Id).Select(c => c.Describe())];

    public override async Task StreamAggregatedResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var connection = new AdsConnection(Interlocked.Increment(ref s_nextId), context.Peer, publisher, time, _logger);
        _connections[connection.Id] = connection;

        // ADS streams live forever; end them when the host stops so shutdown does not wait for its timeout.
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        try
        {
            await connection.RunAsync(requestStream, responseStream, stop.Token);
        }
        finally
        {
            _connections.TryRemove(connection.Id, out _);
        }
    }
}
