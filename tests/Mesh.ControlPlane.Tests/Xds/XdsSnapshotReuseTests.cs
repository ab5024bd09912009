using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Endpoint.V3;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>A snapshot reuses the previous one's unchanged resources (same instance) and knows which names changed.</summary>
public sealed class XdsSnapshotReuseTests
{
    private static readonly string Moved = ScaleModels.ClusterOf(0);
    private static readonly string Untouched = ScaleModels.ClusterOf(1);

    [Fact]
    public void Translate_OneEndpointMoved_OnlyThatAssignmentIsNewAndListedAsChanged()
    {
        var first = XdsTranslator.Translate(ScaleModels.Mesh(3, 2), 1);
        var firstInbound = first.InboundListeners.ToDictionary(); // built on demand: as the workloads' streams ask for them
        var second = XdsTranslator.Translate(ScaleModels.Mesh(3, 2, moved: 1), 2, previous: first);

        Assert.Same(first.Endpoints[Untouched], second.Endpoints[Untouched]);
        Assert.NotSame(first.Endpoints[Moved], second.Endpoints[Moved]);
        Assert.Equal(8081u, second.Endpoints[Moved].Resource.Unpack<ClusterLoadAssignment>().Endpoints[0].LbEndpoints[0].Endpoint.Address.SocketAddress.PortValue);
        Assert.All(second.Clusters, c => Assert.Same(first.Clusters[c.Key], c.Value));
        Assert.All(second.Routes, r => Assert.Same(first.Routes[r.Key], r.Value));
        Assert.All(second.StandardGrpcRoutes, r => Assert.Same(first.StandardGrpcRoutes[r.Key], r.Value));
        Assert.All(second.InboundListeners.Where(l => l.Key != "xds.istio.io/grpc/lds/inbound/10.0.0.1:8081"), l => Assert.Same(firstInbound[l.Key], l.Value));

        var changes = Assert.IsType<XdsChanges>(second.Changes);
        Assert.Equal(1, changes.PreviousVersion);
        Assert.Equal([Moved], changes.Changed(TypeUrls.ClusterLoadAssignment));
        Assert.Empty(changes.Removed(TypeUrls.ClusterLoadAssignment));
        Assert.True(changes.IsEmpty(TypeUrls.Cluster));
        Assert.True(changes.IsEmpty(TypeUrls.RouteConfiguration));
        Assert.False(changes.ListenerTargetsChanged);

        // The moved workload's own inbound listener is at a new port. Inbound listeners are built when asked for, so they
        // are not listed: connections compare the ones they hold.
        Assert.True(changes.InboundListenersUnknown);
        Assert.Empty(changes.Changed(TypeUrls.Listener));
        Assert.True(second.InboundListeners.ContainsKey("xds.istio.io/grpc/lds/inbound/10.0.0.1:8081"));
        Assert.False(second.InboundListeners.ContainsKey("xds.istio.io/grpc/lds/inbound/10.0.0.1:8080"));
    }

    [Fact]
    public void Translate_ServiceRemoved_ItsNamesRemovedAndTargetsChanged()
    {
        var first = XdsTranslator.Translate(ScaleModels.Mesh(3, 1), 1);
        var second = XdsTranslator.Translate(ScaleModels.Mesh(2, 1), 2, previous: first);

        var changes = second.Changes!;
        var gone = ScaleModels.ClusterOf(2);
        Assert.Equal([gone], changes.Removed(TypeUrls.Cluster));
        Assert.Equal([gone], changes.Removed(TypeUrls.ClusterLoadAssignment));
        Assert.Equal([gone], changes.Removed(TypeUrls.RouteConfiguration));
        Assert.Empty(changes.Changed(TypeUrls.Cluster));
        Assert.True(changes.ListenerTargetsChanged);
    }

    [Fact]
    public void Listener_BuiltInPreviousSnapshot_SameInstanceWhenItsRouteStillExists()
    {
        var first = XdsTranslator.Translate(ScaleModels.Mesh(2, 1), 1);
        var target = first.ResolveListener("svc-0", "default")!;
        var listener = first.Listener("svc-0", target);

        var second = XdsTranslator.Translate(ScaleModels.Mesh(2, 1, moved: 1), 2, previous: first);
        var third = XdsTranslator.Translate(ScaleModels.Mesh(1, 1), 3, previous: second);

        Assert.Same(listener, second.Listener("svc-0", second.ResolveListener("svc-0", "default")!));
        Assert.Same(listener, third.Listener("svc-0", third.ResolveListener("svc-0", "default")!));
    }

    [Fact]
    public void Translate_WithoutPrevious_NoChanges()
    {
        Assert.Null(XdsTranslator.Translate(ScaleModels.Mesh(1, 1), 1).Changes);
    }
}
