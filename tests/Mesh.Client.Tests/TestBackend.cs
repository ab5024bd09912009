using System.Collections.Concurrent;
using System.Net;
using Mesh.Client.Tests.Grpc;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests;

/// <summary>
/// A real Kestrel backend on 127.0.0.1, port 0. HTTP/1.1 backends answer every path with their name and record the
/// Host header; <c>/fail</c> answers 500. gRPC backends speak h2c and answer Greeter.Hello with their name.
/// </summary>
internal sealed class TestBackend : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestBackend(string name, WebApplication app, int port)
    {
        Name = name;
        _app = app;
        Port = port;
    }

    public string Name { get; }

    public int Port { get; }

    public ConcurrentQueue<string> Hosts { get; } = new();

    public ConcurrentQueue<string> Methods { get; } = new();

    public int Hits => Hosts.Count;

    /// <summary>Gets or sets whether the backend holds every request until the client gives up on it.</summary>
    public bool Hang { get; set; }

    /// <param name="name">What the backend answers with.</param>
    /// <param name="grpc">An h2c Greeter service rather than HTTP/1.1.</param>
    /// <param name="grpcFailure">When set, Greeter.Hello records the call and fails with this status (a trailers-only answer).</param>
    public static async Task<TestBackend> StartAsync(string name, bool grpc = false, global::Grpc.Core.StatusCode? grpcFailure = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0, listen =>
            listen.Protocols = grpc ? HttpProtocols.Http2 : HttpProtocols.Http1));
        TestBackend? self = null;
        if (grpc)
        {
            builder.Services.AddGrpc();
            builder.Services.AddSingleton(new GreeterService(name, () => self!, grpcFailure));
        }

        var app = builder.Build();
        if (grpc)
        {
            app.MapGrpcService<GreeterService>();
        }
        else
        {
            app.Run(async context =>
            {
                self!.Hosts.Enqueue(context.Request.Host.Value ?? string.Empty);
                self.Methods.Enqueue(context.Request.Method);
                if (self.Hang)
                {
                    await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
                    return;
                }

                if (context.Request.Path.StartsWithSegments("/fail", StringComparison.Ordinal))
                {
                    context.Response.StatusCode = StatusCodes.Status500InternalServerError;
                    return;
                }

                // /status/<code> answers with that code.
                if (context.Request.Path.StartsWithSegments("/status", StringComparison.Ordinal, out var rest)
                    && int.TryParse(rest.Value.AsSpan().TrimStart('/'), System.Globalization.CultureInfo.InvariantCulture, out var code))
                {
                    context.Response.StatusCode = code;
                    return;
                }

                await context.Response.WriteAsync(name).ConfigureAwait(false);
            });
        }

        await app.StartAsync().ConfigureAwait(false);
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        self = new TestBackend(name, app, new Uri(address).Port);
        return self;
    }

    /// <summary>Stops the backend; once <paramref name="cancellationToken"/> fires, requests still held are aborted.</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private sealed class GreeterService(string name, Func<TestBackend> backend, global::Grpc.Core.StatusCode? failure) : Greeter.GreeterBase
    {
        public override Task<HelloReply> Hello(HelloRequest request, global::Grpc.Core.ServerCallContext context)
        {
            backend().Hosts.Enqueue(context.Host);
            if (failure is { } status)
            {
                throw new global::Grpc.Core.RpcException(new global::Grpc.Core.Status(status, $"{name} fails every call"));
            }

            return Task.FromResult(new HelloReply { Backend = name, Authority = context.Host });
        }
    }
}
