using System.Threading.Channels;
using Grpc.Core;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>A client that missed snapshots (its push was coalesced) gets every resource that changed across them, and only those.</summary>
public sealed class AdsConnectionPushTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task TwoSnapshotsWhileAWriteIsPending_OneEdsResponseWithBothChangedAssignmentsOnly()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.ApplyYaml(new YamlLoadResult(ScaleModels.Mesh(3, 1).Config, []));
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions(), TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        var connection = new AdsConnection(1, "test", publisher, TimeProvider.System, NullLogger.Instance);
        var streams = new GatedStreams();
        using var stop = new CancellationTokenSource();
        var names = new[] { ScaleModels.ClusterOf(0), ScaleModels.ClusterOf(1), ScaleModels.ClusterOf(2) };
        var request = new DiscoveryRequest { TypeUrl = TypeUrls.ClusterLoadAssignment, Node = new Mesh.Xds.Envoy.Config.Core.V3.Node { Id = "client" } };
        request.ResourceNames.AddRange(names);
        streams.Requests.Writer.TryWrite(request);
        var run = connection.RunAsync(streams, streams, stop.Token);

        // The first response is being written (the client is slow): meanwhile service 0 changes, then service 2.
        var first = await streams.Written.Reader.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.Equal(3, first.Resources.Count);
        store.ApplyYaml(new YamlLoadResult(ScaleModels.Mesh(3, 1, moved: 1).Config, []));
        publisher.Rebuild();
        store.ApplyYaml(new YamlLoadResult(Moved2(ScaleModels.Mesh(3, 1, moved: 1)).Config, []));
        publisher.Rebuild();
        streams.Release();

        var next = await streams.Written.Reader.ReadAsync().AsTask().WaitAsync(Wait);
        Assert.Equal(publisher.Current.VersionInfo, next.VersionInfo);
        Assert.Equal([names[0], names[2]], next.Resources.Select(r => r.Unpack<ClusterLoadAssignment>().ClusterName));
        Assert.Equal([8081u, 9090u], next.Resources.Select(r => r.Unpack<ClusterLoadAssignment>().Endpoints[0].LbEndpoints[0].Endpoint.Address.SocketAddress.PortValue));

        await stop.CancelAsync();
        await run.WaitAsync(Wait);
    }

    /// <summary>Moves service 2's only endpoint to port 9090.</summary>
    private static Model.ModelSnapshot Moved2(Model.ModelSnapshot model)
    {
        var workloads = model.Config.WorkloadEntries.Select(w => w.Name == "svc-2-0" ? w with { Ports = w.Ports.SetItem("http", 9090) } : w);
        return model with { Config = model.Config with { WorkloadEntries = [.. workloads] } };
    }

    /// <summary>In-memory streams whose first response write stays pending until <see cref="Release"/>.</summary>
    private sealed class GatedStreams : IAsyncStreamReader<DiscoveryRequest>, IServerStreamWriter<DiscoveryResponse>
    {
        private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _writes;

        public Channel<DiscoveryRequest> Requests { get; } = Channel.CreateUnbounded<DiscoveryRequest>();

        public Channel<DiscoveryResponse> Written { get; } = Channel.CreateUnbounded<DiscoveryResponse>();

        public DiscoveryRequest Current { get; private set; } = null!;

        public WriteOptions? WriteOptions { get; set; }

        public void Release() => _gate.TrySetResult();

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            Current = await Requests.Reader.ReadAsync(cancellationToken);
            return true;
        }

        public Task WriteAsync(DiscoveryResponse message) => WriteAsync(message, CancellationToken.None);

        public async Task WriteAsync(DiscoveryResponse message, CancellationToken cancellationToken)
        {
            Written.Writer.TryWrite(message);
            if (Interlocked.Increment(ref _writes) == 1)
            {
                await _gate.Task.WaitAsync(cancellationToken);
            }
        }
    }
}
