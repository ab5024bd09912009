using System.Net;
using Mesh.ControlPlane.Admin;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Registry;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Mesh.ControlPlane;

/// <summary>Builds and runs the control plane; used by <c>Program.Main</c> and by in-process tests.</summary>
internal sealed class ControlPlaneHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ControlPlaneHost(WebApplication app, Uri xdsAddress, Uri adminAddress)
    {
        _app = app;
        XdsAddress = xdsAddress;
        AdminAddress = adminAddress;
    }

    /// <summary>The bound ADS + registry address (real port when 0 was configured).</summary>
    public Uri XdsAddress { get; }

    /// <summary>The bound admin address (real port when 0 was configured).</summary>
    public Uri AdminAddress { get; }

    public IServiceProvider Services => _app.Services;

    public string ReadyLine => $"Mesh control plane ready: xds={Format(XdsAddress)} admin={Format(AdminAddress)}";

    /// <summary>Validates configuration, binds both ports, loads the config folder and starts serving.</summary>
    public static async Task<ControlPlaneHost> StartAsync(string[] args, Action<IServiceCollection>? configureServices = null, CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        var options = ControlPlaneOptions.Load(builder.Configuration);

        ListenOptions? xdsListen = null;
        ListenOptions? adminListen = null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(ControlPlaneOptions.BindAddress(options.XdsAddress), options.XdsAddress.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                xdsListen = listen;
            });
            kestrel.Listen(ControlPlaneOptions.BindAddress(options.AdminAddress), options.AdminAddress.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                adminListen = listen;
            });
        });

        // stdout carries only the ready line; logs go to stderr.
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<ConfigStore>();
        services.AddSingleton<WorkloadLeaseRegistry>();
        services.AddSingleton<ConfigDirectoryWatcher>();
        services.AddSingleton<XdsPublisher>();
        services.AddSingleton<AdsService>();
        services.AddSingleton<WorkloadRegistryService>();
        services.AddHostedService(sp => sp.GetRequiredService<ConfigDirectoryWatcher>());
        services.AddHostedService(sp => sp.GetRequiredService<XdsPublisher>());
        services.AddHostedService<LeaseExpiryService>();
        services.AddGrpc();
        configureServices?.Invoke(services);

        var app = builder.Build();
        var store = app.Services.GetRequiredService<ConfigStore>();
        var registry = app.Services.GetRequiredService<WorkloadLeaseRegistry>();
        registry.Changed += () => store.SetRegistrations(registry.Workloads());
        registry.LoadState();

        app.MapGrpcService<AdsService>();
        app.MapGrpcService<WorkloadRegistryService>();
        AdminEndpoints.Map(app, () => adminListen?.IPEndPoint?.Port ?? options.AdminAddress.Port);

        await app.StartAsync(cancellationToken);
        app.Services.GetRequiredService<XdsPublisher>().Rebuild();

        var xds = Bound(options.XdsAddress, xdsListen);
        var admin = Bound(options.AdminAddress, adminListen);
        return new ControlPlaneHost(app, xds, admin);
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private static Uri Bound(Uri configured, ListenOptions? listen)
    {
        var port = listen?.IPEndPoint?.Port ?? configured.Port;
        return new UriBuilder(configured) { Port = port }.Uri;
    }

    private static string Format(Uri uri) => uri.GetLeftPart(UriPartial.Authority);
}
