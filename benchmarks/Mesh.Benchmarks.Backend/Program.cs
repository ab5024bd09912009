// The fixed backend of the end-to-end load run: a tiny plain-text answer, no mesh, minimal logging.
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
var app = builder.Build();
app.MapGet("/", () => "ok");
app.Run();
