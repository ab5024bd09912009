var builder = WebApplication.CreateBuilder(args);
builder.AddSidecarTcpTunnels();
var app = builder.Build();
await app.RunAsync().ConfigureAwait(false);
