using Google.Protobuf.Reflection;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.LeastRequest.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.RoundRobin.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using Mesh.Xds.Wire;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>The shared wire constants are spelled by hand (switch labels need constants); hold them to the protos.</summary>
public class XdsWireTests
{
    public static TheoryData<string, string> TypeUrls => new()
    {
        { XdsWire.ListenerType, Of(Listener.Descriptor) },
        { XdsWire.RouteConfigurationType, Of(RouteConfiguration.Descriptor) },
        { XdsWire.ClusterType, Of(Cluster.Descriptor) },
        { XdsWire.ClusterLoadAssignmentType, Of(ClusterLoadAssignment.Descriptor) },
        { XdsWire.HttpConnectionManagerType, Of(HttpConnectionManager.Descriptor) },
        { XdsWire.RouterType, Of(Router.Descriptor) },
        { XdsWire.RoundRobinType, Of(RoundRobin.Descriptor) },
        { XdsWire.LeastRequestType, Of(LeastRequest.Descriptor) },
        { XdsWire.UpstreamTlsContextType, Of(UpstreamTlsContext.Descriptor) },
    };

    [Theory]
    [MemberData(nameof(TypeUrls))]
    public void TypeUrl_Constant_MatchesTheGeneratedMessage(string constant, string fromDescriptor) =>
        Assert.Equal(fromDescriptor, constant);

    private static string Of(MessageDescriptor descriptor) => "type.googleapis.com/" + descriptor.FullName;
}
