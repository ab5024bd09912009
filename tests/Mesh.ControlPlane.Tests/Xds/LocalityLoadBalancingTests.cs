using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using static Mesh.ControlPlane.Tests.TestModels;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

public class LocalityLoadBalancingTests
{
    private const string Host = "orders.default.svc.cluster.local";

    private static readonly Dictionary<string, string> OrdersLabels = new() { ["app"] = "orders" };

    private static readonly TrafficPolicyModel WithOutlierDetection =
        new(null, new ResiliencePolicyModel(null, new OutlierDetectionModel { Consecutive5xxErrors = 1 }, null), []);

    // One endpoint per locality; the last octet tells them apart.
    private static readonly (string Locality, string Address, string Version)[] Localities =
    [
        ("us-east/zone-a/s1", "10.0.0.1", "v1"),
        ("us-east/zone-a/s2", "10.0.0.2", "v2"),
        ("us-east/zone-b/s1", "10.0.0.3", "v1"),
        ("eu-west/zone-c/s1", "10.0.0.4", "v2"),
        ("ap-south/zone-d/s1", "10.0.0.5", "v1"),
    ];

    private static XdsSnapshot Translate(LocalityLbSettingModel? setting, TrafficPolicyModel? traffic = null, ImmutableArray<SubsetModel> subsets = default)
    {
        var workloads = Localities.Select(l => Workload(l.Address, new Dictionary<string, uint> { ["http"] = 8080 }, locality: l.Locality,
            labels: new Dictionary<string, string> { ["app"] = "orders", ["version"] = l.Version })).ToArray();
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.RoundRobin)
        {
            Traffic = traffic ?? WithOutlierDetection,
            LocalityLb = setting,
            Subsets = subsets.IsDefault ? [] : subsets,
        };
        return XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], workloads, [rule]), 1);
    }

    private static ClientTopology Client(string locality, Dictionary<string, string>? labels = null)
    {
        var parts = locality.Split('/');
        return new ClientTopology(parts[0], parts.Length > 1 ? parts[1] : string.Empty, parts.Length > 2 ? parts[2] : string.Empty, labels ?? []);
    }

    /// <summary>Priority per endpoint address, as the client would get it.</summary>
    private static Dictionary<string, uint> Priorities(XdsSnapshot snapshot, ClientTopology client, string cluster = Cluster80)
    {
        var cla = snapshot.EndpointsFor(snapshot.Endpoints[cluster], client).Resource.Unpack<ClusterLoadAssignment>();
        AssertValidForGrpc(cla);
        return cla.Endpoints.SelectMany(l => l.LbEndpoints.Select(e => (e.Endpoint.Address.SocketAddress.Address, l.Priority)))
            .ToDictionary(x => x.Address, x => x.Priority);
    }

    /// <summary>What gRPC NACKs: priorities with gaps, a (locality, priority) pair twice, a locality without a weight.</summary>
    private static void AssertValidForGrpc(ClusterLoadAssignment cla)
    {
        var priorities = cla.Endpoints.Select(l => l.Priority).Distinct().Order().ToArray();
        Assert.Equal(Enumerable.Range(0, priorities.Length).Select(p => (uint)p), priorities);
        Assert.Equal(cla.Endpoints.Count, cla.Endpoints.Select(l => (l.Locality, l.Priority)).Distinct().Count());
        Assert.All(cla.Endpoints, l => Assert.True(l.LoadBalancingWeight > 0));
    }

    [Theory]
    [InlineData("us-east/zone-a/s1", new uint[] { 0, 1, 2, 3, 3 })]
    [InlineData("us-east/zone-a/s2", new uint[] { 1, 0, 2, 3, 3 })]
    [InlineData("us-east/zone-b/s1", new uint[] { 1, 1, 0, 2, 2 })]
    [InlineData("eu-west/zone-c/s1", new uint[] { 1, 1, 1, 0, 1 })]
    [InlineData("eu-west/zone-z", new uint[] { 1, 1, 1, 0, 1 })]
    [InlineData("mars", new uint[] { 0, 0, 0, 0, 0 })]
    public void EndpointsFor_MeshDefaultWithOutlierDetection_PrioritisesByClientLocality(string client, uint[] expected)
    {
        var snapshot = Translate(setting: null);

        var priorities = Priorities(snapshot, Client(client));

        Assert.Equal(expected, Localities.Select(l => priorities[l.Address]).ToArray());
    }

    [Fact]
    public void EndpointsFor_Failover_PutsTheTargetRegionBeforeOtherRegions()
    {
        var snapshot = Translate(new LocalityLbSettingModel(null, [], [new LocalityFailoverModel("us-east", "ap-south")], []));

        var priorities = Priorities(snapshot, Client("us-east/zone-a/s1"));

        // Same subzone, same zone, same region, the failover region, then the rest.
        Assert.Equal([0u, 1, 2, 4, 3], Localities.Select(l => priorities[l.Address]).ToArray());
    }

    [Fact]
    public void EndpointsFor_ClientWithoutLocality_GetsIstiosAnswerForAnEmptyLocality()
    {
        var snapshot = Translate(setting: null);

        var priorities = Priorities(snapshot, ClientTopology.None);

        Assert.All(priorities.Values, p => Assert.Equal(0u, p));
    }

    [Fact]
    public void EndpointsFor_FailoverPriorityLabels_PutsMatchingEndpointsFirst()
    {
        var snapshot = Translate(new LocalityLbSettingModel(null, [], [], ["version"]));

        var v1 = Priorities(snapshot, Client("eu-west/zone-c/s1", new() { ["version"] = "v1" }));
        var v2 = Priorities(snapshot, Client("us-east/zone-a/s1", new() { ["version"] = "v2" }));

        Assert.Equal([0u, 1, 0, 1, 0], Localities.Select(l => v1[l.Address]).ToArray());
        Assert.Equal([1u, 0, 1, 0, 1], Localities.Select(l => v2[l.Address]).ToArray());
    }

    [Fact]
    public void EndpointsFor_FailoverPriorityOnTopologyLabels_UsesTheLocalitiesAsLabels()
    {
        var snapshot = Translate(new LocalityLbSettingModel(null, [], [], ["topology.kubernetes.io/region", "topology.kubernetes.io/zone"]));

        var priorities = Priorities(snapshot, Client("us-east/zone-b/s9", new() { ["app"] = "client" }));

        // Same region and zone, same region, other regions.
        Assert.Equal([1u, 1, 0, 2, 2], Localities.Select(l => priorities[l.Address]).ToArray());
    }

    [Fact]
    public void EndpointsFor_Distribute_SetsLocalityWeightsAndDropsLocalitiesNotListed()
    {
        var snapshot = Translate(new LocalityLbSettingModel(null,
            [new LocalityDistributeModel("us-east/zone-a/*", [KeyValuePair.Create("us-east/zone-a/*", 80u), KeyValuePair.Create("eu-west/*", 20u)])], [], []));

        var cla = snapshot.EndpointsFor(snapshot.Endpoints[Cluster80], Client("us-east/zone-a/s2")).Resource.Unpack<ClusterLoadAssignment>();

        // us-east/zone-a/* matches two localities of weight 1 each: 80 split in proportion, rounded up as istiod does.
        var weights = cla.Endpoints.ToDictionary(l => $"{l.Locality.Region}/{l.Locality.Zone}/{l.Locality.SubZone}", l => l.LoadBalancingWeight!.Value);
        Assert.Equal(new Dictionary<string, uint> { ["us-east/zone-a/s1"] = 40, ["us-east/zone-a/s2"] = 40, ["eu-west/zone-c/s1"] = 20 }, weights);
        Assert.All(cla.Endpoints, l => Assert.Equal(0u, l.Priority));

        // A client no 'from' matches gets the plain assignment.
        var other = snapshot.EndpointsFor(snapshot.Endpoints[Cluster80], Client("eu-west/zone-c/s1")).Resource.Unpack<ClusterLoadAssignment>();
        Assert.Equal(snapshot.Endpoints[Cluster80].Resource.Unpack<ClusterLoadAssignment>(), other);
    }

    [Fact]
    public void EndpointsFor_DistributeWithoutOutlierDetection_StillApplies()
    {
        var snapshot = Translate(new LocalityLbSettingModel(null,
            [new LocalityDistributeModel("*", [KeyValuePair.Create("eu-west", 100u)])], [], []), TrafficPolicyModel.None);

        Assert.Equal(["10.0.0.4"], Priorities(snapshot, Client("us-east/zone-a/s1")).Keys);
    }

    [Fact]
    public void Translate_WithoutOutlierDetectionOrDisabled_SharesOneAssignment()
    {
        var noOutlier = Translate(new LocalityLbSettingModel(null, [], [new LocalityFailoverModel("us-east", "ap-south")], []), TrafficPolicyModel.None);
        var disabled = Translate(new LocalityLbSettingModel(false, [], [], []));

        foreach (var snapshot in new[] { noOutlier, disabled })
        {
            Assert.Empty(snapshot.LocalityLbClusters);
            var shared = snapshot.Endpoints[Cluster80];
            Assert.Same(shared, snapshot.EndpointsFor(shared, Client("us-east/zone-a/s1")));
        }
    }

    [Fact]
    public void EndpointsFor_SameLocality_SharesOneSerializedResourcePerSnapshot()
    {
        var snapshot = Translate(setting: null);
        var shared = snapshot.Endpoints[Cluster80];

        var first = snapshot.EndpointsFor(shared, Client("us-east/zone-a/s1", new() { ["app"] = "a" }));
        var second = snapshot.EndpointsFor(shared, Client("us-east/zone-a/s1", new() { ["app"] = "b" }));
        var elsewhere = snapshot.EndpointsFor(shared, Client("eu-west/zone-c/s1"));

        Assert.Same(first, second);
        Assert.NotSame(first, elsewhere);
        Assert.Equal(Cluster80, first.Name);
        Assert.True(first.Resource.Is(ClusterLoadAssignment.Descriptor));
    }

    [Fact]
    public void Translate_SubsetWithItsOwnLoadBalancer_DropsTheRulesLocalitySettingAsIstiodMerges()
    {
        var distribute = new LocalityLbSettingModel(null, [new LocalityDistributeModel("*", [KeyValuePair.Create("eu-west", 100u)])], [], []);
        var snapshot = Translate(distribute, subsets:
        [
            new SubsetModel("v1", ImmutableSortedDictionary.CreateRange(new Dictionary<string, string> { ["version"] = "v1" }), LoadBalancerKind.RoundRobin),
            new SubsetModel("v2", ImmutableSortedDictionary.CreateRange(new Dictionary<string, string> { ["version"] = "v2" })),
        ]);

        // v1 set loadBalancer: the mesh default (failover by locality, with the rule's outlier detection) applies to it.
        var v1 = Priorities(snapshot, Client("us-east/zone-a/s1"), "outbound|80|v1|" + Host);
        Assert.Equal(new Dictionary<string, uint> { ["10.0.0.1"] = 0, ["10.0.0.3"] = 1, ["10.0.0.5"] = 2 }, v1);

        // v2 inherits the rule's distribute.
        Assert.Equal(["10.0.0.4"], Priorities(snapshot, Client("us-east/zone-a/s1"), "outbound|80|v2|" + Host).Keys);
    }

    [Fact]
    public void ClientTopology_FromNode_ReadsLocalityAndStringLabels()
    {
        var node = new Node { Locality = new Locality { Region = "us-east", Zone = "zone-a" }, Metadata = new Struct() };
        var labels = new Struct();
        labels.Fields["version"] = Value.ForString("v1");
        labels.Fields["odd"] = Value.ForNumber(3);
        node.Metadata.Fields["LABELS"] = Value.ForStruct(labels);

        var topology = ClientTopology.From(node);

        Assert.Equal("us-east/zone-a/", topology.Key);
        Assert.Equal("v1", topology.Labels["version"]);
        Assert.Equal("us-east", topology.Labels["topology.kubernetes.io/region"]);
        Assert.False(topology.Labels.ContainsKey("odd"));
        Assert.False(topology.Labels.ContainsKey("topology.istio.io/subzone"));
    }

    [Theory]
    [InlineData("us-east", "zone-b/", "")]
    [InlineData("us-east/zone-b", "", "")]
    [InlineData("", "zone-b", "")]
    [InlineData("us-east", "zone b", "")]
    [InlineData("*", "", "")]
    public void ClientTopology_LocalityThatIsNotOne_IsTakenAsNone(string region, string zone, string subZone)
    {
        // Parts are the cache key that every client of a locality shares: a spelling that could alias a real client's
        // key ("us-east" + "zone-b/" = "us-east/zone-b//") must not get its own priorities into that entry.
        var node = new Node { Locality = new Locality { Region = region, Zone = zone, SubZone = subZone } };

        Assert.Same(ClientTopology.None, ClientTopology.From(node));
    }

    [Theory]
    [InlineData("team")]
    [InlineData("version")]
    public void EndpointsFor_FailoverPriority_WhoAsksFirstNeverChangesWhatAnotherClientGets(string label)
    {
        // Without a locality, a client with labels is compared by them and one without is not: whichever asks first, each
        // gets what it would get alone (the cache key tells them apart, and a claimed value cannot spell another's key).
        var setting = new LocalityLbSettingModel(null, [], [], ["version"]);
        var labelled = new ClientTopology(string.Empty, string.Empty, string.Empty, new Dictionary<string, string> { [label] = "v2" });
        var spoof = new ClientTopology(string.Empty, string.Empty, string.Empty, new Dictionary<string, string> { ["version"] = "v2\n\0" });

        var alone = (None: Priorities(Translate(setting), ClientTopology.None), Labelled: Priorities(Translate(setting), labelled), Spoof: Priorities(Translate(setting), spoof));
        var shared = Translate(setting);
        var spoofFirst = Priorities(shared, spoof);
        var labelledFirst = Priorities(shared, labelled);
        var noneLast = Priorities(shared, ClientTopology.None);

        Assert.Equal(alone.Spoof, spoofFirst);
        Assert.Equal(alone.Labelled, labelledFirst);
        Assert.Equal(alone.None, noneLast);
        Assert.All(noneLast.Values, p => Assert.Equal(0u, p));
    }
}
