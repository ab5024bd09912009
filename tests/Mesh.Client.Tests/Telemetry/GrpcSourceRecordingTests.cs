using System.Buffers.Binary;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http.Headers;
using Mesh.Client.Http;
using Mesh.Client.Routing;
using Mesh.Client.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// When the outermost handler records a gRPC call that streams a body: exactly once, at the body's end of stream, its
/// first failed read, or its disposal, whichever comes first; nothing wrapped while nothing listens. The inner handler
/// is a small fake answering a gRPC response whose body the test controls.
/// </summary>
public sealed class GrpcSourceRecordingTests
{
    [Fact]
    public async Task NoListener_NeitherBodyIsWrapped()
    {
        await using var provider = Provider();
        var answer = Response(Frames(2));
        using var invoker = Invoker(provider, answer);
        var content = Grpc(Frames(1));

        using var response = await invoker.SendAsync(Request(content), CancellationToken.None);

        Assert.Same(answer.Content, response.Content);
        Assert.Same(content, response.RequestMessage!.Content);
    }

    [Fact]
    public async Task EndOfStream_RecordsOnce_WithTheTrailersStatusAndMessages_DisposeAfterRecordsNothingMore()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var invoker = Invoker(provider, Response(Frames(0, 300, 70_000), grpcStatus: "5"));

        var response = await invoker.SendAsync(Request(Grpc(Frames(10))), CancellationToken.None);
        Assert.Empty(metrics.Requests);
        var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[1000];
        while (await stream.ReadAsync(buffer) > 0)
        {
            Assert.Empty(metrics.Requests);
        }

        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("200", "5", "-"), (request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
        Assert.Equal(3, metrics.Of("istio_response_messages_total").Single().Value);
        Assert.Equal(1, metrics.Of("istio_request_messages_total").Single().Value);
        Assert.Equal(15 + 70_300, metrics.Of("istio_response_bytes").Single().Value);
        Assert.Equal(15, metrics.Of("istio_request_bytes").Single().Value);

        await stream.DisposeAsync();
        response.Dispose();
        Assert.Single(metrics.Requests);
    }

    [Fact]
    public async Task DisposedBeforeTheEnd_RecordsOnce_AsTheCallerGivingUp()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        // HttpClient fills the trailers when it reads them, at the body's end, which this call never reaches.
        using var invoker = Invoker(provider, Response(Frames(100, 100)));

        var response = await invoker.SendAsync(Request(Grpc(Frames(1))), CancellationToken.None);
        var stream = await response.Content.ReadAsStreamAsync();
        Assert.Equal(50, await stream.ReadAsync(new byte[50]));
        response.Dispose();
        await stream.DisposeAsync();

        var request = Assert.Single(metrics.Requests);

        // No trailers: the status is what Envoy reports for its 200 without one (getGrpcStatus → httpToGrpcStatus: UNKNOWN).
        Assert.Equal(("200", "2", "DC"), (request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
        Assert.Equal(1, metrics.Of("istio_response_messages_total").Single().Value);
    }

    [Fact]
    public async Task ReadFails_RecordsOnce_ConnectionEndedIsUC()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var answer = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new FailingStream()) };
        answer.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        using var invoker = Invoker(provider, answer);

        using var response = await invoker.SendAsync(Request(Grpc(Frames(1))), CancellationToken.None);
        var stream = await response.Content.ReadAsStreamAsync();
        await Assert.ThrowsAsync<HttpIOException>(async () => await stream.ReadExactlyAsync(new byte[10]));
        await Assert.ThrowsAsync<HttpIOException>(async () => await stream.ReadExactlyAsync(new byte[10]));
        response.Dispose();

        Assert.Equal("UC", Assert.Single(metrics.Requests).Labels["response_flags"]);
    }

    [Theory]
    [InlineData(0x2, "UR")] // INTERNAL_ERROR: the server reset the stream mid-body (Envoy's remote reset)
    [InlineData(0x1, "UR")] // PROTOCOL_ERROR: still the endpoint's reset
    public async Task ReadFails_StreamResetMidBody_UR(int errorCode, string flag)
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var reset = new FailingStream(() => new HttpProtocolException(errorCode, "The HTTP/2 server reset the stream.", null));
        var answer = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(reset) };
        answer.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        using var invoker = Invoker(provider, answer);

        using var response = await invoker.SendAsync(Request(Grpc(Frames(1))), CancellationToken.None);
        var stream = await response.Content.ReadAsStreamAsync();
        await Assert.ThrowsAsync<HttpProtocolException>(async () => await stream.ReadExactlyAsync(new byte[10]));
        response.Dispose();

        Assert.Equal(flag, Assert.Single(metrics.Requests).Labels["response_flags"]);
    }

    [Fact]
    public async Task RequestBodyWrittenTwice_CountsItsLastWriteOnly()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());

        // The inner handler sends the body twice, as a retried attempt does.
        using var invoker = Invoker(provider, Response(Frames(1), grpcStatus: "0"), writes: 2);

        using var response = await invoker.SendAsync(Request(Grpc(Frames(1, 2, 3))), CancellationToken.None);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(3, metrics.Of("istio_request_messages_total").Single().Value);
        Assert.Equal(21, metrics.Of("istio_request_bytes").Single().Value);
    }

    [Fact]
    public async Task ResponseContentRead_ThenReadAsStream_SeesTheBody_RecordsOnce()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var client = new HttpClient(Handler(provider, Response(Frames(2), grpcStatus: "0"), writes: 1));

        // HttpClient's default completion option buffers the body before the caller reads it as a stream.
        using var response = await client.PostAsync(new Uri("http://orders/shop.Orders/List"), Grpc(Frames(0)));
        using var copy = new MemoryStream();
        await (await response.Content.ReadAsStreamAsync()).CopyToAsync(copy);

        Assert.Equal(7, copy.Length);
        Assert.Equal("0", Assert.Single(metrics.Requests).Labels["grpc_response_status"]);
        Assert.Equal(1, metrics.Of("istio_response_messages_total").Single().Value);
    }

    [Fact]
    public async Task SyncCopyTo_CopiesTheBody_RecordsOnce()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var invoker = Invoker(provider, Response(Frames(2), grpcStatus: "0"));

        using var response = await invoker.SendAsync(Request(Grpc(Frames(0))), CancellationToken.None);
        using var copy = new MemoryStream();
        response.Content.CopyTo(copy, context: null, CancellationToken.None);

        Assert.Equal(7, copy.Length);
        Assert.Equal(("0", "-"), (Assert.Single(metrics.Requests).Labels["grpc_response_status"], metrics.Requests[0].Labels["response_flags"]));
        Assert.Equal(1, metrics.Of("istio_response_messages_total").Single().Value);
    }

    [Fact]
    public async Task DisposedBeforeTheEnd_TrailersNotRead()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());

        // Trailers present although the body has not ended: SocketsHttpHandler may be writing them from its connection
        // loop at that moment, so the early end must not look at them.
        using var invoker = Invoker(provider, Response(Frames(100), grpcStatus: "0"));

        var response = await invoker.SendAsync(Request(Grpc(Frames(1))), CancellationToken.None);
        var stream = await response.Content.ReadAsStreamAsync();
        Assert.Equal(50, await stream.ReadAsync(new byte[50]));
        response.Dispose();

        Assert.Equal(("2", "DC"), (Assert.Single(metrics.Requests).Labels["grpc_response_status"], metrics.Requests[0].Labels["response_flags"]));
    }

    [Fact]
    public async Task ListenerThrows_ReadToTheEndAndDispose_DoNotThrow()
    {
        await using var provider = Provider();
        var scope = provider.GetRequiredService<IMeterFactory>();
        var recorded = 0;
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter.Scope, scope) && instrument.Name == "istio_requests_total")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, _, _, _) =>
        {
            Interlocked.Increment(ref recorded);
            throw new InvalidOperationException("a broken exporter");
        });
        listener.Start();
        using var invoker = Invoker(provider, Response(Frames(2, 2), grpcStatus: "0"));

        var response = await invoker.SendAsync(Request(Grpc(Frames(1))), CancellationToken.None);
        var body = await response.Content.ReadAsByteArrayAsync();
        response.Dispose();

        Assert.Equal(14, body.Length);
        Assert.Equal(1, recorded);
    }

    [Fact]
    public async Task RequestBodySentConcurrently_CountsOneSend()
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var invoker = new HttpMessageInvoker(Handler(provider, Response(Frames(1), grpcStatus: "0"), sends: request => Hedge(request, gate)));

        // Three messages written one by one; both sends (a hedging handler's) write the first before either goes on.
        using var response = await invoker.SendAsync(Request(new GatedFrames(gate.Task, Frames(1), Frames(2), Frames(3))), CancellationToken.None);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(3, metrics.Of("istio_request_messages_total").Single().Value);
        Assert.Equal(21, metrics.Of("istio_request_bytes").Single().Value);
    }

    [Theory]
    [InlineData("application/grpc-web")]
    [InlineData("application/grpc-web-text")]
    public async Task GrpcWeb_RecordedAsHttp_BodyNotWrapped(string contentType)
    {
        await using var provider = Provider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var answer = Response(Frames(2));
        answer.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        using var invoker = Invoker(provider, answer);
        var content = new ByteArrayContent(Frames(1));
        content.Headers.ContentType = new MediaTypeHeaderValue(contentType);

        using var response = await invoker.SendAsync(Request(content), CancellationToken.None);

        Assert.Same(answer.Content, response.Content);
        Assert.Equal("http", Assert.Single(metrics.Requests).Labels["request_protocol"]);
        Assert.Empty(metrics.Of("istio_request_messages_total"));
    }

    private static async Task Hedge(HttpRequestMessage request, TaskCompletionSource gate)
    {
        var first = request.Content!.CopyToAsync(Stream.Null);
        var second = request.Content!.CopyToAsync(Stream.Null);
        gate.SetResult();
        await Task.WhenAll(first, second);
    }

    private static ServiceProvider Provider() =>
        MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(1)])))).BuildServiceProvider();

    private static HttpMessageInvoker Invoker(ServiceProvider provider, HttpResponseMessage answer, int writes = 1) =>
        new(Handler(provider, answer, writes));

    private static MeshRouteFeaturesHandler Handler(ServiceProvider provider, HttpResponseMessage answer, int writes = 1, Func<HttpRequestMessage, Task>? sends = null) =>
        new(
            provider.GetRequiredService<MeshRouter>(),
            provider.GetRequiredService<EndpointConnectionPools>(),
            TimeProvider.System,
            NullLogger.Instance,
            random: null,
            provider.GetRequiredService<IstioRequestMetrics>())
        {
            InnerHandler = new Answer(answer, sends ?? (async request =>
            {
                for (var i = 0; i < writes && request.Content is not null; i++)
                {
                    await request.Content.CopyToAsync(Stream.Null);
                }
            })),
        };

    private static HttpRequestMessage Request(HttpContent content) => new(HttpMethod.Post, "http://orders/shop.Orders/List") { Content = content };

    private static ByteArrayContent Grpc(byte[] body)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        return content;
    }

    private static HttpResponseMessage Response(byte[] body, string? grpcStatus = null)
    {
        // A streamed body, as SocketsHttpHandler's: no Content-Length.
        var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StreamContent(new MemoryStream(body)) };
        response.Content.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        if (grpcStatus is not null)
        {
            response.TrailingHeaders.TryAddWithoutValidation("grpc-status", grpcStatus);
        }

        return response;
    }

    private static byte[] Frames(params int[] lengths)
    {
        var body = new List<byte>();
        foreach (var length in lengths)
        {
            var prefix = new byte[5];
            BinaryPrimitives.WriteUInt32BigEndian(prefix.AsSpan(1), (uint)length);
            body.AddRange(prefix);
            body.AddRange(new byte[length]);
        }

        return [.. body];
    }

    private sealed class Answer(HttpResponseMessage answer, Func<HttpRequestMessage, Task> send) : HttpMessageHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            await send(request);
            answer.RequestMessage = request;
            return answer;
        }
    }

    /// <summary>A gRPC body written a message at a time, every send waiting at the gate after its first message.</summary>
    private sealed class GatedFrames : HttpContent
    {
        private readonly Task _gate;
        private readonly byte[][] _frames;

        public GatedFrames(Task gate, params byte[][] frames)
        {
            (_gate, _frames) = (gate, frames);
            Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        }

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(_frames[0]);
            await _gate;
            foreach (var frame in _frames.Skip(1))
            {
                await stream.WriteAsync(frame);
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    private sealed class FailingStream(Func<HttpIOException>? failure = null) : MemoryStream
    {
        private readonly Func<HttpIOException> _failure = failure ?? (() => new HttpIOException(HttpRequestError.ResponseEnded, "The response ended prematurely."));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromException<int>(_failure());

        public override int Read(byte[] buffer, int offset, int count) => throw _failure();
    }
}
