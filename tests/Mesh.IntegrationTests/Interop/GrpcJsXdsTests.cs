using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;

namespace Mesh.IntegrationTests.Interop;

/// <summary>
/// An independent xDS client — Node's @grpc/grpc-js-xds — resolves xds:///inventory through our
/// control plane's plaintext ADS port and calls two .NET inventory instances.
/// </summary>
public sealed class GrpcJsXdsTests(ITestOutputHelper output)
{
    private static readonly string NodeDirectory = Path.Combine(Repository.Root, "tests", "Mesh.IntegrationTests", "node");

    [Fact]
    public async Task NodeXdsClient_CallsBothInstances_AndStopsCallingAStoppedInstanceWithin5Seconds()
    {
        EnsureNodeModules();
        await using var mesh = await LocalMesh.StartAsync(output);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var second = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-2");
        await mesh.WaitForEndpointsAsync("inventory", 2);

        var bootstrap = Path.Combine(mesh.StateDirectory, "grpc-bootstrap.json");
        await File.WriteAllTextAsync(bootstrap, JsonSerializer.Serialize(new
        {
            xds_servers = new[]
            {
                new
                {
                    server_uri = $"127.0.0.1:{mesh.ControlPlane.XdsAddress.Port}",
                    channel_creds = new[] { new { type = "insecure" } },
                    server_features = new[] { "xds_v3" },
                },
            },
            node = new { id = "sidecar~127.0.0.1~node-client.default~default.svc.cluster.local", locality = new { }, metadata = new { GENERATOR = "grpc", NAMESPACE = "default" } },
        }));

        var calls = new ConcurrentQueue<NodeCall>();
        var info = new ProcessStartInfo("node")
        {
            WorkingDirectory = NodeDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.ArgumentList.Add("xds-client.js");
        info.ArgumentList.Add("xds:///inventory");
        info.ArgumentList.Add(Path.Combine(Repository.Root, "samples", "Mesh.Samples.Inventory", "Protos", "inventory.proto"));
        info.Environment["GRPC_XDS_BOOTSTRAP"] = bootstrap;
        info.Environment["MAX_SECONDS"] = "90";
        using var node = Process.Start(info)!;
        var stderr = new ConcurrentQueue<string>();
        node.ErrorDataReceived += (_, e) => { if (e.Data is not null) { stderr.Enqueue(e.Data); } };
        node.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                calls.Enqueue(JsonSerializer.Deserialize<NodeCall>(line)!);
            }
        };
        node.BeginOutputReadLine();
        node.BeginErrorReadLine();
        long stoppedAt;
        try
        {
            await Eventually.HoldsAsync(
                () => Task.FromResult(calls.Any(c => c.instance == "inventory-1") && calls.Any(c => c.instance == "inventory-2")),
                "the Node client to reach both instances",
                TimeSpan.FromSeconds(60));

            await second.Process.StopAsync(TimeSpan.FromSeconds(15));
            stoppedAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            output.WriteLine("inventory-2 stopped (SIGTERM)");

            // Watch long enough to see that calls keep succeeding on inventory-1 only.
            await Eventually.HoldsAsync(
                () => Task.FromResult(calls.Count(c => c.at > stoppedAt + 5_000 && c.instance == "inventory-1") >= 50),
                "50 calls to inventory-1 later than 5 s after the stop",
                TimeSpan.FromSeconds(60));
        }
        finally
        {
            node.StandardInput.Close();
            if (!node.WaitForExit(15_000))
            {
                node.Kill();
            }

            output.WriteLine(string.Join('\n', stderr));
        }

        var all = calls.ToArray();
        var lastToStopped = all.Where(c => c.instance == "inventory-2").Max(c => c.at);
        output.WriteLine($"node calls: {all.Length}; inventory-1 {all.Count(c => c.instance == "inventory-1")}, inventory-2 {all.Count(c => c.instance == "inventory-2")}, errors {all.Count(c => c.error is not null)}");
        Console.WriteLine($"[grpc-js-xds interop] {all.Length} calls, {all.Count(c => c.error is not null)} failed");

        Assert.All(all, c => Assert.Null(c.error));
        Assert.Contains(all, c => c.instance == "inventory-1");
        Assert.Contains(all, c => c.instance == "inventory-2");
        Assert.True(
            lastToStopped <= stoppedAt + 5_000,
            $"the Node client called the stopped instance {lastToStopped - stoppedAt} ms after it stopped; it must stop within 5 s");
    }

    private static void EnsureNodeModules()
    {
        var module = Path.Combine(NodeDirectory, "node_modules", "@grpc", "grpc-js-xds", "package.json");
        Assert.True(
            File.Exists(module),
            $"The interop test needs @grpc/grpc-js-xds in {NodeDirectory}/node_modules. Run `npm ci --prefix tests/Mesh.IntegrationTests/node` (build/test.sh does this) with Node.js 20+ on PATH.");
    }

    private sealed record NodeCall(long at, string? instance, string? caller, string? error);
}
