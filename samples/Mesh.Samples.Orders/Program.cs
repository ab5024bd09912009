using Grpc.Core;
using Mesh.Client.Security;
using Mesh.Samples;
using Mesh.Samples.Inventory.V1;

// orders: an HTTP API; each order reserves stock in inventory over gRPC, balanced per call by the mesh.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceMesh(mesh => mesh.Service ??= "orders");
var stats = builder.AddDemoStats("orders");
builder.AddDemoTelemetry("orders");
// Each gRPC call is one HTTP/2 request through the mesh: balanced per call, mTLS to inventory's SPIFFE identity.
builder.Services.AddGrpcClient<Inventory.InventoryClient>(options => options.Address = new Uri("http://inventory"));

var app = builder.Build();
app.MapGet("/orders/{id:int}", async (int id, HttpContext context, Inventory.InventoryClient inventory, CancellationToken cancellationToken) =>
{
    stats.RecordRequest();
    try
    {
        var reply = await inventory.ReserveAsync(
            new ReserveRequest { Sku = $"sku-{id % 10}", Quantity = 1 },
            deadline: DateTime.UtcNow.AddSeconds(10),
            cancellationToken: cancellationToken);
        // caller: who called, as mTLS authenticated them (a mesh client, or the sidecar of a non-.NET app).
        var caller = context.Features.Get<IMeshPeerIdentityFeature>()?.SpiffeId;
        return Results.Json(new { order = id, orders = stats.Instance, inventory = reply.Instance, reserved = reply.Reserved, caller });
    }
    catch (RpcException e)
    {
        stats.RecordError();
        return Results.Problem($"inventory failed: {e.Status}", statusCode: StatusCodes.Status502BadGateway);
    }
});
app.MapDelete("/orders/{id:int}", (int id) =>
{
    stats.RecordRequest();
    return Results.Json(new { cancelled = id, orders = stats.Instance });
});
app.MapDemoEndpoints();
app.MapDemoTelemetry();
app.Run();
