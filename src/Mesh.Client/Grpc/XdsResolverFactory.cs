using Grpc.Core;
using Grpc.Net.Client.Balancer;

namespace Mesh.Client.Grpc;

/// <summary>
/// Answers <c>xds:///</c> targets of channels built by hand (<c>GrpcChannel.ForAddress("xds:///…", { ServiceProvider })</c>)
/// with a clear UNAVAILABLE: such a channel would balance over addresses with Grpc.Net.Client's own balancer, outside
/// the mesh's routes, retries and mTLS. Mesh channels come from <c>CreateMeshGrpcChannel</c> or <c>AddGrpcClient</c>.
/// </summary>
internal sealed class XdsResolverFactory : ResolverFactory
{
    public override string Name => "xds";

    public override Resolver Create(ResolverOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new RefusingResolver(options.Address);
    }

    private sealed class RefusingResolver(Uri address) : Resolver
    {
        public override void Start(Action<ResolverResult> listener)
        {
            ArgumentNullException.ThrowIfNull(listener);
            listener(ResolverResult.ForFailure(new Status(
                StatusCode.Unavailable,
                $"The gRPC channel to {address} was not created by the service mesh, so its calls would bypass the mesh's routes, retries and mTLS. Create it with IServiceProvider.CreateMeshGrpcChannel(\"{address}\"), or with AddGrpcClient and o.Address = new Uri(\"{address}\").")));
        }

        public override void Refresh()
        {
        }
    }
}
