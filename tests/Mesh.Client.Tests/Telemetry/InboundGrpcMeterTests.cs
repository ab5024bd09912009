using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using Mesh.Client.Authorization;
using Mesh.Client.Tests.Support;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// The destination's gRPC body meter and middleware after the mesh's that replace <c>Request.Body</c>: real Kestrel, an
/// endpoint reading <c>Request.BodyReader</c> as Grpc.AspNetCore does.
/// </summary>
public sealed class InboundGrpcMeterTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(30);

    // One 5-byte message: a 5-byte prefix and its payload.
    private static readonly byte[] Body = [0, 0, 0, 0, 5, 1, 2, 3, 4, 5];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BufferingMiddlewareAfterTheMesh_BodyReaderStillSeesTheBody_CountedOnce(bool listen)
    {
        await using var server = await Server.StartAsync(async (context, next) =>
        {
            // EnableBuffering replaces Request.Body; the server's BodyReader follows it, the meter's must too.
            context.Request.EnableBuffering();
            await context.Request.Body.CopyToAsync(Stream.Null);
            context.Request.Body.Position = 0;
            await next(context);
        });
        using var metrics = listen ? server.Listen() : null;

        Assert.Equal("10", await server.PostAsync());
        if (metrics is not null)
        {
            await AssertCountedOnceAsync(metrics);
        }
    }

    [Fact]
    public async Task BodyReadThroughTheReader_ThenReplayedAsANewBody_CountedOnce()
    {
        await using var server = await Server.StartAsync(async (context, next) =>
        {
            // Read through the (metered) reader, then hand the endpoint the same bytes as a new body.
            using var copy = new MemoryStream();
            await context.Request.BodyReader.CopyToAsync(copy);
            context.Request.Body = new MemoryStream(copy.ToArray());
            await next(context);
        });
        using var metrics = server.Listen();

        Assert.Equal("10", await server.PostAsync());
        await AssertCountedOnceAsync(metrics);
    }

    [Fact]
    public async Task GrpcWeb_RecordedAsHttp_NoMessagesCounted()
    {
        await using var server = await Server.StartAsync((context, next) => next(context));
        using var metrics = server.Listen();

        Assert.Equal("10", await server.PostAsync("application/grpc-web"));
        await Poll.UntilAsync(() => metrics.Requests.Count >= 1, "the destination to record the call", Deadline);
        Assert.Equal("http", Assert.Single(metrics.Requests).Labels["request_protocol"]);
        Assert.Empty(metrics.Of("istio_request_messages_total"));
    }

    private static async Task AssertCountedOnceAsync(IstioMetricsListener metrics)
    {
        await Poll.UntilAsync(() => metrics.Requests.Count >= 1, "the destination to record the call", Deadline);
        Assert.Equal("grpc", Assert.Single(metrics.Requests).Labels["request_protocol"]);
        Assert.Equal(10, Assert.Single(metrics.Of("istio_request_bytes")).Value);
        Assert.Equal(1, Assert.Single(metrics.Of("istio_request_messages_total")).Value);
    }

    private sealed class Server(WebApplication app, int port) : IAsyncDisposable
    {
        public static async Task<Server> StartAsync(Func<HttpContext, RequestDelegate, Task> middleware)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            builder.Services.AddMeshAuthorization();
            builder.Services.Configure<ServiceMeshOptions>(o => (o.Service, o.Namespace) = ("orders", "shop"));
            var app = builder.Build();
            app.Use(middleware);
            app.MapPost("/svc/M", async (HttpContext context) =>
            {
                long total = 0;
                while (true)
                {
                    var result = await context.Request.BodyReader.ReadAsync();
                    total += result.Buffer.Length;
                    context.Request.BodyReader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }

                return total.ToString(System.Globalization.CultureInfo.InvariantCulture);
            });
            await app.StartAsync();
            var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
            Assert.True(InboundPolicyDecoder.TryDecode(Listener([], (uint)port), out var policy, out var errors), string.Join("; ", errors));
            app.Services.GetRequiredService<InboundPolicyStore>().Replace([policy]);
            return new Server(app, port);
        }

        public IstioMetricsListener Listen() => new(app.Services.GetRequiredService<IMeterFactory>());

        public async Task<string> PostAsync(string contentType = "application/grpc")
        {
            using var client = new HttpClient();
            using var content = new ByteArrayContent(Body);
            content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
            using var response = await client.PostAsync(new Uri($"http://127.0.0.1:{port}/svc/M"), content);
            return await response.Content.ReadAsStringAsync();
        }

        public ValueTask DisposeAsync() => app.DisposeAsync();
    }
}
