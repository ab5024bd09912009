using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>A delta stream's state is bounded as the state-of-the-world one's is.</summary>
public sealed class DeltaAdsConnectionTests
{
    [Fact]
    public async Task RunAsync_MoreRequestsWaitingThanTheLimit_ResourceExhaustedNamingTheKey()
    {
        using var publisher = NewPublisher();
        var connection = new DeltaAdsConnection(1, "test", publisher, TimeProvider.System, NullLogger.Instance, identity: null, new AdsLimits(MaxPendingRequests: 4, MaxResourceNamesPerType: 100));

        // The first response never finishes writing (a client that does not read): the requests behind it pile up.
        var requests = new Requests(Enumerable.Range(0, 10).Select(i => new DeltaDiscoveryRequest { TypeUrl = TypeUrls.Cluster, ResourceNamesSubscribe = { $"c{i}" } }));

        var ex = await Assert.ThrowsAsync<RpcException>(() => connection.RunAsync(requests, new StuckWriter(), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Equal("more than 4 DeltaDiscoveryRequests are waiting on this ADS stream (ControlPlane:AdsMaxPendingRequests); read the responses before sending more", ex.Status.Detail);
    }

    [Fact]
    public async Task RunAsync_TooManyInitialResourceVersions_ResourceExhaustedNamingTheKey()
    {
        using var publisher = NewPublisher();
        var connection = new DeltaAdsConnection(1, "test", publisher, TimeProvider.System, NullLogger.Instance, identity: null, new AdsLimits(MaxPendingRequests: 4, MaxResourceNamesPerType: 2));
        var request = new DeltaDiscoveryRequest { TypeUrl = TypeUrls.Cluster, ResourceNamesSubscribe = { "*" } };
        request.InitialResourceVersions.Add(new Dictionary<string, string> { ["a"] = "1", ["b"] = "1", ["c"] = "1" });

        var ex = await Assert.ThrowsAsync<RpcException>(() => connection.RunAsync(new Requests([request]), new StuckWriter(), CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30)));

        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.Equal(
            $"a {TypeUrls.Cluster} request lists 3 initial_resource_versions; an ADS stream may subscribe to at most 2 per type (ControlPlane:AdsMaxResourceNamesPerType)",
            ex.Status.Detail);
    }

    private static XdsPublisher NewPublisher() =>
        new(new ConfigStore(NullLogger<ConfigStore>.Instance), new ControlPlaneOptions(), TimeProvider.System, NullLogger<XdsPublisher>.Instance);

    private sealed class Requests(IEnumerable<DeltaDiscoveryRequest> items) : IAsyncStreamReader<DeltaDiscoveryRequest>
    {
        private readonly Queue<DeltaDiscoveryRequest> _items = new(items);

        public DeltaDiscoveryRequest Current { get; private set; } = null!;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            if (_items.TryDequeue(out var next))
            {
                Current = next;
                return true;
            }

            // The client keeps the stream open.
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return false;
        }
    }

    private sealed class StuckWriter : IServerStreamWriter<DeltaDiscoveryResponse>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(DeltaDiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(DeltaDiscoveryResponse message, CancellationToken cancellationToken) => Task.Delay(Timeout.Infinite, cancellationToken);
    }
}
