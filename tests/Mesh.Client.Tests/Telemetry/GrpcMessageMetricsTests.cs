using System.Diagnostics.Metrics;
using System.Net;
using Google.Protobuf;
using Grpc.Core;
using Mesh.Client.Authorization;
using Mesh.Client.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// istio_request_messages_total / istio_response_messages_total and the gRPC status from the trailers, on both
/// reporters at once: a real Grpc.Net.Client over an <c>xds:///</c> mesh channel (reporter source) calling real Kestrel
/// h2c behind the mesh's inbound middleware (reporter destination), each side with its own MeterListener.
/// </summary>
public sealed class GrpcMessageMetricsTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    private static readonly string[] OutcomeLabels = ["request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy"];

    [Fact]
    public async Task Unary_OneMessageEachWay_BodyBytesAndStatusOk_OnBothReporters()
    {
        await using var mesh = await Mesh.StartAsync();
        var reply = await mesh.Client.EchoAsync(new Item { Payload = ByteString.CopyFrom(new byte[100]) });
        Assert.Equal(100, reply.Payload.Length);

        foreach (var side in await mesh.BothRecordedAsync(calls: 1))
        {
            var request = Assert.Single(side.Requests);
            Assert.Equal(("grpc", "200", "0", "-"), (request.Labels["request_protocol"], request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
            Assert.Equal((1, 1), (side.Sum(MeshMetricsNames.RequestMessages), side.Sum(MeshMetricsNames.ResponseMessages)));

            // The bodies: a 5-byte prefix and the message (field tag, length, 100 bytes) each way.
            Assert.Equal(107, side.Sum("istio_request_bytes"));
            Assert.Equal(107, side.Sum("istio_response_bytes"));
        }
    }

    [Fact]
    public async Task ServerStreaming_EveryMessageCounted_LargeOnesSplitAcrossReads()
    {
        await using var mesh = await Mesh.StartAsync();
        var received = 0;
        using (var call = mesh.Client.Count(new CountRequest { Count = 40, PayloadSize = 1000 }))
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                received++;
            }
        }

        using (var call = mesh.Client.Count(new CountRequest { Count = 3, PayloadSize = 200_000 }))
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                Assert.Equal(200_000, call.ResponseStream.Current.Payload.Length);
                received++;
            }
        }

        Assert.Equal(43, received);
        foreach (var side in await mesh.BothRecordedAsync(calls: 2))
        {
            Assert.All(side.Requests, r => Assert.Equal("0", r.Labels["grpc_response_status"]));
            Assert.Equal(2, side.Sum(MeshMetricsNames.RequestMessages));
            Assert.Equal(43, side.Sum(MeshMetricsNames.ResponseMessages));
            Assert.Equal([3d, 40d], side.Values(MeshMetricsNames.ResponseMessages).Order());

            // The message counters carry Istio's peer labels only (istio_stats.cc adds them before the outcome labels).
            Assert.All(side.Of(MeshMetricsNames.ResponseMessages), m =>
            {
                Assert.Equal(20, m.Labels.Count);
                Assert.Equal(side.Requests[0].Labels.Keys.Except(OutcomeLabels).Order(), m.Labels.Keys.Order());
                Assert.All(m.Labels.Keys, key => Assert.Equal(side.Requests[0].Labels[key], m.Labels[key]));
                Assert.Equal("inventory.default.svc.cluster.local", m.Labels["destination_service"]);
            });
        }
    }

    [Fact]
    public async Task ClientStreaming_EveryRequestMessageCounted()
    {
        await using var mesh = await Mesh.StartAsync();
        using (var call = mesh.Client.Sum())
        {
            for (var i = 0; i < 7; i++)
            {
                await call.RequestStream.WriteAsync(new Item { Payload = ByteString.CopyFrom(new byte[i * 10]) });
            }

            await call.RequestStream.CompleteAsync();
            var total = await call;
            Assert.Equal((7, 210L), (total.Items, total.Bytes));
        }

        foreach (var side in await mesh.BothRecordedAsync(calls: 1))
        {
            Assert.Equal("0", Assert.Single(side.Requests).Labels["grpc_response_status"]);
            Assert.Equal((7, 1), (side.Sum(MeshMetricsNames.RequestMessages), side.Sum(MeshMetricsNames.ResponseMessages)));
        }
    }

    [Fact]
    public async Task StatusInTrailers_NotFoundAfterMessages_IsTheGrpcStatusOnBothReporters()
    {
        await using var mesh = await Mesh.StartAsync();
        var received = 0;
        using var call = mesh.Client.Count(new CountRequest { Count = 3, PayloadSize = 10, Fail = true });
        var error = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                received++;
            }
        });

        Assert.Equal((StatusCode.NotFound, 3), (error.StatusCode, received));
        foreach (var side in await mesh.BothRecordedAsync(calls: 1))
        {
            var request = Assert.Single(side.Requests);
            Assert.Equal(("200", "5", "-"), (request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
            Assert.Equal(3, side.Sum(MeshMetricsNames.ResponseMessages));
        }
    }

    [Fact]
    public async Task StatusInTrailers_AccessLogEntryWrittenAtTheStreamsEnd_WithThatStatus()
    {
        // Sampled out (rate 0): only a failure is logged, and a 200 whose status arrives in the trailers is one only there.
        using var clientLog = new AccessLogCapture();
        await using var mesh = await Mesh.StartAsync(clientLog);
        using var call = mesh.Client.Count(new CountRequest { Count = 3, PayloadSize = 10, Fail = true });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.Empty(clientLog.Entries);

        await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        });

        await Poll.UntilAsync(() => !clientLog.Entries.IsEmpty, "the access-log entry at the stream's end", Deadline);
        var entry = Assert.Single(clientLog.Entries);
        Assert.Equal((200, 5), ((int)entry.Fields["response_code"]!, (int)entry.Fields["grpc_status"]!));
        Assert.EndsWith("/Count", entry.Text("path"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task CancelledCall_RecordedOnce_AsTheCallerGivingUp()
    {
        await using var mesh = await Mesh.StartAsync();
        using var cancel = new CancellationTokenSource();
        var call = mesh.Client.Hold(new Item(), cancellationToken: cancel.Token);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var next = call.ResponseStream.MoveNext(CancellationToken.None);
        await cancel.CancelAsync();
        var error = await Assert.ThrowsAsync<RpcException>(() => next);
        Assert.Equal(StatusCode.Cancelled, error.StatusCode);

        // Disposing the call afterwards (its response and body) must not record it again.
        call.Dispose();
        var sides = await mesh.BothRecordedAsync(calls: 1);
        var source = Assert.Single(sides[0].Requests);
        Assert.Equal(("200", "2", "DC"), (source.Labels["response_code"], source.Labels["grpc_response_status"], source.Labels["response_flags"]));
        Assert.Equal((1, 1), (sides[0].Sum(MeshMetricsNames.RequestMessages), sides[0].Sum(MeshMetricsNames.ResponseMessages)));
        Assert.Contains("DC", Assert.Single(sides[1].Requests).Labels["response_flags"], StringComparison.Ordinal);

        // A later call on the same channel is a new record, and the cancelled one is still counted once.
        await mesh.Client.EchoAsync(new Item());
        await Poll.UntilAsync(() => mesh.Source.Requests.Count >= 2, "the source reporter to record the second call", Deadline);
        Assert.Equal(2, mesh.Source.Requests.Count);
        Assert.Single(mesh.Source.Requests, r => r.Labels["response_flags"] == "DC");
    }

    private static class MeshMetricsNames
    {
        public const string RequestMessages = "istio_request_messages_total";
        public const string ResponseMessages = "istio_response_messages_total";
    }

    /// <summary>One reporter's measurements.</summary>
    private sealed record Side(IstioMetricsListener Listener)
    {
        public IReadOnlyList<IstioMetricsListener.Measurement> Requests => Listener.Requests;

        public IReadOnlyList<IstioMetricsListener.Measurement> Of(string instrument) => Listener.Of(instrument);

        public IEnumerable<double> Values(string instrument) => Of(instrument).Select(m => m.Value);

        public int Sum(string instrument) => (int)Values(instrument).Sum();
    }

    /// <summary>The Streamer service on real Kestrel h2c behind the mesh's inbound middleware, and a mesh client of it.</summary>
    private sealed class Mesh : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ServiceProvider _client;
        private readonly global::Grpc.Net.Client.GrpcChannel _channel;

        private Mesh(WebApplication app, ServiceProvider client)
        {
            _app = app;
            _client = client;
            Destination = new IstioMetricsListener(app.Services.GetRequiredService<IMeterFactory>());
            Source = new IstioMetricsListener(client.GetRequiredService<IMeterFactory>());
            _channel = client.CreateMeshGrpcChannel("xds:///inventory");
            Client = new Streamer.StreamerClient(_channel);
        }

        public IstioMetricsListener Source { get; }

        public IstioMetricsListener Destination { get; }

        public Streamer.StreamerClient Client { get; }

        public static async Task<Mesh> StartAsync(AccessLogCapture? clientLog = null)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
            builder.Services.AddGrpc(o => o.EnableDetailedErrors = true);
            builder.Services.AddMeshAuthorization();
            builder.Services.Configure<ServiceMeshOptions>(options => options.Service = "inventory");
            var app = builder.Build();
            app.MapGrpcService<StreamerService>();
            await app.StartAsync();
            var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
            Assert.True(InboundPolicyDecoder.TryDecode(Listener([], (uint)port), out var policy, out var errors), string.Join("; ", errors));
            app.Services.GetRequiredService<InboundPolicyStore>().Replace([policy]);
            var services = MeshServices.Create(
                new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(port)]))),
                clientLog is null ? null : options => (options.Telemetry.AccessLog.Enabled, options.Telemetry.AccessLog.SampleRate) = (true, 0));
            if (clientLog is not null)
            {
                services.AddSingleton<ILoggerProvider>(clientLog);
            }

            return new Mesh(app, services.BuildServiceProvider());
        }

        /// <summary>Waits until both reporters recorded <paramref name="calls"/> calls (the destination records when its middleware returns).</summary>
        public async Task<Side[]> BothRecordedAsync(int calls)
        {
            await Poll.UntilAsync(() => Source.Requests.Count >= calls && Destination.Requests.Count >= calls, $"both reporters to record {calls} call(s)", Deadline);
            Assert.Equal(calls, Source.Requests.Count);
            Assert.Equal(calls, Destination.Requests.Count);
            Assert.All(Source.Requests, r => Assert.Equal("source", r.Labels["reporter"]));
            Assert.All(Destination.Requests, r => Assert.Equal("destination", r.Labels["reporter"]));
            return [new Side(Source), new Side(Destination)];
        }

        public async ValueTask DisposeAsync()
        {
            _channel.Dispose();
            Source.Dispose();
            Destination.Dispose();
            await _client.DisposeAsync();
            await _app.DisposeAsync();
        }
    }

    private sealed class StreamerService : Streamer.StreamerBase
    {
        public override Task<Item> Echo(Item request, ServerCallContext context) => Task.FromResult(request);

        public override async Task Count(CountRequest request, IServerStreamWriter<Item> responseStream, ServerCallContext context)
        {
            var payload = ByteString.CopyFrom(new byte[request.PayloadSize]);
            for (var i = 0; i < request.Count; i++)
            {
                await responseStream.WriteAsync(new Item { Payload = payload });
            }

            if (request.Fail)
            {
                throw new RpcException(new Status(StatusCode.NotFound, "no more items"));
            }
        }

        public override async Task<Total> Sum(IAsyncStreamReader<Item> requestStream, ServerCallContext context)
        {
            var total = new Total();
            while (await requestStream.MoveNext())
            {
                total.Items++;
                total.Bytes += requestStream.Current.Payload.Length;
            }

            return total;
        }

        public override async Task Hold(Item request, IServerStreamWriter<Item> responseStream, ServerCallContext context)
        {
            await responseStream.WriteAsync(new Item());
            await Task.Delay(Timeout.Infinite, context.CancellationToken);
        }
    }
}
