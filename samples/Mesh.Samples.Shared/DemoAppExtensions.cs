using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.Samples;

public static class DemoAppExtensions
{
    /// <summary>Registers <see cref="DemoStats"/> named after <c>DEMO_INSTANCE</c> (default: service-pid).</summary>
    public static DemoStats AddDemoStats(this IHostApplicationBuilder builder, string service)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var instance = builder.Configuration["DEMO_INSTANCE"] ?? $"{service}-{Environment.ProcessId}";
        var stats = new DemoStats(service, instance);
        builder.Services.AddSingleton(stats);
        return stats;
    }

    /// <summary>Maps <c>/_stats</c> and the readiness endpoint <c>/healthz/ready</c> (includes the <c>mesh</c> check).</summary>
    public static WebApplication MapDemoEndpoints(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGet("/_stats", (DemoStats stats) => Results.Json(stats.Snapshot()));
        app.MapHealthChecks("/healthz/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains("ready") });
        return app;
    }
}
