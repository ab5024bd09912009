using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Mesh.Samples;

/// <summary>
/// The sample services' telemetry, set up the way an Aspire <c>ServiceDefaults</c> project does it: one OpenTelemetry
/// SDK per process, a Prometheus scrape endpoint always, and OTLP export when the standard
/// <c>OTEL_EXPORTER_OTLP_*</c> settings ask for it.
/// </summary>
public static class DemoTelemetryExtensions
{
    /// <summary>The Prometheus scrape path on every sample service (and the control plane's admin port).</summary>
    public const string ScrapePath = "/metrics";

    /// <summary>The standard OTLP endpoint setting; OTLP export is on only when it is set (as in Aspire's ServiceDefaults).</summary>
    public const string OtlpEndpointKey = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>The standard OTLP protocol setting: <c>grpc</c> (the default) or <c>http/protobuf</c>.</summary>
    public const string OtlpProtocolKey = "OTEL_EXPORTER_OTLP_PROTOCOL";

    // .NET's built-in meters: ASP.NET Core (http.server.request.duration, …), Kestrel, HttpClient
    // (http.client.request.duration, …) and DNS. Contrib's AddAspNetCoreInstrumentation/AddHttpClientInstrumentation
    // for metrics do no more than AddMeter these names on .NET 8+.
    private static readonly string[] Meters =
    [
        "Microsoft.AspNetCore.Hosting",
        "Microsoft.AspNetCore.Server.Kestrel",
        "System.Net.Http",
        "System.Net.NameResolution",
    ];

    // ActivitySources besides the mesh's own (AddServiceMeshInstrumentation): ASP.NET Core's server span, HttpClient's
    // client span, gRPC's client span.
    private static readonly string[] ActivitySources = ["Microsoft.AspNetCore", "System.Net.Http", "Grpc.Net.Client"];

    /// <summary>
    /// Adds OpenTelemetry metrics and traces for <paramref name="service"/> (resource <c>service.name</c>; the instance
    /// id is <c>DEMO_INSTANCE</c>), the Prometheus exporter behind <see cref="MapDemoTelemetry"/>, and OTLP export of
    /// traces, metrics and logs when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set.
    /// </summary>
    /// <exception cref="InvalidOperationException">An OTLP setting is invalid; the message names its key.</exception>
    public static IHostApplicationBuilder AddDemoTelemetry(this IHostApplicationBuilder builder, string service)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(service);
        var otlp = ValidateOtlpSettings(builder.Configuration[OtlpEndpointKey], builder.Configuration[OtlpProtocolKey]);

        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(
                serviceName: service,
                serviceInstanceId: builder.Configuration["DEMO_INSTANCE"] ?? $"{service}-{Environment.ProcessId}"))
            .WithMetrics(metrics => metrics
                .AddServiceMeshInstrumentation()

                // Room for both reporters' label sets (the mesh folds at 1,024 each) under OpenTelemetry's default of 2,000
                // per instrument, past which a set loses Istio's labels (docs/telemetry/metrics.md).
                .AddView("istio_*", new MetricStreamConfiguration { CardinalityLimit = Mesh.Client.Telemetry.MeshTelemetry.IstioCardinalityLimit })
                .AddMeter(Meters)
                .AddPrometheusExporter(options =>
                {
                    // Istio's names must come out unchanged so that its Grafana dashboards and Kiali work. Checked against
                    // OpenTelemetry.Exporter.Prometheus.AspNetCore 1.20.1-beta.1's PrometheusAspNetCoreOptions (its XML docs):
                    // - ScopeInfoEnabled (default true) adds otel_scope_name/_version/_schema_url labels to every series, and
                    //   TargetInfoEnabled (default true) adds a target_info metric; istiod exports neither (WithoutScopeInfo,
                    //   WithoutTargetInfo), so both are off here.
                    // - TranslationStrategy stays UnderscoreEscapingWithSuffixes (the default), which appends a unit or _total
                    //   only when the name does not already end with it: the counter istio_requests_total and the histogram
                    //   istio_request_duration_milliseconds (unit ms) come out as they are, while .NET's
                    //   http.server.request.duration (unit s) becomes http_server_request_duration_seconds as Prometheus users
                    //   expect. UnderscoreEscapingWithoutSuffixes (istiod's own style) would drop those suffixes from .NET's
                    //   metrics; DisableTotalNameSuffixForCounters (default false) would drop _total from counters named
                    //   without it. The test DemoTelemetryTests.ScrapeEndpoint_KeepsIstioNamesUnchanged checks the output.
                    options.ScopeInfoEnabled = false;
                    options.TargetInfoEnabled = false;
                }));

        if (otlp)
        {
            // Traces only where they go somewhere: without an exporter every request would build spans nothing reads.
            telemetry.WithTracing(tracing => tracing.AddServiceMeshInstrumentation().AddSource(ActivitySources));

            // UseOtlpExporter reads OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL (and _HEADERS, per-signal overrides) from
            // configuration. Its span and log exporters sit behind batch processors and metrics behind a periodic reader:
            // a request only enqueues (a bounded queue, 2048 spans by default, dropping when full); exports run on their own
            // thread, so an OTLP endpoint that is down or slow never blocks a request (DemoTelemetryTests checks both).
            telemetry.UseOtlpExporter();

            // The exporter reports a failed export only on its EventSource: say so in the app's log, rate-limited.
            var endpoint = builder.Configuration[OtlpEndpointKey]!;
            builder.Services.AddSingleton(services => new OtlpExportFailureLog(
                services.GetRequiredService<ILogger<OtlpExportFailureLog>>(), endpoint, services.GetService<TimeProvider>()));
            builder.Services.AddHostedService(services => services.GetRequiredService<OtlpExportFailureLog>());
        }

        return builder;
    }

    /// <summary>
    /// Maps the Prometheus scrape endpoint <c>/metrics</c>, out of HTTP metrics: scrapes are not the service's traffic
    /// (ASP.NET Core's request metrics and the mesh's Istio series both leave them out, as Istio's agent answers them).
    /// </summary>
    public static WebApplication MapDemoTelemetry(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapPrometheusScrapingEndpoint(ScrapePath).DisableHttpMetrics();
        return app;
    }

    /// <summary>Returns whether OTLP export is configured; throws, naming the key, when a setting is invalid.</summary>
    private static bool ValidateOtlpSettings(string? endpoint, string? protocol)
    {
        if (protocol is not null && protocol is not ("grpc" or "http/protobuf"))
        {
            throw new InvalidOperationException(
                $"{OtlpProtocolKey} is '{protocol}'; use 'grpc' or 'http/protobuf' (OTLP's http/json is not supported by OpenTelemetry .NET).");
        }

        if (string.IsNullOrWhiteSpace(endpoint))
        {
            return false;
        }

        if (!Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new InvalidOperationException(
                $"{OtlpEndpointKey} is '{endpoint}'; it must be an absolute http:// or https:// URI, e.g. http://127.0.0.1:4317 (gRPC) or http://127.0.0.1:4318 (http/protobuf).");
        }

        return true;
    }
}
