using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.ControlPlane.Tests.Xds;

public sealed class InboundListenerTranslatorTests
{
    private static readonly WorkloadInstance Orders = TestModels.Workload("10.0.0.5", new Dictionary<string, uint> { ["http"] = 8080, ["admin"] = 8081 });

    private static PeerAuthenticationModel Peer(string ns, string name, MtlsMode mode, Dictionary<string, string>? selector = null, Dictionary<uint, MtlsMode>? ports = null, string file = "p.yaml") =>
        new(ns, name, selector?.ToImmutableSortedDictionary(StringComparer.Ordinal), mode,
            (ports ?? []).ToImmutableSortedDictionary(), file, 1);

    [Fact]
    public void EffectiveMode_NoPolicy_Permissive() =>
        Assert.Equal(MtlsMode.Permissive, InboundListenerTranslator.EffectiveMode([], "istio-system", Orders, 8080));

    [Fact]
    public void EffectiveMode_WorkloadOverNamespaceOverMesh()
    {
        PeerAuthenticationModel[] policies =
        [
            Peer("istio-system", "mesh", MtlsMode.Strict),
            Peer("default", "ns", MtlsMode.Disable),
            Peer("default", "orders", MtlsMode.Permissive, new() { ["app"] = "orders" }),
        ];

        Assert.Equal(MtlsMode.Permissive, InboundListenerTranslator.EffectiveMode(policies, "istio-system", Orders, 8080));
        Assert.Equal(MtlsMode.Disable, InboundListenerTranslator.EffectiveMode(policies[..2], "istio-system", Orders, 8080));
        Assert.Equal(MtlsMode.Strict, InboundListenerTranslator.EffectiveMode(policies[..1], "istio-system", Orders, 8080));
        Assert.Equal(MtlsMode.Permissive, InboundListenerTranslator.EffectiveMode(policies[..1], "mesh-root", Orders, 8080));
    }

    [Fact]
    public void EffectiveMode_UnsetInheritsAndSelectorMismatchIgnored()
    {
        PeerAuthenticationModel[] policies =
        [
            Peer("istio-system", "mesh", MtlsMode.Strict),
            Peer("default", "ns", MtlsMode.Unset),
            Peer("default", "orders", MtlsMode.Unset, new() { ["app"] = "orders" }),
            Peer("default", "billing", MtlsMode.Disable, new() { ["app"] = "billing" }),
        ];

        Assert.Equal(MtlsMode.Strict, InboundListenerTranslator.EffectiveMode(policies, "istio-system", Orders, 8080));
    }

    [Fact]
    public void EffectiveMode_PortLevelOverridesOnlyThatPort()
    {
        PeerAuthenticationModel[] policies =
        [
            Peer("default", "orders", MtlsMode.Strict, new() { ["app"] = "orders" }, new() { [8081] = MtlsMode.Disable }),
        ];

        Assert.Equal(MtlsMode.Strict, InboundListenerTranslator.EffectiveMode(policies, "istio-system", Orders, 8080));
        Assert.Equal(MtlsMode.Disable, InboundListenerTranslator.EffectiveMode(policies, "istio-system", Orders, 8081));
    }

    [Fact]
    public void NamespaceMode_IgnoresWorkloadPoliciesAndInheritsMesh()
    {
        PeerAuthenticationModel[] policies =
        [
            Peer("istio-system", "mesh", MtlsMode.Disable),
            Peer("default", "orders", MtlsMode.Strict, new() { ["app"] = "orders" }),
            Peer("shop", "ns", MtlsMode.Strict),
            Peer("billing", "ns", MtlsMode.Unset),
        ];

        Assert.Equal(MtlsMode.Disable, InboundListenerTranslator.NamespaceMode(policies, "istio-system", "default"));
        Assert.Equal(MtlsMode.Strict, InboundListenerTranslator.NamespaceMode(policies, "istio-system", "shop"));
        Assert.Equal(MtlsMode.Disable, InboundListenerTranslator.NamespaceMode(policies, "istio-system", "billing"));
        Assert.Equal(MtlsMode.Permissive, InboundListenerTranslator.NamespaceMode(policies, "mesh-root", "default"));
    }

    [Fact]
    public void EffectiveMode_SameScopeDuplicates_FirstByFileWins()
    {
        PeerAuthenticationModel[] policies = [Peer("default", "a", MtlsMode.Disable, file: "b.yaml"), Peer("default", "z", MtlsMode.Strict, file: "a.yaml")];

        Assert.Equal(MtlsMode.Strict, InboundListenerTranslator.EffectiveMode(policies, "istio-system", Orders, 8080));
    }

    [Fact]
    public void BuildListener_Strict_OneTlsChainRequiringClientCertificate()
    {
        var listener = InboundListenerTranslator.BuildListener("n", "10.0.0.5", 8080, MtlsMode.Strict, null, null);

        var chain = Assert.Single(listener.FilterChains);
        Assert.Equal("10.0.0.5", listener.Address.SocketAddress.Address);
        Assert.Equal(8080u, listener.Address.SocketAddress.PortValue);
        Assert.Equal("envoy.transport_sockets.tls", chain.TransportSocket.Name);
        var tls = chain.TransportSocket.TypedConfig.Unpack<DownstreamTlsContext>();
        Assert.True(tls.RequireClientCertificate);
        Assert.Equal("default", tls.CommonTlsContext.TlsCertificateProviderInstance.InstanceName);
        Assert.Equal("default", tls.CommonTlsContext.TlsCertificateProviderInstance.CertificateName);
        Assert.Equal("ROOTCA", tls.CommonTlsContext.ValidationContext.CaCertificateProviderInstance.CertificateName);
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["envoy.filters.http.router"], manager.HttpFilters.Select(f => f.Name));
        var route = Assert.Single(Assert.Single(manager.RouteConfig.VirtualHosts).Routes);
        Assert.NotNull(route.NonForwardingAction);
        Assert.Equal(string.Empty, route.Match.Prefix);
    }

    [Fact]
    public void BuildListener_Permissive_TlsChainAndPlaintextChain()
    {
        var listener = InboundListenerTranslator.BuildListener("n", "10.0.0.5", 8080, MtlsMode.Permissive, null, null);

        Assert.Equal(2, listener.FilterChains.Count);
        Assert.Equal("tls", listener.FilterChains[0].FilterChainMatch.TransportProtocol);
        Assert.NotNull(listener.FilterChains[0].TransportSocket);
        Assert.Null(listener.FilterChains[1].TransportSocket);
    }

    [Fact]
    public void BuildListener_Disable_OnePlaintextChain()
    {
        var listener = InboundListenerTranslator.BuildListener("n", "10.0.0.5", 8080, MtlsMode.Disable, null, null);

        Assert.Null(Assert.Single(listener.FilterChains).TransportSocket);
    }

    [Fact]
    public void Translate_WorkloadWithPolicies_InboundListenerPerPortWithDenyThenAllowThenRouter()
    {
        var deny = new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny,
            [new AuthorizationRule([], [new RuleOperation([], [], ["/admin*"], [], [], [], [], [])], [])], "a.yaml", 1);
        var allow = new AuthorizationPolicyModel("istio-system", "allow-nothing", null, AuthorizationAction.Allow, [], "a.yaml", 5);
        var other = new AuthorizationPolicyModel("prod", "other", null, AuthorizationAction.Deny, [new AuthorizationRule([], [], [])], "a.yaml", 9);
        var model = TestModels.Snapshot([TestModels.Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], [Orders]);
        model = model with { Config = model.Config with { AuthorizationPolicies = [deny, allow, other] } };

        var snapshot = XdsTranslator.Translate(model, 1);

        Assert.Equal(["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080", "xds.istio.io/grpc/lds/inbound/10.0.0.5:8081"], snapshot.InboundListeners.Keys.Order(StringComparer.Ordinal));
        var listener = snapshot.InboundListeners["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"].Resource.Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["envoy.filters.http.rbac", "envoy.filters.http.rbac", "envoy.filters.http.router"], manager.HttpFilters.Select(f => f.Name));
        var denyRbac = manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules;
        Assert.Equal(RBAC.Types.Action.Deny, denyRbac.Action);
        Assert.Equal(["ns[default]-policy[deny-admin]-rule[0]"], denyRbac.Policies.Keys);
        var allowRbac = manager.HttpFilters[1].TypedConfig.Unpack<HttpRbac>().Rules;
        Assert.Equal(RBAC.Types.Action.Allow, allowRbac.Action);
        Assert.Empty(allowRbac.Policies);
    }

    [Fact]
    public void Translate_InboundOnlyWorkload_ItsListenersAndPolicy_NoEndpoint()
    {
        // A Kubernetes Pod not ready yet (or terminating): no endpoint of its service, but its inbound listeners and their
        // DENY are sent, so a Pod whose readiness waits for them becomes ready, and a draining one keeps enforcing them.
        var deny = new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny,
            [new AuthorizationRule([], [new RuleOperation([], [], ["/admin*"], [], [], [], [], [])], [])], "a.yaml", 1);
        var model = TestModels.Snapshot([TestModels.Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], []);
        model = model with { Config = model.Config with { AuthorizationPolicies = [deny], InboundOnlyWorkloads = [Orders] } };

        var snapshot = XdsTranslator.Translate(model, 1);

        Assert.Equal(["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080", "xds.istio.io/grpc/lds/inbound/10.0.0.5:8081"], snapshot.InboundListeners.Keys.Order(StringComparer.Ordinal));
        var manager = snapshot.InboundListeners["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"].Resource.Unpack<Listener>().FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        Assert.Equal(["ns[default]-policy[deny-admin]-rule[0]"], manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Keys);
        var endpoints = snapshot.Endpoints.Values.Select(r => r.Resource.Unpack<Mesh.Xds.Envoy.Config.Endpoint.V3.ClusterLoadAssignment>()).SelectMany(a => a.Endpoints).SelectMany(l => l.LbEndpoints);
        Assert.DoesNotContain(endpoints, e => e.Endpoint.Address.SocketAddress.Address == "10.0.0.5");
    }

    [Theory]
    [InlineData(null, true, true, "RejectRequest", true)]
    [InlineData("NONE", false, false, "RejectRequest", true)]
    [InlineData("BASE", true, false, "KeepUnchanged", false)]
    [InlineData("MERGE_SLASHES", true, true, "KeepUnchanged", false)]
    [InlineData("DECODE_AND_MERGE_SLASHES", true, true, "UnescapeAndForward", false)]
    public void Translate_PathSettings_SetInEveryChainsHttpConnectionManagerAsIstiod(string? mode, bool normalize, bool merge, string escaped, bool reject)
    {
        InboundPathSettings? paths = null;
        if (mode is not null)
        {
            Assert.True(InboundPathSettings.TryParseMode(mode, out var parsed));
            paths = new InboundPathSettings(parsed, reject, IgnoreCase: false);
        }

        var deny = new AuthorizationPolicyModel("default", "deny-admin", null, AuthorizationAction.Deny,
            [new AuthorizationRule([], [new RuleOperation([], [], ["/Admin"], [], [], [], [], [])], [])], "a.yaml", 1);
        var model = TestModels.Snapshot([TestModels.Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], [Orders]);
        model = model with { Config = model.Config with { AuthorizationPolicies = [deny] } };

        var snapshot = XdsTranslator.Translate(model, 1, paths: paths);

        var listener = snapshot.InboundListeners["xds.istio.io/grpc/lds/inbound/10.0.0.5:8080"].Resource.Unpack<Listener>();
        Assert.Equal(2, listener.FilterChains.Count);
        foreach (var chain in listener.FilterChains)
        {
            var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
            Assert.Equal(normalize, manager.NormalizePath);
            Assert.Equal(merge, manager.MergeSlashes);
            Assert.Equal(System.Enum.Parse<HttpConnectionManager.Types.PathWithEscapedSlashesAction>(escaped), manager.PathWithEscapedSlashesAction);
            var path = manager.HttpFilters[0].TypedConfig.Unpack<HttpRbac>().Rules.Policies.Single().Value.Permissions.Single().OrRules.Rules[0].UrlPath.Path;
            Assert.Equal("/Admin", path.Exact);
            Assert.Equal(mode is null, path.IgnoreCase);
        }
    }

    [Fact]
    public void ListenerName_Ipv6_Bracketed() =>
        Assert.Equal("xds.istio.io/grpc/lds/inbound/[::1]:80", InboundListenerTranslator.ListenerName("::1", 80));
}
