using System.Net;
using Mesh.ControlPlane.Admin;
using Mesh.ControlPlane.Admission;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Registry;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Telemetry;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Mesh.ControlPlane;

/// <summary>Builds and runs the control plane; used by <c>Program.Main</c> and by in-process tests.</summary>
internal sealed partial class ControlPlaneHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ControlPlaneHost(WebApplication app, Uri? xdsAddress, Uri adminAddress, Uri secureAddress, Uri? webhookAddress)
    {
        _app = app;
        WebhookAddress = webhookAddress;
        XdsAddress = xdsAddress;
        AdminAddress = adminAddress;
        SecureAddress = secureAddress;
    }

    /// <summary>The bound plaintext ADS address (real port when 0 was configured); null when ControlPlane:XdsAddress is not set.</summary>
    public Uri? XdsAddress { get; }

    /// <summary>The bound admin address (real port when 0 was configured).</summary>
    public Uri AdminAddress { get; }

    /// <summary>The bound TLS address serving ADS, the registry and the CA (real port when 0 was configured).</summary>
    public Uri SecureAddress { get; }

    /// <summary>The bound admission webhook address (real port when 0 was configured); null when ControlPlane:Kubernetes:WebhookAddress is not set.</summary>
    public Uri? WebhookAddress { get; }

    public IServiceProvider Services => _app.Services;

    public string ReadyLine => $"Mesh control plane ready: xds={(XdsAddress is null ? "off" : Format(XdsAddress))} admin={Format(AdminAddress)} secure={Format(SecureAddress)}";

    /// <summary>Validates configuration, binds the secure, admin and (when configured) plaintext ports, loads the config folder and starts serving.</summary>
    public static async Task<ControlPlaneHost> StartAsync(string[] args, Action<IServiceCollection>? configureServices = null, CancellationToken cancellationToken = default)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        var options = ControlPlaneOptions.Load(builder.Configuration);

        ListenOptions? xdsListen = null;
        ListenOptions? adminListen = null;
        ListenOptions? secureListen = null;
        ServerCertificateProvider? serverCertificates = null;
        ListenOptions? webhookListen = null;
        ServerCertificateProvider? webhookCertificates = null;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // Only the ports below: a Kestrel section in the configuration (an app's appsettings.json in the directory the
            // tool runs in, say) must not make the control plane bind that app's endpoints.
            kestrel.Configure(new ConfigurationBuilder().Build(), reloadOnChange: false);
            kestrel.Listen(ControlPlaneOptions.BindAddress(options.SecureAddress), options.SecureAddress.Port, listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                listen.UseHttps(new TlsHandshakeCallbackOptions
                {
                    // Called per handshake, so a renewed server certificate is used without a restart.
                    OnConnection = _ => ValueTask.FromResult(serverCertificates!.CreateSslOptions()),
                });
                secureListen = listen;
            });
            if (options.XdsAddress is { } xdsAddress)
            {
                kestrel.Listen(ControlPlaneOptions.BindAddress(xdsAddress), xdsAddress.Port, listen =>
                {
                    listen.Protocols = HttpProtocols.Http2;
                    xdsListen = listen;
                });
            }
            if (options.Kubernetes.WebhookAddress is { } webhookAddress)
            {
                // The admission webhook: the API server speaks HTTP/1.1 or HTTP/2 to it, with the CA bundle of the webhook configuration.
                kestrel.Listen(ControlPlaneOptions.BindAddress(webhookAddress), webhookAddress.Port, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1AndHttp2;
                    listen.UseHttps(new TlsHandshakeCallbackOptions { OnConnection = _ => ValueTask.FromResult(webhookCertificates!.CreateSslOptions()) });
                    webhookListen = listen;
                });
            }

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
        services.AddControlPlaneTelemetry();
        services.AddSingleton<ConfigStore>();
        services.AddSingleton<WorkloadLeaseRegistry>();
        services.AddSingleton<ConfigDirectoryWatcher>();
        services.AddSingleton<JwksResolver>();
        services.AddSingleton<XdsPublisher>();
        services.AddSingleton<AdsService>();
        services.AddSingleton<WorkloadRegistryService>();
        services.AddSingleton(sp => CertificateAuthority.Load(options, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => BootstrapTokens.Load(options, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<SpentTokens>();
        services.AddSingleton(_ => AdminCredential.LoadOrCreate(options));
        services.AddSingleton<ServerCertificateProvider>();
        services.AddSingleton<CertificateService>();
        services.AddSingleton<CallerAuthentication>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ICallerAuthenticator, ClientCertificateAuthenticator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ICallerAuthenticator, BootstrapTokenAuthenticator>());
        services.AddHostedService(sp => sp.GetRequiredService<ConfigDirectoryWatcher>());
        services.AddHostedService(sp => sp.GetRequiredService<XdsPublisher>());
        services.AddHostedService(sp => sp.GetRequiredService<JwksResolver>());
        services.AddHostedService<LeaseExpiryService>();
        services.AddSingleton<CaExpiryMonitor>();
        services.AddHostedService(sp => sp.GetRequiredService<CaExpiryMonitor>());
        services.AddSingleton<AdsConfigGate>();
        services.AddGrpc().AddServiceOptions<AdsService>(ads => ads.Interceptors.Add<AdsConfigGate>());
        if (options.Kubernetes.Enabled)
        {
            // One client for the whole process (the source's watches, TokenReview, the Lease): the kubeconfig or the in-cluster config.
            services.AddSingleton<k8s.IKubernetes>(_ => new k8s.Kubernetes(options.Kubernetes.ClientConfiguration()));
            services.AddSingleton<KubernetesSource>();
            services.AddHostedService(sp => sp.GetRequiredService<KubernetesSource>());

            // After the bootstrap token: a bearer token that does not claim our issuer is a ServiceAccount token for TokenReview.
            services.TryAddSingleton<PeerReviewLimiter>();
            services.TryAddEnumerable(ServiceDescriptor.Singleton<ICallerAuthenticator, TokenReviewAuthenticator>());

            services.AddSingleton<Kubernetes.ControlPlaneLeaderElection>();
            services.AddHostedService(sp => sp.GetRequiredService<Kubernetes.ControlPlaneLeaderElection>());
            services.AddSingleton<Kubernetes.SharedCaSecret>();
        }

        if (options.Kubernetes.WebhookAddress is not null)
        {
            services.AddSingleton<AdmissionWebhook>();
        }

        configureServices?.Invoke(services);

        var app = builder.Build();
        if (options.Kubernetes.Enabled && options.Ca.CertificateFile is null)
        {
            // Replicas must sign under one root: it comes from the Secret mesh-ca, made once by the Lease holder.
            await app.Services.GetRequiredService<Kubernetes.SharedCaSecret>().EnsureAsync(cancellationToken);
        }

        // Load the CA and token key before binding: a bad CA setup must fail startup, not the first handshake.
        var ca = app.Services.GetRequiredService<CertificateAuthority>();
        app.Services.GetRequiredService<BootstrapTokens>();
        app.Services.GetRequiredService<SpentTokens>();
        var adminCredential = app.Services.GetRequiredService<AdminCredential>();
        if (options.Kubernetes.Enabled)
        {
            // A missing or broken kubeconfig fails startup, naming the setting.
            app.Services.GetRequiredService<k8s.IKubernetes>();

            // Before any hosted service starts: the folder loading first must not make the control plane ready without Kubernetes.
            var source = app.Services.GetRequiredService<KubernetesSource>();
            app.Services.GetRequiredService<ConfigStore>().RequireKubernetes(source.WaitingFor);
        }

        serverCertificates = app.Services.GetRequiredService<ServerCertificateProvider>();
        _ = serverCertificates.Current;
        if (options.Kubernetes.WebhookAddress is not null)
        {
            webhookCertificates = ServerCertificateProvider.ForWebhook(
                ca, app.Services.GetRequiredService<TimeProvider>(), app.Services.GetRequiredService<ILogger<ServerCertificateProvider>>(), options.Kubernetes.WebhookDnsName);
            _ = webhookCertificates.Current;
        }
        var startupLogger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<ControlPlaneHost>();
        LogCaReady(startupLogger, ca.CreatedRoot ? "created" : "loaded", ca.SigningCertificate.Subject, ca.Roots.Count);
        if (options.Ca.CaCertsDirectory is { } caCerts)
        {
            LogCaCerts(startupLogger, caCerts, options.Ca.FromCaCerts ? $"signing CA {options.Ca.CertificateFile}" : "no ca-key.pem or tls.key there: the self-signed root");
        }

        LogAdminCredential(startupLogger, adminCredential.Created ? "created" : "loaded", adminCredential.Path);
        var store = app.Services.GetRequiredService<ConfigStore>();
        var registry = app.Services.GetRequiredService<WorkloadLeaseRegistry>();
        registry.Changed += () => store.SetRegistrations(registry.Workloads());
        registry.LoadState();

        if (options.Kubernetes.WebhookAddress is not null)
        {
            // The webhook port serves POST /validate and nothing else (not the CA, ADS or the bundle, which also answer any HTTPS port).
            var webhookPort = () => webhookListen?.IPEndPoint?.Port ?? options.Kubernetes.WebhookAddress.Port;
            app.Use((context, next) =>
                context.Connection.LocalPort != webhookPort() || context.Request.Path.Equals(AdmissionWebhook.Path, StringComparison.Ordinal)
                    ? next(context)
                    : Results.NotFound().ExecuteAsync(context));
            AdmissionWebhook.Map(app, webhookPort);
        }

        app.UseControlPlaneMetrics(() => adminListen?.IPEndPoint?.Port ?? options.AdminAddress.Port);
        app.MapGrpcService<AdsService>();
        app.MapGrpcService<WorkloadRegistryService>();
        app.MapGrpcService<CertificateService>();
        AdminEndpoints.Map(app, () => adminListen?.IPEndPoint?.Port ?? options.AdminAddress.Port);
        if (options.Kubernetes.Enabled)
        {
            Kubernetes.ControlPlaneLeaderElection.MapDebug(app, () => adminListen?.IPEndPoint?.Port ?? options.AdminAddress.Port);
        }

        await app.StartAsync(cancellationToken);
        app.Services.GetRequiredService<XdsPublisher>().Rebuild();

        var xds = options.XdsAddress is null ? null : Bound(options.XdsAddress, xdsListen);
        var admin = Bound(options.AdminAddress, adminListen);
        var secure = Bound(options.SecureAddress, secureListen);
        var webhook = options.Kubernetes.WebhookAddress is null ? null : Bound(options.Kubernetes.WebhookAddress, webhookListen);
        return new ControlPlaneHost(app, xds, admin, secure, webhook);
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

    [LoggerMessage(EventId = 1, EventName = "LogCaReady", Level = LogLevel.Information, Message = "CA {Action}: signing with '{Subject}', trust bundle holds {RootCount} root(s)")]
    private static partial void LogCaReady(ILogger logger, string action, string subject, int rootCount);

    [LoggerMessage(EventId = 3, EventName = "CaCertsDirectory", Level = LogLevel.Information, Message = "ControlPlane:Ca:CaCertsDirectory {Directory}: {Outcome}")]
    private static partial void LogCaCerts(ILogger logger, string directory, string outcome);

    // The path only: the secret itself is never logged.
    [LoggerMessage(EventId = 2, EventName = "LogAdminCredential", Level = LogLevel.Information, Message = "Admin credential {Action}: {Path} (POST /tokens needs 'Authorization: Bearer <its content>')")]
    private static partial void LogAdminCredential(ILogger logger, string action, string path);
}
