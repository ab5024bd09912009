using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Interop;

/// <summary>
/// Node's @grpc/grpc-js-xds calling demo.inventory.v1.Inventory/Reserve as xds:///inventory through our control
/// plane's plaintext ADS port (grpc-js cannot do TLS to the control plane). Its bootstrap carries a file_watcher
/// certificate provider with an SVID our CA issued, as Istio's agent writes for proxyless gRPC.
/// </summary>
internal sealed class NodeXdsClient : IAsyncDisposable
{
    public static readonly string NodeDirectory = Path.Combine(Repository.Root, "tests", "Mesh.IntegrationTests", "node");

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _stderr = new();

    private NodeXdsClient(Process process)
    {
        _process = process;
    }

    public ConcurrentQueue<NodeCall> Calls { get; } = new();

    public string Errors => string.Join('\n', _stderr);

    /// <param name="controlPlane">The control plane whose plaintext ADS port the client uses.</param>
    /// <param name="workDirectory">Where its bootstrap and certificates go.</param>
    /// <param name="xdsCredentials">mTLS as CDS says (XdsChannelCredentials) rather than plaintext.</param>
    /// <param name="metadata">A <c>name=value</c> header sent with every call, or null.</param>
    /// <param name="maxCalls">The client stops after this many calls.</param>
    /// <param name="intervalMs">The pause between calls.</param>
    /// <param name="labels">The node metadata LABELS its bootstrap declares (what VirtualService sourceLabels select on), or none.</param>
    /// <param name="locality">The bootstrap's node locality (<c>region/zone</c>), or null for <c>{}</c>.</param>
    /// <param name="trace">grpc-js tracers to turn on (<c>GRPC_TRACE</c>, e.g. <c>priority,round_robin</c>); their lines land in <see cref="Errors"/>.</param>
    public static async Task<NodeXdsClient> StartAsync(
        ControlPlaneProcess controlPlane, string workDirectory, bool xdsCredentials, string? metadata = null, int maxCalls = 20000, int intervalMs = 20,
        IReadOnlyDictionary<string, string>? labels = null, string? locality = null, string? trace = null)
    {
        var module = Path.Combine(NodeDirectory, "node_modules", "@grpc", "grpc-js-xds", "package.json");
        Assert.True(
            File.Exists(module),
            $"The interop tests need @grpc/grpc-js-xds in {NodeDirectory}/node_modules. Run `npm ci --prefix tests/Mesh.IntegrationTests/node` (build/test.sh does this) with Node.js 20+ on PATH.");

        var certificates = await WorkloadCertificates.IssueAsync(controlPlane, "node-client", Path.Combine(workDirectory, "node-certs"));
        var bootstrap = Path.Combine(workDirectory, "grpc-bootstrap.json");
        await File.WriteAllTextAsync(bootstrap, JsonSerializer.Serialize(new
        {
            xds_servers = new[]
            {
                new
                {
                    server_uri = $"127.0.0.1:{controlPlane.RequirePlaintextXds().Port}",
                    channel_creds = new[] { new { type = "insecure" } },
                    server_features = new[] { "xds_v3" },
                },
            },
            node = new
            {
                id = "sidecar~127.0.0.1~node-client.default~default.svc.cluster.local",
                locality = locality is null ? new Dictionary<string, string>() : new Dictionary<string, string> { ["region"] = locality.Split('/')[0], ["zone"] = locality.Split('/')[1] },
                metadata = new { GENERATOR = "grpc", NAMESPACE = "default", LABELS = labels ?? new Dictionary<string, string>() },
            },
            certificate_providers = new
            {
                @default = new
                {
                    plugin_name = "file_watcher",
                    config = new
                    {
                        certificate_file = certificates.CertificateChain,
                        private_key_file = certificates.PrivateKey,
                        ca_certificate_file = certificates.RootCertificate,
                        refresh_interval = "600s",
                    },
                },
            },
        }));

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
        info.Environment["XDS_CREDENTIALS"] = xdsCredentials ? "xds" : "insecure";
        info.Environment["MAX_CALLS"] = maxCalls.ToString(System.Globalization.CultureInfo.InvariantCulture);
        info.Environment["INTERVAL_MS"] = intervalMs.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (metadata is not null)
        {
            info.Environment["METADATA"] = metadata;
        }

        if (trace is not null)
        {
            info.Environment["GRPC_TRACE"] = trace;
            info.Environment["GRPC_VERBOSITY"] = "DEBUG";
        }
        var client = new NodeXdsClient(Process.Start(info)!);
        client._process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                client._stderr.Enqueue(e.Data);
            }
        };
        client._process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                client.Calls.Enqueue(JsonSerializer.Deserialize<NodeCall>(line)!);
            }
        };
        client._process.BeginOutputReadLine();
        client._process.BeginErrorReadLine();
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        // Closing stdin stops the client's loop; it exits on its own.
        _process.StandardInput.Close();
        using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        try
        {
            await _process.WaitForExitAsync(exited.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill();
        }

        _process.Dispose();
    }
}

#pragma warning disable SA1313, IDE1006 // JSON property names of the Node client's output lines.
internal sealed record NodeCall(long at, string? instance, string? caller, string? error);
#pragma warning restore SA1313, IDE1006
