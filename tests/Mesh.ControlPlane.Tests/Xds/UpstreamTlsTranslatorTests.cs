using Google.Protobuf;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using static Mesh.ControlPlane.Tests.TestModels;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

public class UpstreamTlsTranslatorTests
{
    private const string Host = "orders.default.svc.cluster.local";
    private const string UpstreamTlsTypeUrl = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

    private static readonly Dictionary<string, string> OrdersLabels = new() { ["app"] = "orders" };

    [Fact]
    public void Translate_WorkloadSelectorService_EmitsIstioUpstreamTlsContextExactly()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)]), 1);

        var socket = Cluster(snapshot).TransportSocket;
        Assert.Equal("envoy.transport_sockets.tls", socket.Name);
        Assert.Equal(UpstreamTlsTypeUrl, socket.TypedConfig.TypeUrl);
        var expected = new UpstreamTlsContext
        {
            CommonTlsContext = new CommonTlsContext
            {
                TlsCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "default" },
                CombinedValidationContext = new CommonTlsContext.Types.CombinedCertificateValidationContext
                {
                    DefaultValidationContext = new CertificateValidationContext
                    {
                        MatchSubjectAltNames = { new StringMatcher { Exact = "spiffe://cluster.local/ns/default/sa/orders" } },
                        CaCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "ROOTCA" },
                    },
                    ValidationContextCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance { InstanceName = "default", CertificateName = "ROOTCA" },
                },
                TlsCertificateCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance { InstanceName = "default", CertificateName = "default" },
            },
        };
        Assert.Equal(expected, socket.TypedConfig.Unpack<UpstreamTlsContext>());
    }

    [Fact]
    public void Translate_WorkloadSelectorWithSubjectAltNames_UsesThemInsteadOfConvention()
    {
        var service = Service(selector: OrdersLabels) with { SubjectAltNames = ["spiffe://cluster.local/ns/default/sa/orders-v2", "spiffe://cluster.local/ns/default/sa/billing"] };
        var snapshot = XdsTranslator.Translate(Snapshot([service]), 1);

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/billing", "spiffe://cluster.local/ns/default/sa/orders-v2"], Sans(snapshot));
    }

    [Fact]
    public void Translate_WorkloadSelectorWithoutSubjectAltNames_UsesConventionInConfiguredTrustDomain()
    {
        var snapshot = XdsTranslator.Translate(Snapshot([Service(host: "pay.shop.svc.cluster.local", ns: "shop", selector: OrdersLabels)]), 1, trustDomain: "example.org");

        var cluster = snapshot.Clusters["outbound|80||pay.shop.svc.cluster.local"].Resource.Unpack<Cluster>();
        var sans = Unpack(cluster).CommonTlsContext.CombinedValidationContext.DefaultValidationContext.MatchSubjectAltNames;
        Assert.Equal(["spiffe://example.org/ns/shop/sa/pay"], sans.Select(m => m.Exact));
    }

    [Fact]
    public void Translate_EndpointServiceAccounts_AddedDeduplicatedAndSorted()
    {
        var service = Service(selector: OrdersLabels);
        var workloads = new[]
        {
            Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }) with { ServiceAccount = "zeta" },
            Workload("10.0.0.2", new Dictionary<string, uint> { ["http"] = 5002 }),
            Workload("10.0.0.3", new Dictionary<string, uint> { ["http"] = 5003 }) with { ServiceAccount = string.Empty },
            Workload("10.0.0.4", new Dictionary<string, uint> { ["http"] = 5004 }, labels: new Dictionary<string, string> { ["app"] = "other" }) with { ServiceAccount = "unselected" },
        };
        var registered = Workload("10.0.0.5", new Dictionary<string, uint> { ["http"] = 5005 }, source: EndpointSources.Registration) with { ServiceAccount = "alpha" };

        var snapshot = XdsTranslator.Translate(Snapshot([service], workloads, registrations: [registered]), 1);

        Assert.Equal(
            ["spiffe://cluster.local/ns/default/sa/alpha", "spiffe://cluster.local/ns/default/sa/orders", "spiffe://cluster.local/ns/default/sa/zeta"],
            Sans(snapshot));
    }

    [Fact]
    public void Translate_SameEndpointsInAnotherOrder_ClusterBytesAreEqual()
    {
        var service = Service(selector: OrdersLabels);
        var a = Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }) with { ServiceAccount = "zeta" };
        var b = Workload("10.0.0.2", new Dictionary<string, uint> { ["http"] = 5002 }) with { ServiceAccount = "alpha" };

        var first = XdsTranslator.Translate(Snapshot([service], [a, b]), 1).Clusters[Cluster80].Resource;
        var second = XdsTranslator.Translate(Snapshot([service], [b, a]), 2).Clusters[Cluster80].Resource;

        Assert.Equal(first.ToByteString(), second.ToByteString());
    }

    [Fact]
    public void Translate_InlineEndpoints_StayPlaintext()
    {
        var service = Service(endpoints: [Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 })]);
        var snapshot = XdsTranslator.Translate(Snapshot([service]), 1);

        Assert.Null(Cluster(snapshot).TransportSocket);
    }

    [Fact]
    public void Translate_InlineEndpointsWithIstioMutualRule_EmitsTlsWithEndpointServiceAccounts()
    {
        var service = Service(endpoints: [Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }) with { ServiceAccount = "legacy" }]);
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.RoundRobin, UpstreamTlsMode.IstioMutual);
        var snapshot = XdsTranslator.Translate(Snapshot([service], rules: [rule]), 1);

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/legacy", "spiffe://cluster.local/ns/default/sa/orders"], Sans(snapshot));
    }

    [Fact]
    public void Translate_WorkloadSelectorWithDisableRule_StaysPlaintext()
    {
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.LeastRequest, UpstreamTlsMode.Disable);
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], rules: [rule]), 1);

        var cluster = Cluster(snapshot);
        Assert.Null(cluster.TransportSocket);
        Assert.NotNull(cluster.LoadBalancingPolicy);
    }

    [Fact]
    public void Translate_RuleWithoutTlsSetting_KeepsAutoMtls()
    {
        var rule = new DestinationRuleModel("default", "orders", Host, LoadBalancerKind.LeastRequest);
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], rules: [rule]), 1);

        Assert.NotNull(Cluster(snapshot).TransportSocket);
    }

    [Fact]
    public void Translate_RuleForAnotherHost_DoesNotApply()
    {
        var rule = new DestinationRuleModel("default", "billing", "billing.default.svc.cluster.local", LoadBalancerKind.RoundRobin, UpstreamTlsMode.Disable);
        var snapshot = XdsTranslator.Translate(Snapshot([Service(selector: OrdersLabels)], rules: [rule]), 1);

        Assert.NotNull(Cluster(snapshot).TransportSocket);
    }

    [Fact]
    public void Translate_MultiPortService_EveryClusterGetsTls()
    {
        var service = Service(selector: OrdersLabels, ports: [new ServicePort(80, "http", "HTTP", null), new ServicePort(9090, "grpc", "GRPC", null)]);
        var snapshot = XdsTranslator.Translate(Snapshot([service]), 1);

        Assert.All(snapshot.Clusters.Values, c => Assert.NotNull(c.Resource.Unpack<Cluster>().TransportSocket));
        Assert.Equal(2, snapshot.Clusters.Count);
    }

    private static Cluster Cluster(XdsSnapshot snapshot) => snapshot.Clusters[Cluster80].Resource.Unpack<Cluster>();

    private static UpstreamTlsContext Unpack(Cluster cluster) => cluster.TransportSocket.TypedConfig.Unpack<UpstreamTlsContext>();

    private static string[] Sans(XdsSnapshot snapshot) =>
        [.. Unpack(Cluster(snapshot)).CommonTlsContext.CombinedValidationContext.DefaultValidationContext.MatchSubjectAltNames.Select(m => m.Exact)];
}
