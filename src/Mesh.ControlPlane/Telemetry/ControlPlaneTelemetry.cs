using System.Diagnostics.Metrics;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;

namespace Mesh.ControlPlane.Telemetry;

/// <summary>The control plane's OpenTelemetry setup: its meter (plus .NET's runtime and ASP.NET Core meters) scraped at <c>/metrics</c>.</summary>
internal static class ControlPlaneTelemetry
{
    public const string ScrapePath = "/metrics";

    // Meters .NET already has: listening to them costs nothing until scraped.
    private static readonly string[] PlatformMeters = ["System.Runtime", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel"];

    public static IServiceCollection AddControlPlaneTelemetry(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton<ControlPlaneMetrics>();
        services.ConfigureOpenTelemetryMeterProvider((sp, builder) =>
        {
            // A meter made by another host's IMeterFactory (several control planes in one test process) has the same
            // name; only this host's own instruments are exported here.
            var factory = sp.GetRequiredService<IMeterFactory>();
            builder.AddView(instrument => instrument.Meter.Scope is IMeterFactory owner && !ReferenceEquals(owner, factory) ? MetricStreamConfiguration.Drop : null);
        });
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(ControlPlaneMetrics.MeterName)
            .AddMeter(PlatformMeters)
            .AddPrometheusExporter(prometheus =>
            {
                // istiod's exporter adds no _total and no unit suffix (pkg/monitoring: WithoutCounterSuffixes, WithoutUnits),
                // and no otel_scope_* labels or target_info (WithoutScopeInfo, WithoutTargetInfo).
                prometheus.TranslationStrategy = PrometheusAspNetCoreTranslationStrategy.UnderscoreEscapingWithoutSuffixes;
                prometheus.ScopeInfoEnabled = false;
                prometheus.TargetInfoEnabled = false;
                // Each scrape sees the values of that moment (the default caches a response for 300 ms).
                prometheus.ScrapeResponseCacheDurationMilliseconds = 0;
            }));
        return services;
    }

    /// <summary>Serves <c>GET /metrics</c> (Prometheus text) on the admin listener only.</summary>
    public static IApplicationBuilder UseControlPlaneMetrics(this IApplicationBuilder app, Func<int> adminPort)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(adminPort);
        return app.UseOpenTelemetryPrometheusScrapingEndpoint(context =>
            context.Request.Path == ScrapePath && HttpMethods.IsGet(context.Request.Method) && context.Connection.LocalPort == adminPort());
    }
}
