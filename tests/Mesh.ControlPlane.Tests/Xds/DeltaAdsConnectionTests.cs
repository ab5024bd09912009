using System.Threading.Channels;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
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
            $"a request's initial_resource_versions holds 3 {TypeUrls.Cluster} names of resources that do not exist; an ADS stream may subscribe to at most 2 such names per type (ControlPlane:AdsMaxResourceNamesPerType)",
            ex.Status.Detail);
    }

    [Fact]
    public async Task RunAsync_SnapshotsWhileAResponseIsStuck_NextResponseIsTheNewestStateAndNoBacklog()
    {
        const string cluster = "outbound|80||orders.default.svc.cluster.local";
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("orders.yaml", Orders(0))])));
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions(), TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        var connection = new DeltaAdsConnection(1, "test", publisher, TimeProvider.System, NullLogger.Instance);
        var requests = new LiveRequests();
        var responses = new GatedWriter();
        using var stop = new CancellationTokenSource();
        var run = connection.RunAsync(requests, responses, stop.Token);

        await requests.SendAsync(new DeltaDiscoveryRequest { TypeUrl = TypeUrls.ClusterLoadAssignment, ResourceNamesSubscribe = { cluster } });
        await responses.FirstWriteStarted.WaitAsync(TimeSpan.FromSeconds(30));

        // Ten changes while the client is not reading: it must not be owed ten responses.
        for (var i = 1; i <= 10; i++)
        {
            Assert.True(store.ApplyYaml(YamlConfigLoader.Load([("orders.yaml", Orders(i))])));
            publisher.Rebuild();
        }

        await requests.SendAsync(new DeltaDiscoveryRequest { TypeUrl = TypeUrls.Cluster, ResourceNamesSubscribe = { cluster } });
        responses.Release();

        Assert.Equal("127.0.0.100", Address(await responses.NextAsync()));
        Assert.Equal("127.0.0.110", Address(await responses.NextAsync()));
        Assert.Equal(TypeUrls.Cluster, (await responses.NextAsync()).TypeUrl);
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(30));

        static string Address(DeltaDiscoveryResponse response) =>
            Assert.Single(response.Resources).Resource_.Unpack<ClusterLoadAssignment>().Endpoints.Single().LbEndpoints.Single().Endpoint.Address.SocketAddress.Address;
    }

    private static string Orders(int i) => $$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          endpoints: [{address: 127.0.0.{{100 + i}}}]
        """;

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

    private sealed class LiveRequests : IAsyncStreamReader<DeltaDiscoveryRequest>
    {
        private readonly Channel<DeltaDiscoveryRequest> _items = Channel.CreateUnbounded<DeltaDiscoveryRequest>();

        public DeltaDiscoveryRequest Current { get; private set; } = null!;

        public ValueTask SendAsync(DeltaDiscoveryRequest request) => _items.Writer.WriteAsync(request);

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            Current = await _items.Reader.ReadAsync(cancellationToken);
            return true;
        }
    }

    /// <summary>A client that does not read until released: its first write waits.</summary>
    private sealed class GatedWriter : IServerStreamWriter<DeltaDiscoveryResponse>
    {
        private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Channel<DeltaDiscoveryResponse> _written = Channel.CreateUnbounded<DeltaDiscoveryResponse>();

        public WriteOptions? WriteOptions { get; set; }

        public Task FirstWriteStarted => _started.Task;

        public void Release() => _released.TrySetResult();

        public Task WriteAsync(DeltaDiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public async Task WriteAsync(DeltaDiscoveryResponse message, CancellationToken cancellationToken)
        {
            _started.TrySetResult();
            await _released.Task.WaitAsync(cancellationToken);
            await _written.Writer.WriteAsync(message, cancellationToken);
        }

        public async Task<DeltaDiscoveryResponse> NextAsync() => await _written.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
    }

    private sealed class StuckWriter : IServerStreamWriter<DeltaDiscoveryResponse>
    {
        public WriteOptions? WriteOptions { get; set; }

        public Task WriteAsync(DeltaDiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(DeltaDiscoveryResponse message, CancellationToken cancellationToken) => Task.Delay(Timeout.Infinite, cancellationToken);
    }
}
