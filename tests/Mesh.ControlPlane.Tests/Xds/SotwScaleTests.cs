using System.Diagnostics;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>
/// What the production size costs in process: 5,000 services × 10 endpoints, translation and one endpoint change
/// pushed to clients that behave as Mesh.Client (wildcard CDS/LDS, every EDS/RDS name). Responses are serialized as gRPC
/// would; the numbers go to the test output. Run: dotnet test tests/Mesh.ControlPlane.Tests --filter "FullyQualifiedName~SotwScaleTests" --logger "console;verbosity=detailed"
/// </summary>
public sealed class SotwScaleTests(ITestOutputHelper output)
{
    private const int Services = 5000;
    private const int Clients = 100;

    [Fact]
    public void Translate_5000ServicesBy10Endpoints_Measured()
    {
        var model = ScaleModels.Mesh(Services, 10);
        var watch = Stopwatch.StartNew();
        var services = XdsTranslator.Resolve(model);
        var resolveTime = watch.Elapsed;
        watch.Restart();
        var inbound = InboundListenerTranslator.BuildAll(model, services, "istio-system");
        var inboundTime = watch.Elapsed;
        watch.Restart();
        var cold = XdsTranslator.Translate(model, 1);
        var coldTime = watch.Elapsed;
        watch.Restart();
        var warm = XdsTranslator.Translate(ScaleModels.Mesh(Services, 10, moved: 1), 2, previous: cold);
        var warmTime = watch.Elapsed;

        output.WriteLine($"Translate {Services}x10: {coldTime.TotalMilliseconds:F0} ms cold, {warmTime.TotalMilliseconds:F0} ms after one endpoint change (with reuse); of it resolve {resolveTime.TotalMilliseconds:F0} ms, {inbound.Count} inbound listeners {inboundTime.TotalMilliseconds:F0} ms");
        Assert.Equal([ScaleModels.ClusterOf(0)], warm.Changes!.Changed(TypeUrls.ClusterLoadAssignment));
        Assert.Same(cold.Endpoints[ScaleModels.ClusterOf(1)], warm.Endpoints[ScaleModels.ClusterOf(1)]);
    }

    [Fact]
    public async Task OneEndpointChange_5000Services100Clients_OneClaPerClient()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.ApplyYaml(new YamlLoadResult(ScaleModels.Mesh(Services, 10).Config, []));
        var publisher = new XdsPublisher(store, new ControlPlaneOptions(), TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        using var stop = new CancellationTokenSource();
        var names = Enumerable.Range(0, Services).Select(ScaleModels.ClusterOf).ToList();
        var clients = Enumerable.Range(0, Clients).Select(i => new InMemoryClient(i, names)).ToList();
        var watch = Stopwatch.StartNew();
        var runs = clients.Select(c => Task.Run(() => c.RunAsync(publisher, stop.Token))).ToList();
        await Task.WhenAll(clients.Select(c => c.Synced.WaitAsync(TimeSpan.FromMinutes(5))));
        var syncTime = watch.Elapsed;
        var syncBytes = clients.Sum(c => c.Bytes);

        foreach (var client in clients)
        {
            client.Reset();
        }

        watch.Restart();
        store.ApplyYaml(new YamlLoadResult(ScaleModels.Mesh(Services, 10, moved: 1).Config, []));
        publisher.Rebuild();
        var translateTime = watch.Elapsed;
        await Task.WhenAll(clients.Select(c => c.Changed.WaitAsync(TimeSpan.FromMinutes(2))));
        var pushTime = watch.Elapsed;
        var changeBytes = clients.Sum(c => c.Bytes);

        output.WriteLine($"{Clients} clients x {Services} services: initial sync {syncTime.TotalSeconds:F1} s, {syncBytes / 1048576.0:F0} MB serialized");
        output.WriteLine($"one endpoint change: translated in {translateTime.TotalMilliseconds:F0} ms, all clients had it {pushTime.TotalMilliseconds:F0} ms after the change; {changeBytes / Clients} bytes per client ({changeBytes} in total)");
        Assert.All(clients, c => Assert.Equal([(TypeUrls.ClusterLoadAssignment, 1)], c.Received));
        await stop.CancelAsync();
        await Task.WhenAll(runs);
    }

    /// <summary>A client as Mesh.Client subscribes, over in-memory streams (the cost measured is the control plane's).</summary>
    private sealed class InMemoryClient(int index, IReadOnlyList<string> names) : IAsyncStreamReader<DiscoveryRequest>, IServerStreamWriter<DiscoveryResponse>
    {
        private readonly Channel<DiscoveryRequest> _requests = Channel.CreateUnbounded<DiscoveryRequest>();
        private readonly TaskCompletionSource _synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly HashSet<string> _acked = [];
        private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _bytes;

        public Task Synced => _synced.Task;

        public Task Changed => _changed.Task;

        public long Bytes => Interlocked.Read(ref _bytes);

        public List<(string TypeUrl, int Count)> Received { get; } = [];

        public DiscoveryRequest Current { get; private set; } = null!;

        public WriteOptions? WriteOptions { get; set; }

        public void Reset()
        {
            Interlocked.Exchange(ref _bytes, 0);
            lock (Received)
            {
                Received.Clear();
            }

            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public async Task RunAsync(XdsPublisher publisher, CancellationToken cancellationToken)
        {
            var connection = new AdsConnection(index, "in-memory", publisher, TimeProvider.System, NullLogger.Instance);
            _requests.Writer.TryWrite(new DiscoveryRequest { TypeUrl = TypeUrls.Cluster, Node = new Mesh.Xds.Envoy.Config.Core.V3.Node { Id = $"client-{index}", UserAgentName = "mesh-dotnet" } });
            _requests.Writer.TryWrite(new DiscoveryRequest { TypeUrl = TypeUrls.Listener });
            try
            {
                await connection.RunAsync(this, this, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }
        }

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            Current = await _requests.Reader.ReadAsync(cancellationToken);
            return true;
        }

        public Task WriteAsync(DiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public Task WriteAsync(DiscoveryResponse message, CancellationToken cancellationToken)
        {
            Interlocked.Add(ref _bytes, message.ToByteArray().Length);
            lock (Received)
            {
                Received.Add((message.TypeUrl, message.Resources.Count));
            }

            // ACK; after CDS and LDS, subscribe to every EDS and RDS name as Mesh.Client does.
            var ack = new DiscoveryRequest { TypeUrl = message.TypeUrl, ResponseNonce = message.Nonce, VersionInfo = message.VersionInfo };
            if (message.TypeUrl is TypeUrls.ClusterLoadAssignment or TypeUrls.RouteConfiguration)
            {
                ack.ResourceNames.AddRange(names);
            }

            _requests.Writer.TryWrite(ack);
            if (_acked.Add(message.TypeUrl) && message.TypeUrl is TypeUrls.Cluster or TypeUrls.Listener)
            {
                var follow = message.TypeUrl == TypeUrls.Cluster ? TypeUrls.ClusterLoadAssignment : TypeUrls.RouteConfiguration;
                var subscribe = new DiscoveryRequest { TypeUrl = follow };
                subscribe.ResourceNames.AddRange(names);
                _requests.Writer.TryWrite(subscribe);
            }

            if (_acked.Count == 4)
            {
                _synced.TrySetResult();
            }

            if (_synced.Task.IsCompleted && message.TypeUrl == TypeUrls.ClusterLoadAssignment && message.Resources.Count < names.Count)
            {
                _changed.TrySetResult();
            }

            return Task.CompletedTask;
        }
    }
}
