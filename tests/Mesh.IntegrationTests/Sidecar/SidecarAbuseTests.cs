using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// Bad input at the sidecar's listeners, with a real sidecar process (its mesh points at a closed port: these checks
/// happen before any mesh decision) and raw sockets or curl as the client.
/// </summary>
public sealed class SidecarAbuseTests(ITestOutputHelper output)
{
    [Fact]
    public async Task BadConfiguration_ExitCode2_EveryBadKeyNamed()
    {
        var process = ChildProcess.StartDotnet("sidecar-bad", LaunchableApps.Paths["mesh-sidecar"],
            ["--app-port", "70000", "--app-protocol", "grpc", "--Sidecar:AdminPortt=1"],
            new Dictionary<string, string?> { ["Mesh__ControlPlane__Address"] = "http://127.0.0.1:1" });
        await using (process)
        {
            var code = await process.Exited.WaitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine(process.Output);
            Assert.Equal(2, code);
            Assert.Contains("Sidecar:AppPort '70000' must be a port between 1 and 65535", process.Output, StringComparison.Ordinal);
            Assert.Contains("Sidecar:AppProtocol 'grpc' must be http", process.Output, StringComparison.Ordinal);
            Assert.Contains("Sidecar:AdminPortt is not a sidecar setting", process.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task BadMeshConfiguration_ExitCode2_NamesTheMeshKey()
    {
        var process = ChildProcess.StartDotnet("sidecar-bad-mesh", LaunchableApps.Paths["mesh-sidecar"], ["--app-port", "8080"],
            new Dictionary<string, string?> { ["Mesh__ControlPlane__Address"] = null });
        await using (process)
        {
            var code = await process.Exited.WaitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine(process.Output);
            Assert.Equal(2, code);
            Assert.Contains("Mesh:ControlPlane:Address is required", process.Output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task OversizedHeaders431_SmugglingShapes400_InvalidHost400_SlowlorisClosed_NotReadyExplained()
    {
        var process = ChildProcess.StartDotnet("sidecar-abuse", LaunchableApps.Paths["mesh-sidecar"],
            ["--app-port", "9", "--inbound-port", "0", "--inbound-address", "127.0.0.1", "--outbound-port", "0", "--admin-port", "0", "--admin-address", "127.0.0.1"],
            new Dictionary<string, string?> { ["Mesh__ControlPlane__Address"] = "http://127.0.0.1:1", ["ASPNETCORE_URLS"] = null });
        await using (process)
        {
            var outbound = int.Parse((await process.WaitForLineAsync(@"Sidecar outbound listening on http://127\.0\.0\.1:(\d+)", MeshProcesses.StartTimeout)).Groups[1].Value);
            var admin = int.Parse((await process.WaitForLineAsync(@"Sidecar admin listening on http://127\.0\.0\.1:(\d+)", MeshProcesses.StartTimeout)).Groups[1].Value);

            var (status, _) = await SidecarKit.CurlAsync($"http://127.0.0.1:{outbound}/x", "-H", "Host: orders", "-H", "X-Big: " + new string('a', 70 * 1024));
            Assert.Equal(431, status);

            var smuggled = await RawAsync(outbound, "POST /x HTTP/1.1\r\nHost: orders\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: orders\r\n\r\n");
            output.WriteLine($"CL+TE: {smuggled}");
            Assert.StartsWith("HTTP/1.1 400", smuggled, StringComparison.Ordinal);

            var doubleLength = await RawAsync(outbound, "POST /x HTTP/1.1\r\nHost: orders\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
            Assert.StartsWith("HTTP/1.1 400", doubleLength, StringComparison.Ordinal);

            // A transfer coding besides chunked would be dropped silently (Kestrel undoes only the chunking): 501, named.
            var gzipChunked = await RawToEndAsync(outbound, "POST /x HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n");
            output.WriteLine($"TE gzip, chunked: {gzipChunked}");
            Assert.StartsWith("HTTP/1.1 501", gzipChunked, StringComparison.Ordinal);
            Assert.Contains("Connection: close", gzipChunked, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("Transfer-Encoding 'gzip, chunked' is not supported", gzipChunked, StringComparison.Ordinal);

            var badHost = await RawAsync(outbound, "GET /x HTTP/1.1\r\nHost: or ders\r\n\r\n");
            Assert.StartsWith("HTTP/1.1 400", badHost, StringComparison.Ordinal);

            // Slowloris: headers that never end are cut off by the request header timeout (15 s).
            using (var slow = new TcpClient())
            {
                await slow.ConnectAsync("127.0.0.1", outbound);
                var stream = slow.GetStream();
                await stream.WriteAsync(Encoding.ASCII.GetBytes("GET /x HTTP/1.1\r\nHost: orders\r\nX-Slow: "));
                var clock = Stopwatch.StartNew();
                var buffer = new byte[4096];
                int read;
                do
                {
                    read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(45));
                }
                while (read > 0);
                output.WriteLine($"slowloris connection closed after {clock.Elapsed.TotalSeconds:0.0} s");
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(40));
            }

            using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
            using var ready = await http.GetAsync(new Uri($"http://127.0.0.1:{admin}/healthz/ready"));
            var body = await ready.Content.ReadAsStringAsync();
            output.WriteLine(body);
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.Contains("mesh: Unhealthy - not yet synced with control plane", body, StringComparison.Ordinal);
            Assert.Contains("app: Unhealthy - the app does not accept connections on 127.0.0.1:9", body, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task PassthroughNonMeshHosts_OtherHostForwardedAsPlainHttp_OffByDefault()
    {
        await using var external = await TestApp.StartAsync("external-1");
        var target = $"http://127.0.0.1:{external.Port}/pay";
        foreach (var passthrough in new[] { true, false })
        {
            var process = ChildProcess.StartDotnet($"sidecar-passthrough-{passthrough}", LaunchableApps.Paths["mesh-sidecar"],
                ["--app-port", "9", "--inbound-port", "0", "--inbound-address", "127.0.0.1", "--outbound-port", "0", "--admin-port", "0", "--admin-address", "127.0.0.1",
                 .. passthrough ? (string[])["--passthrough-non-mesh-hosts", "true"] : []],
                new Dictionary<string, string?> { ["Mesh__ControlPlane__Address"] = "http://127.0.0.1:1", ["ASPNETCORE_URLS"] = null });
            await using (process)
            {
                var outbound = int.Parse((await process.WaitForLineAsync(@"Sidecar outbound listening on http://127\.0\.0\.1:(\d+)", MeshProcesses.StartTimeout)).Groups[1].Value);
                var before = external.Requests;
                var (status, body) = await SidecarKit.CurlAsync("-x", $"http://127.0.0.1:{outbound}", target);
                output.WriteLine($"passthrough={passthrough}: {status} {body}");
                if (passthrough)
                {
                    Assert.Equal(200, status);
                    Assert.Contains("instance=external-1", body, StringComparison.Ordinal);

                    // Passthrough must not loop into the sidecar's own listeners, in any spelling of this machine.
                    var admin = int.Parse((await process.WaitForLineAsync(@"Sidecar admin listening on http://127\.0\.0\.1:(\d+)", MeshProcesses.StartTimeout)).Groups[1].Value);
                    var (loop, loopBody) = await SidecarKit.CurlAsync("-x", $"http://127.0.0.1:{outbound}", $"http://localhost.:{admin}/healthz/ready");
                    output.WriteLine($"loop: {loop} {loopBody}");
                    Assert.Equal(400, loop);
                    Assert.Contains("one of the sidecar's own listeners", loopBody, StringComparison.Ordinal);

                    // Hosts are case-insensitive: an absolute-form target in capitals with the same Host goes through (it
                    // was 400: Kestrel compared Host with the target's lower-cased authority). A Host that differs is
                    // replaced by the target's, as RFC 9112 asks of a proxy and Envoy does: the app sees one host.
                    foreach (var host in new[] { $"LOCALHOST:{external.Port}", "orders" })
                    {
                        var upper = await RawToEndAsync(outbound, $"GET http://LOCALHOST:{external.Port}/pay HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
                        output.WriteLine($"Host: {host}: {upper}");
                        Assert.StartsWith("HTTP/1.1 200", upper, StringComparison.Ordinal);
                        Assert.Contains("instance=external-1", upper, StringComparison.Ordinal);
                        Assert.Contains($"host=localhost:{external.Port}\n", upper, StringComparison.Ordinal);
                    }
                }
                else
                {
                    Assert.NotEqual(200, status);
                    Assert.Contains("127.0.0.1", body, StringComparison.Ordinal);
                    Assert.Equal(before, external.Requests);
                }
            }
        }
    }

    private static async Task<string> RawAsync(int port, string request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        var buffer = new byte[8192];
        var read = await stream.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        return Encoding.ASCII.GetString(buffer, 0, read);
    }

    // The whole response of a request the sidecar answers with Connection: close (headers and body may come apart).
    private static async Task<string> RawToEndAsync(int port, string request)
    {
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        return await reader.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(20));
    }
}
