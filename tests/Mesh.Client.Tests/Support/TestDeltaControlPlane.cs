using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Support;

/// <summary>
/// A scripted incremental (delta) ADS server on real Kestrel (h2c, 127.0.0.1): the test reads the client's
/// <see cref="DeltaDiscoveryRequest"/>s and writes responses of its choosing (including ones a real control plane never
/// sends). It can stop and start again on the same port; a state-of-the-world call is refused.
/// </summary>
internal sealed class TestDeltaControlPlane : IAsyncDisposable
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private WebApplication? _app;
    private IServerStreamWriter<DeltaDiscoveryResponse>? _writer;
    private CancellationTokenSource? _streamEnd;
    private int _nonce;

    private TestDeltaControlPlane(int port)
    {
        Port = port;
    }

    /// <summary>Gets the port: Kestrel's pick at the first start (port 0, so no other process can take it in between), kept by restarts.</summary>
    public int Port { get; private set; }

    public Uri Address => new($"http://127.0.0.1:{Port}");

    public Channel<DeltaDiscoveryRequest> Requests { get; } = Channel.CreateUnbounded<DeltaDiscoveryRequest>();

    /// <summary>Gets how many delta streams were opened, and state-of-the-world calls refused.</summary>
    public int Streams;

    public int SotwCalls;

    public static async Task<TestDeltaControlPlane> StartAsync()
    {
        var server = new TestDeltaControlPlane(0);
        await server.RestartAsync();
        return server;
    }

    public async Task RestartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, Port, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        var app = builder.Build();
        app.MapGrpcService<AdsService>();
        await app.StartAsync();
        Port = new Uri(app.Urls.First()).Port;
        _app = app;
    }

    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            try
            {
                _streamEnd?.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream already ended.
            }

            _writer = null;
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Waits for the next request of <paramref name="typeUrl"/>, skipping others.</summary>
    public async Task<DeltaDiscoveryRequest> NextRequestAsync(string typeUrl, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var request = await Requests.Reader.ReadAsync(cts.Token);
            if (request.TypeUrl == typeUrl)
            {
                return request;
            }
        }
    }

    /// <summary>Writes a response of <paramref name="typeUrl"/> (a new nonce, returned) with resources named and versioned as given.</summary>
    public async Task<string> SendAsync(string typeUrl, string systemVersion, IEnumerable<(string Name, string Version, IMessage Resource)> resources, params string[] removed)
    {
        var response = new DeltaDiscoveryResponse
        {
            TypeUrl = typeUrl,
            SystemVersionInfo = systemVersion,
            Nonce = "n" + Interlocked.Increment(ref _nonce).ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        response.Resources.Add(resources.Select(r => new Resource { Name = r.Name, Version = r.Version, Resource_ = Any.Pack(r.Resource) }));
        response.RemovedResources.Add(removed);
        await SendAsync(response);
        return response.Nonce;
    }

    public async Task SendAsync(DeltaDiscoveryResponse response)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (_writer is null)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("No delta ADS stream is open.");
            }

            await Task.Delay(10);
        }

        await _writeLock.WaitAsync();
        try
        {
            await _writer.WriteAsync(response);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    private sealed class AdsService(TestDeltaControlPlane server) : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
    {
        public override Task StreamAggregatedResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
        {
            Interlocked.Increment(ref server.SotwCalls);
            throw new RpcException(new Status(StatusCode.Unimplemented, "this test server speaks delta only"));
        }

        public override async Task DeltaAggregatedResources(IAsyncStreamReader<DeltaDiscoveryRequest> requestStream, IServerStreamWriter<DeltaDiscoveryResponse> responseStream, ServerCallContext context)
        {
            using var end = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
            Interlocked.Increment(ref server.Streams);
            server._streamEnd = end;
            server._writer = responseStream;
            try
            {
                while (await requestStream.MoveNext(end.Token))
                {
                    await server.Requests.Writer.WriteAsync(requestStream.Current);
                }
            }
            catch (OperationCanceledException)
            {
                // The test stopped the server: end the stream.
            }
            finally
            {
                Interlocked.CompareExchange(ref server._writer, null, responseStream);
            }
        }
    }
}
