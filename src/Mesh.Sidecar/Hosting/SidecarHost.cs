using Mesh.Sidecar.Admin;
using Mesh.Sidecar.Inbound;
using Mesh.Sidecar.Outbound;
using Mesh.Sidecar.Tcp;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace Mesh.Sidecar.Hosting;

/// <summary>Puts the sidecar together: configuration, the mesh, the three HTTP listeners and their pipelines.</summary>
internal static class SidecarHost
{
    /// <summary>The Prometheus scrape path on the admin port (Envoy's).</summary>
    public const string ScrapePath = "/stats/prometheus";

    /// <summary>Runs the sidecar until SIGTERM; returns the process exit code (2 for invalid configuration).</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        try
        {
            var app = Build(args);
            await using (app.ConfigureAwait(false))
            {
                // Process-wide, so here rather than in Build (which tests call in-process): before the host opens a socket.
                SidecarInlineIo.ApplyToProcess(app.Services.GetRequiredService<SidecarOptions>().InlineIo);
                await app.RunAsync().ConfigureAwait(false);
            }

            return 0;
        }
        catch (SidecarConfigurationException e)
        {
            await Console.Error.WriteLineAsync(e.Message).ConfigureAwait(false);
            return 2;
        }
        catch (OptionsValidationException e)
        {
            await Console.Error.WriteLineAsync("Invalid mesh configuration:\n  " + string.Join("\n  ", e.Failures)).ConfigureAwait(false);
            return 2;
        }
    }

    /// <summary>Builds the sidecar from its flags and the environment.</summary>
    /// <exception cref="SidecarConfigurationException">The <c>Sidecar</c> section is invalid; the message names every bad key.</exception>
    public static WebApplication Build(string[] args)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args });

        // A proxy logs per request only when asked: ASP.NET Core's hosting logs two Information lines per request (half the
        // sidecar's CPU per request in the --sidecar load run), YARP one. Defaults under every other source, so
        // Logging__LogLevel__* in the environment or flags still decide.
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource
        {
            InitialData = new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Default"] = "Information",
                ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
                ["Logging:LogLevel:Yarp"] = "Warning",

                // A full console queue drops lines (and says how many) rather than block the thread that logs, which with
                // Sidecar:InlineIo is a socket event thread carrying other connections.
                ["Logging:Console:QueueFullMode"] = "DropWrite",
            },
        });
        builder.Configuration.AddCommandLine(args, SidecarCommandLine.SwitchMappings.ToDictionary());
        var errors = new List<string>();
        var options = SidecarOptionsReader.Read(builder.Configuration, errors);
        var tcp = SidecarTcpOptions.Read(builder.Configuration, errors);
        SidecarPortCheck.Check(options, builder.Configuration, errors);
        if (errors.Count > 0)
        {
            throw new SidecarConfigurationException(errors);
        }

        SidecarInlineIo.ApplyToKestrel(builder, options.InlineIo);
        Configure(builder, options);
        builder.AddSidecarTcpTunnels(tcp, options.InboundAddress);
        var app = builder.Build();
        MapPipeline(app);
        return app;
    }

    private static void Configure(WebApplicationBuilder builder, SidecarOptions options)
    {
        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton<SidecarListeners>();
        services.AddSingleton<SidecarDrainState>();
        services.AddHttpForwarder();

        // The sidecar's inbound ports are mesh-served (fail closed until their policy arrives) exactly when it opens them:
        // an outbound-only sidecar has no inbound policy to wait for. Before AddServiceMesh, whose registration is TryAdd.
        services.AddSingleton(sp =>
        {
            var mesh = sp.GetRequiredService<IOptions<Mesh.Client.ServiceMeshOptions>>().Value;
            return new Mesh.Client.Authorization.InboundPolicyStore(mesh.ControlPlane.IsSecure && SidecarListeners.OpensInbound(mesh));
        });

        // Before Listen below: the mesh's Kestrel setup gives every endpoint created after it the mesh inbound.
        builder.AddServiceMesh();
        services.AddHealthChecks().AddCheck<AppHealthCheck>(AppHealthCheck.Name, tags: [ReadinessEndpoint.ReadyTag]);
        services.AddSingleton<AppHealthCheck>();
        services.AddSingleton<Mesh.Client.Registration.IWorkloadRegistrationGate, AppRegistrationGate>();
        services.AddSingleton<InboundForwarder>();
        services.AddSingleton<OutboundProxy>();
        services.AddSingleton<ReadinessEndpoint>();
        services.AddHostedService<SidecarDrainService>();
        services.Configure<HostOptions>(host => host.ShutdownTimeout = options.DrainDuration + TimeSpan.FromSeconds(30));
        services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddServiceMeshInstrumentation()

            // Both reporters and the TCP series: room above OpenTelemetry's 2,000 label sets per instrument (metrics.md).
            .AddView("istio_*", new MetricStreamConfiguration { CardinalityLimit = Mesh.Client.Telemetry.MeshTelemetry.IstioCardinalityLimit })
            .AddPrometheusExporter(prometheus =>
            {
                // Istio's metric names come out unchanged, without the scope labels and target_info istiod does not export.
                prometheus.ScopeInfoEnabled = false;
                prometheus.TargetInfoEnabled = false;
            }));

        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var listeners = kestrel.ApplicationServices.GetRequiredService<SidecarListeners>();
            kestrel.AddServerHeader = false;

            // h2c requests carry :scheme http on a connection that CleartextHttp2Detection marked as negotiated h2.
            kestrel.AllowAlternateSchemes = true;

            // An absolute-form target's host replaces the Host header, as RFC 9112 §3.2.2 asks of a proxy and Envoy's codec
            // does, rather than a 400 whenever they differ in any way: Kestrel compares Host with the target's lower-cased
            // authority, so GET http://ORDERS/x with Host: ORDERS was refused though hosts are case-insensitive (found in
            // review). Framing checks are untouched, and everything after Kestrel (routing, policy, the app) sees one host.
            kestrel.AllowHostHeaderOverride = true;
            kestrel.Limits.MaxRequestBodySize = null; // a proxy streams bodies; the app sets its own limit
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(15);
            kestrel.Limits.MaxRequestHeadersTotalSize = 64 * 1024; // over it: 431
            kestrel.Limits.MaxRequestLineSize = 16 * 1024;

            // The mesh port first: Mesh.Client registers the first mesh endpoint as the workload's "http" port.
            if (SidecarListeners.OpensInbound(kestrel.ApplicationServices.GetRequiredService<IOptions<Mesh.Client.ServiceMeshOptions>>().Value))
            {
                kestrel.Listen(options.InboundAddress, options.InboundPort, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1AndHttp2;
                    listeners.Inbound = listen;
                });
            }
            kestrel.Listen(System.Net.IPAddress.Loopback, options.OutboundPort, listen =>
            {
                // HTTP/1.1, and h2c with prior knowledge (gRPC clients), which Kestrel does not detect by itself on cleartext.
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.ExcludeFromServiceMesh();
                listen.Use(CleartextHttp2Detection.Middleware(kestrel.Limits.RequestHeadersTimeout));
                listeners.Outbound = listen;
            });
            kestrel.Listen(options.AdminAddress, options.AdminPort, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                listen.ExcludeFromServiceMesh();
                listeners.Admin = listen;
            });
        });
    }

    private static void MapPipeline(WebApplication app)
    {
        var listeners = app.Services.GetRequiredService<SidecarListeners>();
        var inbound = app.Services.GetRequiredService<InboundForwarder>();
        var outbound = app.Services.GetRequiredService<OutboundProxy>();
        var readiness = app.Services.GetRequiredService<ReadinessEndpoint>();
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            foreach (var line in listeners.StartupLines())
            {
                Console.Out.WriteLine(line);
            }

            Console.Out.Flush();
        });

        app.UseOpenTelemetryPrometheusScrapingEndpoint(
            context => context.Request.Path == ScrapePath && listeners.Of(context) == SidecarListener.Admin);
        app.Run(context => IsAmbiguouslyFramed(context.Request) || UnsupportedTransferCoding(context.Request) is not null ? RejectFramingAsync(context) : listeners.Of(context) switch
        {
            SidecarListener.Inbound => inbound.InvokeAsync(context),
            SidecarListener.Outbound => outbound.InvokeAsync(context),
            _ => context.Request.Path == ReadinessEndpoint.Path ? readiness.InvokeAsync(context) : NotFoundAsync(context),
        });
    }

    /// <summary>
    /// Content-Length together with Transfer-Encoding: Kestrel reads the body as chunked (RFC 9112 §6.3) and renames the
    /// Content-Length header to X-Content-Length, but a request framed two ways is the shape of request smuggling, which
    /// a proxy must not pass on in any form: 400.
    /// </summary>
    internal static bool IsAmbiguouslyFramed(HttpRequest request) =>
        request.Headers.ContainsKey("Transfer-Encoding")
        && (request.Headers.ContainsKey("Content-Length") || request.Headers.ContainsKey("X-Content-Length"));

    /// <summary>
    /// A Transfer-Encoding other than exactly <c>chunked</c> (e.g. <c>gzip, chunked</c>): Kestrel undoes only the chunking
    /// and YARP does not forward the header, so the other coding would be dropped silently. A server answers a transfer
    /// coding it does not understand with 501 (RFC 9112 §6.1); returns the coding, else null.
    /// </summary>
    internal static string? UnsupportedTransferCoding(HttpRequest request)
    {
        var codings = request.Headers.TransferEncoding;
        if (codings.Count == 0)
        {
            return null;
        }

        var value = string.Join(", ", codings.Select(v => v?.Trim()));
        return value.Equals("chunked", StringComparison.OrdinalIgnoreCase) ? null : value;
    }

    private static Task RejectFramingAsync(HttpContext context)
    {
        if (UnsupportedTransferCoding(context.Request) is { } coding)
        {
            return RejectAsync(context, StatusCodes.Status501NotImplemented,
                $"Transfer-Encoding '{coding}' is not supported: the sidecar accepts only 'chunked' (send a content coding such as gzip as Content-Encoding).\n");
        }

        return RejectAsync(context, StatusCodes.Status400BadRequest, "The request has both Content-Length and Transfer-Encoding; send one.\n");
    }

    private static Task RejectAsync(HttpContext context, int status, string body)
    {
        context.Response.StatusCode = status;
        context.Response.Headers.Connection = "close";
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(body, context.RequestAborted);
    }

    private static Task NotFoundAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync($"The admin port serves {ReadinessEndpoint.Path} and {ScrapePath}.\n", context.RequestAborted);
    }
}

/// <summary>The <c>Sidecar</c> configuration is invalid; the message names every bad key.</summary>
internal sealed class SidecarConfigurationException(IReadOnlyList<string> errors)
    : Exception("Invalid sidecar configuration:\n  " + string.Join("\n  ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
