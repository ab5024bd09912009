using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using static Mesh.ControlPlane.Tests.TestModels;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>
/// Auto mTLS reads the servers' PeerAuthentication (Istio's BestEffortInferServiceMTLSMode plus its per-endpoint
/// policy check): a cluster whose servers run DISABLE on the port is sent without a transport socket.
/// </summary>
public sealed class AutoMtlsPeerAuthenticationTests
{
    private const string Host = "orders.default.svc.cluster.local";
    private const string Cluster9090 = "outbound|9090||orders.default.svc.cluster.local";
    private const string Root = "istio-system";

    private static readonly Dictionary<string, string> OrdersLabels = new() { ["app"] = "orders" };
    private static readonly ServicePort[] TwoPorts = [new(80, "http", "HTTP", null), new(9090, "grpc", "GRPC", null)];

    // Serves service port 80 on 5001 and 9090 on 5002.
    private static readonly WorkloadInstance Orders1 = Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001, ["grpc"] = 5002 });
    private static readonly WorkloadInstance Orders2 = Workload("10.0.0.2", new Dictionary<string, uint> { ["http"] = 5001, ["grpc"] = 5002 })
        with { Labels = OrdersLabels.Append(new("version", "v2")).ToImmutableSortedDictionary(StringComparer.Ordinal) };

    [Fact]
    public void Translate_NoPeerAuthentication_Mtls() =>
        Assert.True(HasTls(Translate([])));

    [Fact]
    public void Translate_MeshWideDisable_Plaintext() =>
        Assert.False(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Disable)])));

    [Fact]
    public void Translate_MeshWideDisableInAnotherRootNamespace_Mtls() =>
        Assert.True(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Disable)], rootNamespace: "mesh-root")));

    [Fact]
    public void Translate_MeshWideDisableAndNoEndpoints_Plaintext()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], peerAuthentications: [PeerAuthentication(Root, MtlsMode.Disable)]), 1);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Fact]
    public void Translate_NamespaceDisableOverridesMeshStrict_Plaintext() =>
        Assert.False(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Strict), PeerAuthentication("default", MtlsMode.Disable)])));

    [Fact]
    public void Translate_NamespaceDisableOverridesMeshStrictAndNoEndpoints_Plaintext()
    {
        var policies = new[] { PeerAuthentication(Root, MtlsMode.Strict), PeerAuthentication("default", MtlsMode.Disable) };
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], peerAuthentications: policies), 1);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Fact]
    public void Translate_NamespaceStrictOverridesMeshDisable_Mtls() =>
        Assert.True(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Disable), PeerAuthentication("default", MtlsMode.Strict)])));

    [Fact]
    public void Translate_NamespaceUnsetUnderMeshDisable_InheritsPlaintext() =>
        Assert.False(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Disable), PeerAuthentication("default", MtlsMode.Unset)])));

    [Fact]
    public void Translate_DisableInAnotherNamespace_Mtls() =>
        Assert.True(HasTls(Translate([PeerAuthentication("shop", MtlsMode.Disable), PeerAuthentication("shop", MtlsMode.Disable, OrdersLabels)])));

    [Fact]
    public void Translate_WorkloadDisable_Plaintext() =>
        Assert.False(HasTls(Translate([PeerAuthentication(Root, MtlsMode.Strict), PeerAuthentication("default", MtlsMode.Disable, OrdersLabels)])));

    [Fact]
    public void Translate_WorkloadDisableSelectingOtherWorkloads_Mtls() =>
        Assert.True(HasTls(Translate([PeerAuthentication("default", MtlsMode.Disable, new Dictionary<string, string> { ["app"] = "billing" })])));

    [Fact]
    public void Translate_WorkloadStrictUnderNamespaceDisable_Mtls() =>
        Assert.True(HasTls(Translate([PeerAuthentication("default", MtlsMode.Disable), PeerAuthentication("default", MtlsMode.Strict, OrdersLabels)])));

    [Fact]
    public void Translate_RegisteredWorkloadUnderWorkloadDisable_Plaintext()
    {
        var registered = Orders1 with { Source = EndpointSources.Registration, LeaseId = "lease-1" };
        var snapshot = XdsTranslator.Translate(
            Snapshot([Service(selector: OrdersLabels)], registrations: [registered], peerAuthentications: [PeerAuthentication("default", MtlsMode.Disable, OrdersLabels)]), 1);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Fact]
    public void Translate_PortLevelDisableOnTheTargetPort_OnlyThatClusterPlaintext()
    {
        var policy = PeerAuthentication("default", MtlsMode.Strict, OrdersLabels, new Dictionary<uint, MtlsMode> { [5001] = MtlsMode.Disable });

        var snapshot = Translate([policy], ports: TwoPorts);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
        Assert.NotNull(ClusterOf(snapshot, Cluster9090).TransportSocket);
    }

    [Fact]
    public void Translate_PortLevelDisableOnAnotherPort_Mtls()
    {
        var policy = PeerAuthentication("default", MtlsMode.Strict, OrdersLabels, new Dictionary<uint, MtlsMode> { [5002] = MtlsMode.Disable });

        var snapshot = Translate([policy], ports: TwoPorts);

        Assert.NotNull(ClusterOf(snapshot, Cluster80).TransportSocket);
        Assert.Null(ClusterOf(snapshot, Cluster9090).TransportSocket);
    }

    [Fact]
    public void Translate_PortLevelKeyedByServicePortNotWorkloadPort_Mtls()
    {
        // portLevelMtls names the workload's port (Istio API doc), so 80 here matches no server port.
        var policy = PeerAuthentication("default", MtlsMode.Strict, OrdersLabels, new Dictionary<uint, MtlsMode> { [80] = MtlsMode.Disable });

        Assert.True(HasTls(Translate([policy])));
    }

    [Fact]
    public void Translate_PortLevelStrictUnderWorkloadDisable_OnlyThatClusterMtls()
    {
        var policy = PeerAuthentication("default", MtlsMode.Disable, OrdersLabels, new Dictionary<uint, MtlsMode> { [5002] = MtlsMode.Strict });

        var snapshot = Translate([policy], ports: TwoPorts);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
        Assert.NotNull(ClusterOf(snapshot, Cluster9090).TransportSocket);
    }

    [Fact]
    public void Translate_WorkloadsDisagree_StaysMtls()
    {
        var onlyV2Disabled = PeerAuthentication("default", MtlsMode.Disable, new Dictionary<string, string> { ["version"] = "v2" });

        var snapshot = Translate([onlyV2Disabled], workloads: [Orders1, Orders2]);

        Assert.NotNull(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Fact]
    public void Translate_EveryWorkloadDisabledByItsOwnPolicy_Plaintext()
    {
        // Both selectors match v2; the first by name ("a-v2") is the one that applies to it.
        PeerAuthenticationModel[] policies =
        [
            PeerAuthentication("default", MtlsMode.Disable, new Dictionary<string, string> { ["version"] = "v2" }, name: "a-v2"),
            PeerAuthentication("default", MtlsMode.Strict, OrdersLabels, new Dictionary<uint, MtlsMode> { [5001] = MtlsMode.Disable }),
        ];

        var snapshot = Translate(policies, workloads: [Orders1, Orders2]);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Theory]
    [InlineData("mesh")]
    [InlineData("namespace")]
    [InlineData("workload")]
    public void Translate_IstioMutualRule_WinsOverDisable(string scope)
    {
        var policy = scope switch
        {
            "mesh" => PeerAuthentication(Root, MtlsMode.Disable),
            "namespace" => PeerAuthentication("default", MtlsMode.Disable),
            _ => PeerAuthentication("default", MtlsMode.Disable, OrdersLabels),
        };
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.RoundRobin, UpstreamTlsMode.IstioMutual);

        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], [Orders1], [rule], peerAuthentications: [policy]), 1);

        Assert.NotNull(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Fact]
    public void Translate_DisableRuleUnderStrict_StaysPlaintext()
    {
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.RoundRobin, UpstreamTlsMode.Disable);

        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], [Orders1], [rule], peerAuthentications: [PeerAuthentication(Root, MtlsMode.Strict)]), 1);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    [Theory]
    [InlineData("Strict")]
    [InlineData("Permissive")]
    [InlineData("Unset")]
    public void Translate_StrictPermissiveOrUnsetAtEveryScope_Mtls(string modeName)
    {
        var mode = Enum.Parse<MtlsMode>(modeName);
        Assert.True(HasTls(Translate([PeerAuthentication(Root, mode)])));
        Assert.True(HasTls(Translate([PeerAuthentication("default", mode)])));
        Assert.True(HasTls(Translate([PeerAuthentication("default", mode, OrdersLabels)])));
        Assert.True(HasTls(Translate([PeerAuthentication("default", MtlsMode.Permissive, OrdersLabels, new Dictionary<uint, MtlsMode> { [5001] = mode })])));
    }

    [Fact]
    public void Translate_InlineEndpointsUnderStrict_StayPlaintext()
    {
        // External (inline-endpoint) services are not mesh workloads: auto mTLS never applies, whatever the policy.
        var service = Service(endpoints: [Workload("10.0.0.9", new Dictionary<string, uint> { ["http"] = 5001 })]);

        var snapshot = XdsTranslator.Translate(Snapshot([service], peerAuthentications: [PeerAuthentication(Root, MtlsMode.Strict)]), 1);

        Assert.Null(ClusterOf(snapshot, Cluster80).TransportSocket);
    }

    private static XdsSnapshot Translate(
        PeerAuthenticationModel[] policies,
        ServicePort[]? ports = null,
        WorkloadInstance[]? workloads = null,
        string rootNamespace = Root) =>
        XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels, ports: ports)], workloads ?? [Orders1], peerAuthentications: policies), 1, rootNamespace);

    private static bool HasTls(XdsSnapshot snapshot) => ClusterOf(snapshot, Cluster80).TransportSocket is not null;

    private static Cluster ClusterOf(XdsSnapshot snapshot, string name) => snapshot.Clusters[name].Resource.Unpack<Cluster>();
}
