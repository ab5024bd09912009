using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// The sidecar under the slow and the many: an app that does not answer is cut by the route's timeout (not a hang), and
/// a thousand idle keep-alive connections cost bounded memory and leave the sidecar serving.
/// </summary>
public sealed class SidecarLimitsTests(ITestOutputHelper output)
{
    [Fact]
    public async Task SlowApp_RouteTimeoutFromVirtualServiceApplies_OtherPathsStillAnswer()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "slowpoke");
        SidecarKit.WriteServiceEntry(mesh, "caller");
        SidecarKit.WriteConfig(mesh, "slowpoke-routes.yaml", """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: slowpoke, namespace: default}
            spec:
              hosts: [slowpoke]
              http:
                - timeout: 2s
                  route:
                    - destination: {host: slowpoke}
            """);
        await using var slowApp = await TestApp.StartAsync("slowpoke-1");
        await using var callerApp = await TestApp.StartAsync("caller-1");
        await using var slow = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "slowpoke", "slowpoke-sidecar-1", slowApp.Port), output);
        await using var caller = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "caller", "caller-sidecar-1", callerApp.Port), output);
        await SidecarKit.WaitReadyAsync(slow.Sidecar);
        await SidecarKit.WaitReadyAsync(caller.Sidecar);
        var proxy = $"http://127.0.0.1:{caller.Sidecar.OutboundPort}";
        await Eventually.ReturnsAsync(() => SidecarKit.CurlAsync("-x", proxy, "http://slowpoke/echo"), r => r.Status == 200, "slowpoke through the caller's sidecar");

        var stopwatch = Stopwatch.StartNew();
        var (status, body) = await SidecarKit.CurlAsync("-x", proxy, "http://slowpoke/slow");
        var elapsed = stopwatch.Elapsed;
        output.WriteLine($"slow: {status} after {elapsed}: {body}");
        var (after, _) = await SidecarKit.CurlAsync("-x", proxy, "http://slowpoke/echo");

        // The app would answer after 30 s; the route's 2 s timeout answers first, with Envoy's UT flag named.
        Assert.Equal(504, status);
        Assert.Contains("UT", body, StringComparison.Ordinal);
        Assert.InRange(elapsed, TimeSpan.FromSeconds(1.5), TimeSpan.FromSeconds(20));
        Assert.Equal(200, after);
    }

    [Fact]
    public async Task ThousandIdleKeepAliveConnections_RssBounded_SidecarStillServes()
    {
        const int Connections = 1000;
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "idler");
        await using var app = await TestApp.StartAsync("idler-1");
        await using var sidecar = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "idler", "idler-sidecar-1", app.Port), output);
        await SidecarKit.WaitReadyAsync(sidecar.Sidecar);
        var proxy = $"http://127.0.0.1:{sidecar.Sidecar.OutboundPort}";
        await Eventually.ReturnsAsync(() => SidecarKit.CurlAsync("-x", proxy, "http://idler/warm"), r => r.Status == 200, "idler through its own sidecar");
        var before = ResidentBytes(sidecar.Sidecar.Process.Id);

        // Each connection makes one request through the mesh (outbound port → mesh mTLS → inbound port → app) and stays
        // open, idle, as an app's keep-alive pool leaves it.
        var sockets = new List<Socket>(Connections);
        try
        {
            var request = Encoding.ASCII.GetBytes("GET http://idler/idle HTTP/1.1\r\nHost: idler\r\n\r\n");
            var buffer = new byte[4096];
            for (var i = 0; i < Connections; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets.Add(socket);
                await socket.ConnectAsync(System.Net.IPAddress.Loopback, sidecar.Sidecar.OutboundPort);
                await socket.SendAsync(request);
                var read = await ReadResponseHeadAsync(socket, buffer);
                Assert.StartsWith("HTTP/1.1 200", read, StringComparison.Ordinal);
            }

            GC.KeepAlive(sockets);
            var loaded = ResidentBytes(sidecar.Sidecar.Process.Id);
            var (status, _) = await SidecarKit.CurlAsync("-x", proxy, "http://idler/after");
            var stillOpen = 0;
            foreach (var socket in sockets)
            {
                // Open and idle: nothing to read, and the peer has not closed (a closed peer reads as readable with 0 bytes).
                if (!socket.Poll(0, SelectMode.SelectRead))
                {
                    stillOpen++;
                }
            }

            var growth = loaded - before;
            output.WriteLine($"sidecar RSS: {before / 1048576.0:F1} MiB before, {loaded / 1048576.0:F1} MiB with {Connections} idle keep-alive connections (+{growth / 1024.0 / Connections:F1} KiB per connection); {stillOpen} still open");
            Assert.Equal(200, status);
            Assert.Equal(Connections, stillOpen);
            Assert.True(growth < 150L * 1024 * 1024, $"RSS grew by {growth / 1048576.0:F1} MiB for {Connections} idle connections");
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    private static async Task<string> ReadResponseHeadAsync(Socket socket, byte[] buffer)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var text = new StringBuilder();
        while (true)
        {
            var read = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
            if (read == 0)
            {
                throw new IOException($"the sidecar closed the connection after: {text}");
            }

            text.Append(Encoding.ASCII.GetString(buffer, 0, read));
            var head = text.ToString();
            var end = head.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0 && IsComplete(head, end))
            {
                return head;
            }
        }
    }

    /// <summary>Whether the whole response is in: its Content-Length of body, or a chunked body's last chunk.</summary>
    private static bool IsComplete(string response, int headEnd)
    {
        foreach (var line in response[..headEnd].Split("\r\n"))
        {
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
            {
                return response.Length >= headEnd + 4 + int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return response.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal);
    }

    /// <summary>
    /// Sidecar:InlineIo reaches the runtime: on (the default) its socket engine completes I/O on its event threads, one
    /// per processor, which is how the runtime runs that mode; off, the one event thread of the default mode. Counted
    /// in /proc by the threads' names, after traffic through each sidecar's outbound port.
    /// </summary>
    [Fact]
    public async Task InlineIo_OnByDefault_TheRuntimeRunsOneSocketThreadPerProcessor_OffOne()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "looper");
        await using var app = await TestApp.StartAsync("looper-1");
        await using var inline = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "looper", "looper-sidecar-1", app.Port), output);
        await using var pooled = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "looper", "looper-sidecar-2", app.Port, "--inline-io", "false"), output);
        foreach (var sidecar in (ProcessScope[])[inline, pooled])
        {
            await SidecarKit.WaitReadyAsync(sidecar.Sidecar);
            var proxy = $"http://127.0.0.1:{sidecar.Sidecar.OutboundPort}";
            await Eventually.ReturnsAsync(() => SidecarKit.CurlAsync("-x", proxy, "http://looper/echo"), r => r.Status == 200, "looper through a sidecar");
        }

        var inlineThreads = SocketEventThreads(inline.Sidecar.Process.Id);
        var pooledThreads = SocketEventThreads(pooled.Sidecar.Process.Id);
        output.WriteLine($"socket event threads: {inlineThreads} inline, {pooledThreads} pooled, {Environment.ProcessorCount} processors");

        Assert.Equal(Environment.ProcessorCount, inlineThreads);
        Assert.Equal(1, pooledThreads);
        Assert.True(Environment.ProcessorCount > 1, "with one processor both modes run one socket thread: this machine cannot tell them apart");
    }

    private static int SocketEventThreads(int pid) =>
        Directory.GetDirectories($"/proc/{pid}/task").Count(task => File.ReadAllText(Path.Combine(task, "comm")).Trim() == ".NET Sockets");

    private static long ResidentBytes(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmRSS:".Length..].Replace("kB", string.Empty, StringComparison.Ordinal).Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }

        throw new InvalidOperationException($"no VmRSS for process {pid}");
    }
}
