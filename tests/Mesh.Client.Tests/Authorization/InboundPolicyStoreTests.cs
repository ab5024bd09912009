using Mesh.Client.Authorization;
using Mesh.Client.Security;

namespace Mesh.Client.Tests.Authorization;

public sealed class InboundPolicyStoreTests
{
    private const string Name8080 = "xds.istio.io/grpc/lds/inbound/127.0.0.1:8080";

    [Fact]
    public void Lookup_WorkloadWithoutInboundMeshTraffic_PortIsNotMeshServed()
    {
        var store = new InboundPolicyStore();

        Assert.Equal(InboundPortState.NotMeshServed, store.Lookup(8080, out _));
        Assert.Null(store.PendingReason());
    }

    [Fact]
    public void Lookup_MeshServedWithoutPolicy_NotReceivedOnEveryPort()
    {
        var store = new InboundPolicyStore();
        store.ExpectInbound();
        store.Replace([Policy(9090)]);

        Assert.Equal(InboundPortState.NotReceived, store.Lookup(8080, out var policy));
        Assert.Null(policy);
        Assert.Equal(InboundPortState.Policy, store.Lookup(9090, out policy));
        Assert.Equal(9090, policy!.Port);
    }

    [Fact]
    public void Lookup_PolicyLeftOutOfTheNextPush_RemovedEvenWhenNotMeshServed_UntilItComesBack()
    {
        var store = new InboundPolicyStore();
        store.Replace([Policy(8080)]);
        store.Replace([]);

        Assert.Equal(InboundPortState.Removed, store.Lookup(8080, out _));
        Assert.Equal(PeerAuthenticationMode.Unset, store.GetMode(8080));

        store.Replace([]);
        Assert.Equal(InboundPortState.Removed, store.Lookup(8080, out _));

        store.Replace([Policy(8080)]);
        Assert.Equal(InboundPortState.Policy, store.Lookup(8080, out _));
    }

    [Fact]
    public void PendingReason_NamesNotReceivedThenRemovedListeners()
    {
        var store = new InboundPolicyStore();
        store.ExpectInbound();
        Assert.Contains("its ports are not registered yet", store.PendingReason(), StringComparison.Ordinal);

        Assert.True(store.SetNames([Name8080]));
        Assert.False(store.SetNames([Name8080]));
        Assert.Contains($"of {Name8080} has not arrived yet", store.PendingReason(), StringComparison.Ordinal);

        store.Replace([Policy(8080)]);
        Assert.Null(store.PendingReason());

        store.Replace([]);
        Assert.Contains($"the control plane removed the inbound policy (PeerAuthentication, AuthorizationPolicy) of {Name8080}", store.PendingReason(), StringComparison.Ordinal);
    }

    private static InboundPolicy Policy(int port) => new($"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}", port, PeerAuthenticationMode.Strict, deny: null, allow: null, PathNormalizationOptions.Default);
}
