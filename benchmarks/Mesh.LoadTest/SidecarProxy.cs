using System.Diagnostics;
using Mesh.Samples.Processes;

namespace Mesh.LoadTest;

/// <summary>
/// Mesh.Sidecar (<c>dotnet mesh-sidecar.dll</c>, as built) joined to the load run's control plane over its secure port
/// with a bootstrap token, every port ephemeral on 127.0.0.1. Its app is the backend (so its inbound port forwards
/// there); the load calls its outbound port with <c>Host: backend</c>, which the mesh routes to the same backend.
/// </summary>
internal sealed class SidecarProxy : IAsyncDisposable
{
    private SidecarProxy(ChildProcess process, Uri outbound, Uri inbound, Uri admin)
    {
        Process = process;
        Outbound = outbound;
        Inbound = inbound;
        Admin = admin;
        Probe = new ProcessProbe("sidecar", process.Id);
    }

    public ChildProcess Process { get; }

    public Uri Outbound { get; }

    public Uri Inbound { get; }

    public Uri Admin { get; }

    public ProcessProbe Probe { get; }

    /// <summary>The ServiceEntry of the sidecar's own service, which it registers the app in.</summary>
    public static string ServiceYaml(string service) => """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: SERVICE, namespace: default}
        spec:
          hosts: [SERVICE.default.svc.cluster.local]
          ports: [{number: 80, name: http, protocol: HTTP}]
          resolution: STATIC
          workloadSelector: {labels: {app: SERVICE}}
        """.Replace("SERVICE", service, StringComparison.Ordinal);

    /// <param name="extraEnvironment">Set last: <c>--sidecar-env</c>'s variables override the ones above.</param>
    public static async Task<SidecarProxy> StartAsync(string dllPath, ControlPlaneProcess controlPlane, string service, Uri app, IReadOnlyDictionary<string, string> extraEnvironment)
    {
        var environment = controlPlane.SecureEnvironment(await controlPlane.MintTokenAsync(service).ConfigureAwait(false));
        environment["Mesh__Service"] = service;
        environment["Sidecar__AppPort"] = app.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        environment["Sidecar__OutboundPort"] = "0";
        environment["Sidecar__InboundPort"] = "0";
        environment["Sidecar__InboundAddress"] = "127.0.0.1";
        environment["Sidecar__AdminPort"] = "0";
        environment["Sidecar__AdminAddress"] = "127.0.0.1";
        environment["Logging__LogLevel__Default"] = "Warning";
        foreach (var (key, value) in extraEnvironment)
        {
            environment[key] = value;
        }

        var process = ChildProcess.StartDotnet("sidecar", dllPath, environment: environment);
        try
        {
            var outbound = await ListenerAsync(process, "outbound").ConfigureAwait(false);
            // The mesh port serves mTLS (PeerAuthentication STRICT by default) whatever scheme the line shows.
            var inbound = new UriBuilder(await ListenerAsync(process, "inbound").ConfigureAwait(false)) { Scheme = "https" }.Uri;
            var admin = await ListenerAsync(process, "admin").ConfigureAwait(false);
            await WaitForAsync(process, new Uri(admin, "/healthz/ready"), host: null).ConfigureAwait(false);

            // Ready means synced; a request through it also proves the route to the backend is in place.
            await WaitForAsync(process, outbound, host: "backend").ConfigureAwait(false);
            return new SidecarProxy(process, outbound, inbound, admin);
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();

    private static async Task<Uri> ListenerAsync(ChildProcess process, string listener)
    {
        var line = await process.WaitForLineAsync($@"Sidecar {listener} listening on (\S+)", MeshProcesses.StartTimeout).ConfigureAwait(false);
        return new Uri(line.Groups[1].Value.Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
    }

    private static async Task WaitForAsync(ChildProcess process, Uri address, string? host)
    {
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        var last = "no answer";
        while (deadline.Elapsed < MeshProcesses.StartTimeout)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"The sidecar exited with code {await process.Exited.ConfigureAwait(false)}. Output:\n{process.Output}");
            }

            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, address);
                request.Headers.Host = host;
                using var response = await client.SendAsync(request).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }

                last = $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync().ConfigureAwait(false)}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }

            await Task.Delay(200).ConfigureAwait(false);
        }

        throw new TimeoutException($"The sidecar did not answer 2xx on {address}{(host is null ? string.Empty : $" (Host: {host})")} within {MeshProcesses.StartTimeout.TotalSeconds:0} s; last: {last}. Output:\n{process.Output}");
    }
}
