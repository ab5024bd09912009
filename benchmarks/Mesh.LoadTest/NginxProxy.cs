using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Mesh.Samples.Processes;

namespace Mesh.LoadTest;

/// <summary>
/// nginx as a reverse proxy in front of the backend, the sidecar comparison's baseline hop: our own child process
/// (<c>nginx -p &lt;dir&gt; -c &lt;conf&gt; -g 'daemon off;'</c>) with a generated configuration in a temporary
/// folder, on 127.0.0.1 and a free port: <c>proxy_pass</c> to an upstream with keep-alive connections, no access log.
/// </summary>
internal sealed class NginxProxy : IAsyncDisposable
{
    private const string InstallHint =
        "nginx is not installed. On Debian/Ubuntu, as root, without letting the package start its system service on :80: "
        + "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && "
        + "apt-get update && apt-get install -y --no-install-recommends nginx; rm /usr/sbin/policy-rc.d "
        + "(keep an existing policy-rc.d instead of writing one). Or put an nginx binary on PATH.";

    private NginxProxy(ChildProcess process, Uri address, string version)
    {
        Process = process;
        Address = address;
        Version = version;
        Probe = new ProcessProbe("nginx", process.Id, withChildren: true);
    }

    public ChildProcess Process { get; }

    public Uri Address { get; }

    public string Version { get; }

    /// <summary>Gets nginx's master and workers, for CPU and RSS.</summary>
    public ProcessProbe Probe { get; }

    public static async Task<NginxProxy> StartAsync(string directory, Uri backend, int workers)
    {
        var nginx = Find() ?? throw new InvalidOperationException(InstallHint);
        var version = await VersionOfAsync(nginx).ConfigureAwait(false);
        Directory.CreateDirectory(directory);

        // nginx cannot report an ephemeral port: take a free one from the kernel and give it back for nginx to bind.
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        var config = Path.Combine(directory, "nginx.conf");
        await File.WriteAllTextAsync(config, Configuration(directory, port, backend, workers)).ConfigureAwait(false);
        var process = ChildProcess.Start("nginx", nginx, ["-p", directory + "/", "-e", "stderr", "-c", config, "-g", "daemon off;"]);
        var address = new Uri($"http://127.0.0.1:{port}/");
        try
        {
            await WaitUntilAnsweringAsync(process, address).ConfigureAwait(false);
            return new NginxProxy(process, address, version);
        }
        catch
        {
            await process.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public ValueTask DisposeAsync() => Process.DisposeAsync();

    /// <summary>
    /// The hop as a tuned nginx has it: keep-alive to the backend (HTTP/1.1, Connection cleared), a keep-alive connection
    /// reused for up to 100,000 requests on both sides (the default, 1,000, would add reconnects Kestrel does not make).
    /// </summary>
    private static string Configuration(string directory, int port, Uri backend, int workers) => string.Create(CultureInfo.InvariantCulture, $$"""
        worker_processes {{workers}};
        worker_rlimit_nofile 16384;
        pid {{directory}}/nginx.pid;
        error_log stderr warn;
        events { worker_connections 8192; }
        http {
            access_log off;
            client_body_temp_path {{directory}}/client_body;
            proxy_temp_path {{directory}}/proxy;
            fastcgi_temp_path {{directory}}/fastcgi;
            uwsgi_temp_path {{directory}}/uwsgi;
            scgi_temp_path {{directory}}/scgi;
            keepalive_requests 100000;
            upstream backend {
                server 127.0.0.1:{{backend.Port}};
                keepalive 256;
                keepalive_requests 100000;
            }
            server {
                listen 127.0.0.1:{{port}};
                location / {
                    proxy_pass http://backend;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                }
            }
        }
        """);

    private static string? Find()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        return path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin").Append("/usr/local/sbin")
            .Select(folder => Path.Combine(folder, "nginx"))
            .FirstOrDefault(File.Exists);
    }

    private static async Task<string> VersionOfAsync(string nginx)
    {
        // nginx -v prints "nginx version: nginx/1.22.1" on stderr.
        await using var version = ChildProcess.Start("nginx -v", nginx, ["-v"]);
        await version.Exited.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        return version.Output.Trim().Replace("nginx version: ", string.Empty, StringComparison.Ordinal);
    }

    private static async Task WaitUntilAnsweringAsync(ChildProcess process, Uri address)
    {
        using var client = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"nginx exited with code {await process.Exited.ConfigureAwait(false)}. Output:\n{process.Output}");
            }

            try
            {
                using var response = await client.GetAsync(address).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException) when (deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                // Not listening yet.
            }

            if (deadline.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new TimeoutException($"nginx did not answer 2xx on {address} within 30 s. Output:\n{process.Output}");
            }

            await Task.Delay(100).ConfigureAwait(false);
        }
    }
}
