using Mesh.Client.Authorization;
using Mesh.Client.Security;

namespace Mesh.Client.Tests.Authorization;

public sealed class InboundPolicyStoreLeavingTests
{
    [Fact]
    public void Replace_WithdrawnWhileInTheMesh_PortFailsClosed()
    {
        var store = new InboundPolicyStore(meshServed: true);
        store.Replace([Policy(15006)]);

        store.Replace([]);

        Assert.Equal(InboundPortState.Removed, store.Lookup(15006, out _));
    }

    [Fact]
    public void Replace_WithdrawnWhileLeaving_KeepsTheLastPolicyForTheDrain()
    {
        var store = new InboundPolicyStore(meshServed: true);
        var policy = Policy(15006);
        store.Replace([policy]);

        store.BeginLeaving();
        store.Replace([]);

        Assert.Equal(InboundPortState.Policy, store.Lookup(15006, out var kept));
        Assert.Same(policy, kept);
    }

    [Fact]
    public void Replace_UpdatedWhileLeaving_TakesTheNewPolicy()
    {
        var store = new InboundPolicyStore(meshServed: true);
        store.Replace([Policy(15006)]);
        store.BeginLeaving();
        var updated = Policy(15006, PeerAuthenticationMode.Strict);

        store.Replace([updated]);

        Assert.Equal(InboundPortState.Policy, store.Lookup(15006, out var current));
        Assert.Same(updated, current);
    }

    private static InboundPolicy Policy(int port, PeerAuthenticationMode mode = PeerAuthenticationMode.Permissive) =>
        new($"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}", port, mode, deny: null, allow: null, PathNormalizationOptions.Default);
}
