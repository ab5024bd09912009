using System.Diagnostics;
using System.Net;
using Grpc.Core;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Inventory.V1;
using Mesh.Samples.Processes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// The sidecar tests' parts: the sidecar as a real process (LaunchableApps "mesh-sidecar"), a "non-.NET" app played by
/// a plain Kestrel server on 127.0.0.1 that knows nothing of the mesh, curl as the app's HTTP client, config files.
/// </summary>
internal static class SidecarKit
{
    /// <summary>A mesh service for apps behind sidecars: <paramref name="service"/> on port 80 (HTTP) or 50051 (GRPC).</summary>
    public static void WriteServiceEntry(LocalMesh mesh, string service, bool grpc = false) =>
        File.WriteAllText(Path.Combine(mesh.ConfigDirectory, $"{service}.yaml"), $$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: {{service}}, namespace: default}
            spec:
              hosts: [{{service}}.default.svc.cluster.local]
              ports:
                - {number: {{(grpc ? 50051 : 80)}}, name: {{(grpc ? "grpc" : "http")}}, protocol: {{(grpc ? "GRPC" : "HTTP")}}}
              resolution: STATIC
              workloadSelector:
                labels: {app: {{service}}}
            """);

    public static void WriteConfig(LocalMesh mesh, string name, string yaml) =>
        File.WriteAllText(Path.Combine(mesh.ConfigDirectory, name), yaml);

    /// <summary>Starts a sidecar for <paramref name="service"/> in front of the app on <paramref name="appPort"/>, all ports ephemeral on 127.0.0.1.</summary>
    public static async Task<SidecarProcess> StartSidecarAsync(LocalMesh mesh, string service, string instance, int appPort, params string[] extraArgs)
    {
        var environment = mesh.ControlPlane.SecureEnvironment(await mesh.ControlPlane.MintTokenAsync(service));
        environment["Mesh__Service"] = service;
        return await SidecarProcesses.StartSidecarAsync(Repository.App("mesh-sidecar"), instance, appPort, environment, args: extraArgs);
    }

    /// <summary>Waits until the sidecar's /healthz/ready answers 200 (synced, certified, policy received, app answering).</summary>
    public static async Task WaitReadyAsync(SidecarProcess sidecar)
    {
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        await Eventually.HoldsAsync(
            async () =>
            {
                using var response = await http.GetAsync(new Uri(sidecar.Admin, "/healthz/ready"));
                return response.StatusCode == HttpStatusCode.OK;
            },
            $"sidecar {sidecar.Process.Name} to be ready");
    }

    /// <summary>
    /// A name other than localhost that resolves to loopback (the machine's hostname usually does, by /etc/hosts); the
    /// test fails, naming what it tried, when none does.
    /// </summary>
    public static async Task<string> LoopbackNameAsync()
    {
        var tried = new List<string>();
        foreach (var name in new[] { Dns.GetHostName(), "localhost.localdomain", "localhost4" })
        {
            try
            {
                var addresses = await Dns.GetHostAddressesAsync(name);
                if (addresses.Any(IPAddress.IsLoopback))
                {
                    return name;
                }

                tried.Add($"{name}: {string.Join(", ", addresses.Select(a => a.ToString()))}");
            }
            catch (System.Net.Sockets.SocketException ex)
            {
                tried.Add($"{name}: {ex.SocketErrorCode}");
            }
        }

        throw new InvalidOperationException($"This test needs a name other than localhost that resolves to 127.0.0.1 (add the machine's hostname to /etc/hosts); none did: {string.Join("; ", tried)}");
    }

    /// <summary>Runs curl (the app's HTTP client) and returns the status code and body.</summary>
    public static async Task<(int Status, string Body)> CurlAsync(params string[] args)
    {
        var info = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in (string[])["-sS", "--max-time", "20", "-w", "\n%{http_code}", .. args])
        {
            info.ArgumentList.Add(arg);
        }

        // The environment's own proxy settings must not decide where curl goes.
        info.Environment.Remove("http_proxy");
        info.Environment.Remove("HTTP_PROXY");
        info.Environment.Remove("all_proxy");
        info.Environment.Remove("ALL_PROXY");
        using var process = Process.Start(info) ?? throw new InvalidOperationException("curl did not start");
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var split = output.LastIndexOf('\n');
        if (split < 0 || !int.TryParse(output[(split + 1)..], out var status))
        {
            throw new InvalidOperationException($"curl {string.Join(' ', args)} gave no status: {output} {error}");
        }

        return (status, output[..split]);
    }
}

/// <summary>
/// The app behind a sidecar, standing in for a non-.NET service: plain Kestrel on 127.0.0.1 (HTTP/1.1, or h2c for a
/// gRPC app), no mesh. Every path answers with what it received: instance, Host and every XFCC value; <c>/slow</c> only
/// after 30 s.
/// </summary>
internal sealed class TestApp : IAsyncDisposable
{
    private readonly WebApplication _app;
    private long _requests;

    private TestApp(WebApplication app, string instance)
    {
        _app = app;
        Instance = instance;
    }

    public string Instance { get; }

    public int Port { get; private set; }

    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Starts the app on an ephemeral port, or on <paramref name="port"/> (an app restarted where it was).</summary>
    public static async Task<TestApp> StartAsync(string instance, bool grpc = false, int port = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, port, listen => listen.Protocols = grpc ? HttpProtocols.Http2 : HttpProtocols.Http1));
        if (grpc)
        {
            builder.Services.AddGrpc();
        }

        var app = builder.Build();
        var test = new TestApp(app, instance);
        if (grpc)
        {
            app.MapGrpcService<InventoryApp>();
        }
        else
        {
            app.Run(async context =>
            {
                Interlocked.Increment(ref test._requests);
                if (context.Request.Path.StartsWithSegments("/slow"))
                {
                    // A slow app: answers after 30 s unless the caller gives up first.
                    await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted);
                }

                // Any header a CGI/WSGI server would read as XFCC counts (their HTTP_X_FORWARDED_CLIENT_CERT: '_' or '-').
                var xfcc = new Microsoft.Extensions.Primitives.StringValues([.. context.Request.Headers
                    .Where(h => string.Equals(h.Key.Replace('_', '-'), "X-Forwarded-Client-Cert", StringComparison.OrdinalIgnoreCase))
                    .SelectMany(h => h.Value.ToArray())]);
                await context.Response.WriteAsync(
                    $"instance={instance}\nhost={context.Request.Host}\npath={context.Request.Path}\nraw={context.Features.Get<IHttpRequestFeature>()?.RawTarget}\nxfcc-count={xfcc.Count}\nxfcc={string.Join(" | ", xfcc.ToArray())}\n");
            });
        }

        await app.StartAsync();
        test.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;
        return test;
    }

    public static string? Marker(string body) =>
        body.Split('\n').FirstOrDefault(line => line.StartsWith("instance=", StringComparison.Ordinal));

    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();

    /// <summary>The gRPC app: answers Reserve with what the sidecar passed (the caller's XFCC).</summary>
    private sealed class InventoryApp : Inventory.InventoryBase
    {
        public override Task<ReserveReply> Reserve(ReserveRequest request, ServerCallContext context) =>
            Task.FromResult(new ReserveReply
            {
                Reserved = true,
                Remaining = 41,
                Instance = "grpc-app",
                Caller = context.RequestHeaders.GetValue("x-forwarded-client-cert") ?? string.Empty,
            });
    }
}
