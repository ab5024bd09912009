using Mesh.Samples;
using Mesh.Samples.Inventory;
using Microsoft.AspNetCore.Server.Kestrel.Core;

// inventory: a gRPC service (HTTP/2 without TLS) that orders calls through the mesh.
var builder = WebApplication.CreateBuilder(args);
builder.WebHost.ConfigureKestrel(kestrel => kestrel.ConfigureEndpointDefaults(endpoint => endpoint.Protocols = HttpProtocols.Http2));
builder.AddServiceMesh(mesh => mesh.Service ??= "inventory");
builder.AddDemoStats("inventory");
builder.Services.AddGrpc();

var app = builder.Build();
app.MapGrpcService<InventoryService>();
app.MapDemoEndpoints();
app.Run();
