using Grpc.Core;
using Mesh.Benchmarks.V1;

// The fixed backend of the end-to-end load run: a tiny plain-text answer on GET /, and the unary Echo/Ping gRPC call
// (the gRPC run starts it with Kestrel__EndpointDefaults__Protocols=Http2 for h2c). Minimal logging. With Mesh__…
// settings (the --mtls run) it joins the mesh as a workload, so callers reach it over mesh mTLS.
var builder = WebApplication.CreateSlimBuilder(args);
if (builder.Configuration["Mesh:ControlPlane:Address"] is not null)
{
    builder.AddServiceMesh();
}

builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
builder.Services.AddGrpc();
var app = builder.Build();
app.MapGet("/", () => "ok");
app.MapGrpcService<EchoService>();
app.Run();

internal sealed class EchoService : Echo.EchoBase
{
    private static readonly Task<PingReply> Pong = Task.FromResult(new PingReply { Text = "pong" });

    public override Task<PingReply> Ping(PingRequest request, ServerCallContext context) => Pong;
}
