using Grpc.Core;
using Mesh.Client.Security;
using Mesh.Samples.Inventory.V1;

namespace Mesh.Samples.Inventory;

internal sealed class InventoryService(DemoStats stats) : V1.Inventory.InventoryBase
{
    private int _stock = 1_000_000;

    public override Task<ReserveReply> Reserve(ReserveRequest request, ServerCallContext context)
    {
        stats.RecordRequest();
        if (request.Quantity <= 0)
        {
            stats.RecordError();
            throw new RpcException(new Status(StatusCode.InvalidArgument, "quantity must be positive"));
        }

        var remaining = Interlocked.Add(ref _stock, -request.Quantity);
        var caller = context.GetHttpContext().Features.Get<IMeshPeerIdentityFeature>()?.SpiffeId ?? string.Empty;
        return Task.FromResult(new ReserveReply { Reserved = remaining >= 0, Remaining = remaining, Instance = stats.Instance, Caller = caller });
    }
}
