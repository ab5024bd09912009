// The fixed backend of the end-to-end load run: a tiny plain-text answer, minimal logging. With Mesh__…
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
var app = builder.Build();
app.MapGet("/", () => "ok");
app.Run();
