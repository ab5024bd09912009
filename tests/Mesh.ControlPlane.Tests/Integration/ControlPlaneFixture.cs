using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>A real control plane on 127.0.0.1 ephemeral ports with temp config and state folders.</summary>
internal sealed class ControlPlaneFixture : IAsyncDisposable
{
    private readonly string _root;

    private ControlPlaneFixture(string root, ControlPlaneHost host)
    {
        _root = root;
        Host = host;
        Channel = GrpcChannel.ForAddress(host.XdsAddress ?? throw new InvalidOperationException("The fixture configures ControlPlane:XdsAddress; the plaintext port must be bound."));
        Admin = new HttpClient { BaseAddress = host.AdminAddress, Timeout = TimeSpan.FromSeconds(10) };
    }

    public ControlPlaneHost Host { get; }

    public GrpcChannel Channel { get; }

    public HttpClient Admin { get; }

    public string ConfigDirectory => Path.Combine(_root, "config");

    public static Task<ControlPlaneFixture> StartAsync(params (string File, string Yaml)[] files) => StartAsync([], files);

    /// <summary>Starts with <paramref name="extraArgs"/> after the fixture's own (later arguments win).</summary>
    public static async Task<ControlPlaneFixture> StartAsync(string[] extraArgs, params (string File, string Yaml)[] files)
    {
        var root = Path.Combine(Path.GetTempPath(), "mesh-cp-it-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(root, "config"));
        foreach (var (file, yaml) in files)
        {
            await File.WriteAllTextAsync(Path.Combine(root, "config", file), yaml);
        }

        var host = await ControlPlaneHost.StartAsync(
        [
            $"--ControlPlane:ConfigDirectory={Path.Combine(root, "config")}",
            $"--ControlPlane:StateDirectory={Path.Combine(root, "state")}",
            // These tests exercise xDS and the registry, not authentication: ADS and registration over the plaintext port.
            "--ControlPlane:XdsAddress=http://127.0.0.1:0",
            "--ControlPlane:PlaintextRegistration=true",
            "--ControlPlane:AdminAddress=http://127.0.0.1:0",
            "--ControlPlane:SecureAddress=https://127.0.0.1:0",
            "--ControlPlane:DebounceInterval=00:00:00.020",
            "--Logging:LogLevel:Default=Warning",
            .. extraArgs,
        ]);
        return new ControlPlaneFixture(root, host);
    }

    public AdsTestClient OpenAds() => new(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(Channel).StreamAggregatedResources());

    public async ValueTask DisposeAsync()
    {
        Admin.Dispose();
        Channel.Dispose();
        await Host.DisposeAsync();
        Directory.Delete(_root, recursive: true);
    }
}

internal sealed class AdsTestClient : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> _call;
    private readonly Channel<DiscoveryResponse> _responses = System.Threading.Channels.Channel.CreateUnbounded<DiscoveryResponse>();
    private readonly Task _reader;

    public AdsTestClient(AsyncDuplexStreamingCall<DiscoveryRequest, DiscoveryResponse> call)
    {
        _call = call;
        _reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var response in call.ResponseStream.ReadAllAsync())
                {
                    await _responses.Writer.WriteAsync(response);
                }
            }
            catch (RpcException ex)
            {
                Error = ex;
            }
            finally
            {
                _responses.Writer.TryComplete();
            }
        });
    }

    /// <summary>Gets the status the stream ended with, once it ended with one.</summary>
    public RpcException? Error { get; private set; }

    /// <summary>Waits for the stream to end with an error status and returns it (responses sent before are skipped).</summary>
    public async Task<RpcException> ErrorAsync()
    {
        await _reader.WaitAsync(Timeout);
        return Error ?? throw new InvalidOperationException("The ADS stream ended without an error status.");
    }

    public static Node Node(string id = "sidecar~10.0.0.9~client-1.default~default.svc.cluster.local") => new() { Id = id, Locality = new Locality() };

    public Task SendAsync(string typeUrl, IEnumerable<string> names, Node? node = null, string nonce = "", string version = "", string? error = null)
    {
        var request = new DiscoveryRequest { TypeUrl = typeUrl, Node = node, ResponseNonce = nonce, VersionInfo = version };
        request.ResourceNames.AddRange(names);
        if (error is not null)
        {
            request.ErrorDetail = new Mesh.Xds.Google.Rpc.Status { Code = (int)StatusCode.Unavailable, Message = error };
        }

        return _call.RequestStream.WriteAsync(request);
    }

    public Task AckAsync(DiscoveryResponse response, IEnumerable<string> names) =>
        SendAsync(response.TypeUrl, names, nonce: response.Nonce, version: response.VersionInfo);

    public async Task<DiscoveryResponse> NextAsync() => await NextAsync(Timeout);

    public async Task<DiscoveryResponse> NextAsync(TimeSpan timeout) => await _responses.Reader.ReadAsync().AsTask().WaitAsync(timeout);

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _call.RequestStream.CompleteAsync();
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException)
        {
            // The server already ended the stream (a test of a refused or failed stream).
        }

        _call.Dispose();
        await _reader;
    }
}
