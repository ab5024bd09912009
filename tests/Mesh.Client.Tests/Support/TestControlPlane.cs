using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Grpc.Core;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Registry.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Support;

/// <summary>
/// A scripted control plane on real Kestrel (h2c, 127.0.0.1): the test reads the client's ADS requests
/// and sends responses; the registry records calls. It can stop and start again on the same port.
/// </summary>
internal sealed class TestControlPlane : IAsyncDisposable
{
    private WebApplication? _app;

    private readonly Security.TestCa? _ca;
    private readonly System.Security.Cryptography.X509Certificates.X509Certificate2? _serverCertificate;

    private TestControlPlane(int port, Security.TestCa? ca)
    {
        Port = port;
        _ca = ca;
        _serverCertificate = ca?.Issue([Security.TestCaServer.ControlPlaneId], notBeforeOffset: TimeSpan.FromDays(-1), lifetime: TimeSpan.FromDays(30), dnsNames: ["localhost"]);
    }

    /// <summary>Gets the port: Kestrel's pick at the first start (port 0, so no other process can take it in between), kept by restarts.</summary>
    public int Port { get; private set; }

    /// <summary>http:// (h2c), or https:// with the control plane's SVID and a CA service when started with a <see cref="Security.TestCa"/>.</summary>
    public Uri Address => new($"{(_ca is null ? "http" : "https")}://127.0.0.1:{Port}");

    public Channel<DiscoveryRequest> Requests { get; } = Channel.CreateUnbounded<DiscoveryRequest>();

    public AdsState Ads { get; } = new();

    public RegistryState Registry { get; } = new();

    /// <summary>Starts plaintext, or (with <paramref name="ca"/>) as the secure port: TLS, and certificates for <see cref="Security.TestCaServer.Token"/> as sa orders.</summary>
    public static async Task<TestControlPlane> StartAsync(Security.TestCa? ca = null)
    {
        var server = new TestControlPlane(0, ca);
        await server.RestartAsync();
        return server;
    }

    public async Task RestartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, Port, o =>
        {
            o.Protocols = HttpProtocols.Http2;
            if (_ca is { } ca)
            {
                o.UseHttps(new Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions
                {
                    ServerCertificate = _serverCertificate,
                    ServerCertificateChain = ca.Intermediate is null ? null : [ca.Intermediate],
                });
            }
        }));
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(this);
        var app = builder.Build();
        app.MapGrpcService<AdsService>();
        app.MapGrpcService<RegistryService>();
        if (_ca is not null)
        {
            app.MapGrpcService<CaService>();
        }
        await app.StartAsync();
        Port = new Uri(app.Urls.First()).Port;
        _app = app;
    }

    public async Task StopAsync()
    {
        if (_app is { } app)
        {
            _app = null;
            Ads.Abort();
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Waits for the next request of <paramref name="typeUrl"/>, skipping others.</summary>
    public async Task<DiscoveryRequest> NextRequestAsync(string typeUrl, TimeSpan? timeout = null)
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

    public Task SendAsync(DiscoveryResponse response) => Ads.SendAsync(response);

    public async ValueTask DisposeAsync() => await StopAsync();

    internal sealed class AdsState
    {
        private readonly SemaphoreSlim _writeLock = new(1, 1);
        private IServerStreamWriter<DiscoveryResponse>? _writer;
        private CancellationTokenSource? _streamEnd;

        public int Streams;

        public void Attach(IServerStreamWriter<DiscoveryResponse> writer, CancellationTokenSource end)
        {
            Interlocked.Increment(ref Streams);
            _writer = writer;
            _streamEnd = end;
        }

        /// <summary>Forgets a stream that ended, so a send waits for the client's next stream instead of failing on this one.</summary>
        public void Detach(IServerStreamWriter<DiscoveryResponse> writer) => Interlocked.CompareExchange(ref _writer, null, writer);

        public void Abort()
        {
            try
            {
                _streamEnd?.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream already ended.
            }

            _writer = null;
        }

        public async Task SendAsync(DiscoveryResponse response)
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (_writer is null)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException("No ADS stream is open.");
                }

                await Task.Yield();
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
    }

    internal sealed class RegistryState
    {
        public ConcurrentQueue<RegisterRequest> Registrations { get; } = new();

        public ConcurrentQueue<string> Renewals { get; } = new();

        public ConcurrentQueue<string> Deregistrations { get; } = new();

        public ConcurrentDictionary<string, WorkloadEntry> Leases { get; } = new();

        public bool Unavailable { get; set; }

        /// <summary>Calls refused with UNAVAILABLE while <see cref="Unavailable"/> was set.</summary>
        public int Refused;

        // gRPC services are created per call: the lease counter lives here.
        public int NextLease;
    }

    private sealed class AdsService(TestControlPlane server) : AggregatedDiscoveryService.AggregatedDiscoveryServiceBase
    {
        public override async Task StreamAggregatedResources(IAsyncStreamReader<DiscoveryRequest> requestStream, IServerStreamWriter<DiscoveryResponse> responseStream, ServerCallContext context)
        {
            using var end = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
            server.Ads.Attach(responseStream, end);
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
                server.Ads.Detach(responseStream);
            }
        }
    }

    /// <summary>Certifies the bootstrap token's holder as sa orders (the secure mode's first certificate).</summary>
    private sealed class CaService(TestControlPlane server) : Mesh.Xds.Istio.Auth.V1.IstioCertificateService.IstioCertificateServiceBase
    {
        public override Task<Mesh.Xds.Istio.Auth.V1.IstioCertificateResponse> CreateCertificate(Mesh.Xds.Istio.Auth.V1.IstioCertificateRequest request, ServerCallContext context)
        {
            if (context.RequestHeaders.GetValue("authorization") != $"Bearer {Security.TestCaServer.Token}")
            {
                throw new RpcException(new Status(StatusCode.Unauthenticated, "no valid bootstrap token"));
            }

            var response = new Mesh.Xds.Istio.Auth.V1.IstioCertificateResponse();
            response.CertChain.Add(server._ca!.SignCsr(request.Csr, Security.TestCa.Id("orders"), TimeSpan.FromSeconds(request.ValidityDuration)));
            return Task.FromResult(response);
        }
    }

    private sealed class RegistryService(TestControlPlane server) : WorkloadRegistry.WorkloadRegistryBase
    {
        private RegistryState State => server.Registry;

        public override Task<RegisterResponse> Register(RegisterRequest request, ServerCallContext context)
        {
            ThrowIfUnavailable();
            State.Registrations.Enqueue(request);
            var lease = $"lease-{Interlocked.Increment(ref State.NextLease)}";
            State.Leases[lease] = request.Workload;
            return Task.FromResult(new RegisterResponse { LeaseId = lease, LeaseTtl = request.LeaseTtl });
        }

        public override Task<RenewResponse> Renew(RenewRequest request, ServerCallContext context)
        {
            ThrowIfUnavailable();
            State.Renewals.Enqueue(request.LeaseId);
            if (!State.Leases.ContainsKey(request.LeaseId))
            {
                throw new RpcException(new Status(StatusCode.NotFound, $"lease {request.LeaseId} not found"));
            }

            return Task.FromResult(new RenewResponse { LeaseTtl = Google.Protobuf.WellKnownTypes.Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) });
        }

        public override Task<DeregisterResponse> Deregister(DeregisterRequest request, ServerCallContext context)
        {
            State.Deregistrations.Enqueue(request.LeaseId);
            State.Leases.TryRemove(request.LeaseId, out _);
            return Task.FromResult(new DeregisterResponse());
        }

        private void ThrowIfUnavailable()
        {
            if (State.Unavailable)
            {
                Interlocked.Increment(ref State.Refused);
                throw new RpcException(new Status(StatusCode.Unavailable, "control plane is restarting"));
            }
        }
    }
}
