using System.Collections.Immutable;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Tests;

/// <summary>A snapshot source whose snapshot the test sets; each set fires the change token.</summary>
internal sealed class FixedSnapshotSource : IMeshSnapshotSource
{
    private CancellationTokenSource _changed = new();

    public FixedSnapshotSource(MeshSnapshot snapshot)
    {
        Current = snapshot;
    }

    public MeshSnapshot Current { get; private set; }

    public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    public void Set(MeshSnapshot snapshot)
    {
        Current = snapshot;
        var previous = Interlocked.Exchange(ref _changed, new CancellationTokenSource());
        previous.Cancel();
        previous.Dispose();
    }
}

/// <summary>Builds snapshots the way the xDS client would: a service answers to its short, namespaced and full names.</summary>
internal static class TestSnapshots
{
    public static readonly MeshHostNames Names = new("default", "cluster.local");

    public static MeshEndpoint Endpoint(int port, int weight = 1, bool healthy = true) => new("127.0.0.1", port, weight, healthy);

    public static MeshService Service(string name, int port, MeshCluster cluster) =>
        Service(name, port, new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)]));

    public static MeshService Service(string name, int port, params MeshRoute[] routes) =>
        new($"{Names.Qualify(name)}:{port}", Names.Qualify(name), port, [.. routes]);

    public static MeshCluster Cluster(string name, int port, IEnumerable<MeshEndpoint> endpoints, LoadBalancingPolicy policy = LoadBalancingPolicy.RoundRobin, OutlierDetectionSettings? outlier = null) =>
        new($"outbound|{port}||{Names.Qualify(name)}", Names.Qualify(name), policy, [.. endpoints], outlier);

    /// <summary>A snapshot with one service per entry, each on the given port with one route to one cluster.</summary>
    public static MeshSnapshot Snapshot(params (string Name, int Port, MeshEndpoint[] Endpoints)[] services)
    {
        var bindings = new List<KeyValuePair<string, MeshService>>();
        var clusters = new List<MeshCluster>();
        foreach (var (name, port, endpoints) in services)
        {
            var cluster = Cluster(name, port, endpoints, outlier: OutlierDetectionSettings.Default with { Consecutive5xx = 3 });
            clusters.Add(cluster);
            var service = Service(name, port, cluster);
            bindings.AddRange(Bind(name, service));
        }

        return new MeshSnapshot("test", bindings, clusters);
    }

    public static IEnumerable<KeyValuePair<string, MeshService>> Bind(string name, MeshService service)
    {
        yield return new(name, service);
        yield return new($"{name}.{Names.Namespace}", service);
        yield return new(Names.Qualify(name), service);
    }
}
