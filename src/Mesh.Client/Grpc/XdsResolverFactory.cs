using Grpc.Net.Client.Balancer;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;

namespace Mesh.Client.Grpc;

/// <summary>Resolves <c>xds:///service</c> and <c>xds:///service:port</c> gRPC channel addresses from the mesh snapshot.</summary>
internal sealed class XdsResolverFactory : ResolverFactory
{
    private readonly IMeshSnapshotSource _source;
    private readonly MeshHostNames _names;
    private readonly TimeProvider _time;

    public XdsResolverFactory(IMeshSnapshotSource source, MeshHostNames names, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(time);
        _source = source;
        _names = names;
        _time = time;
    }

    public override string Name => "xds";

    public override Resolver Create(ResolverOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new XdsResolver(options.Address, _source, _names, _time);
    }
}
