using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Xds.Envoy.Service.Discovery.V3;

namespace Mesh.ControlPlane.Tests.Integration;

/// <summary>A raw incremental ADS stream (DeltaAggregatedResources) to a real control plane, read in the background.</summary>
internal sealed class DeltaAdsTestClient : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<DeltaDiscoveryRequest, DeltaDiscoveryResponse> _call;
    private readonly Channel<DeltaDiscoveryResponse> _responses = System.Threading.Channels.Channel.CreateUnbounded<DeltaDiscoveryResponse>();
    private readonly Task _reader;

    public DeltaAdsTestClient(GrpcChannel channel)
    {
        _call = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(channel).DeltaAggregatedResources();
        _reader = Task.Run(async () =>
        {
            try
            {
                await foreach (var response in _call.ResponseStream.ReadAllAsync())
                {
                    await _responses.Writer.WriteAsync(response);
                }
            }
            catch (RpcException ex)
            {
                Error = ex;
            }
            catch (ObjectDisposedException)
            {
                // DisposeAsync ended the call while a read was pending: the end of this client, not an error.
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
        await _reader.WaitAsync(AdsTestClient.Timeout);
        return Error ?? throw new InvalidOperationException("The delta ADS stream ended without an error status.");
    }

    public Task SendAsync(
        string typeUrl,
        IEnumerable<string>? subscribe = null,
        IEnumerable<string>? unsubscribe = null,
        Mesh.Xds.Envoy.Config.Core.V3.Node? node = null,
        string nonce = "",
        string? error = null,
        IReadOnlyDictionary<string, string>? initialVersions = null)
    {
        var request = new DeltaDiscoveryRequest { TypeUrl = typeUrl, Node = node, ResponseNonce = nonce };
        request.ResourceNamesSubscribe.AddRange(subscribe ?? []);
        request.ResourceNamesUnsubscribe.AddRange(unsubscribe ?? []);
        if (initialVersions is not null)
        {
            foreach (var (name, version) in initialVersions)
            {
                request.InitialResourceVersions.Add(name, version);
            }
        }

        if (error is not null)
        {
            request.ErrorDetail = new Mesh.Xds.Google.Rpc.Status { Code = (int)StatusCode.Unavailable, Message = error };
        }

        return _call.RequestStream.WriteAsync(request);
    }

    public Task AckAsync(DeltaDiscoveryResponse response) => SendAsync(response.TypeUrl, nonce: response.Nonce);

    public async Task<DeltaDiscoveryResponse> NextAsync() => await _responses.Reader.ReadAsync().AsTask().WaitAsync(AdsTestClient.Timeout);

    /// <summary>The next response, ACKed.</summary>
    public async Task<DeltaDiscoveryResponse> NextAckedAsync()
    {
        var response = await NextAsync();
        await AckAsync(response);
        return response;
    }

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
