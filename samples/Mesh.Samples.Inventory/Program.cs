using Mesh.Samples;
using Mesh.Samples.Inventory;

// inventory: a gRPC service that orders calls through the mesh. HTTP/2 only (appsettings.json:
// Kestrel:EndpointDefaults:Protocols), so plaintext callers use h2c and mTLS callers negotiate h2.
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceMesh(mesh => mesh.Service ??= "inventory");
builder.AddDemoStats("inventory");
builder.AddDemoTelemetry("inventory");
builder.Services.AddGrpc();

var app = builder.Build();
app.MapGrpcService<InventoryService>();
app.MapDemoEndpoints();
app.MapDemoTelemetry();
app.Run();
