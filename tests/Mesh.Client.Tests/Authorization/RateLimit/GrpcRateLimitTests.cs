using System.Net;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Client.Authorization;
using Mesh.Client.Tests.Grpc;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.Client.Tests.Authorization.RateLimit;

/// <summary>A real gRPC server (Kestrel h2c on 127.0.0.1:0) and a real Grpc.Net.Client: the refusal reaches the caller as a gRPC status.</summary>
public sealed class GrpcRateLimitTests
{
    [Theory]
    [InlineData(true, StatusCode.ResourceExhausted)]
    [InlineData(false, StatusCode.Unavailable)]
    public async Task Call_OverTheLimit_GrpcClientSeesTheConfiguredStatus(bool resourceExhausted, StatusCode expected)
    {
        var store = new InboundPolicyStore();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        await using var app = builder.Build();
        app.UseMiddleware<MeshAuthorizationMiddleware>(store, NullLogger<MeshAuthorizationMiddleware>.Instance);
        app.MapGrpcService<Greeter>();
        await app.StartAsync();
        var port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;

        var config = LocalRateLimiterTests.Config(total: 2, identity: null);
        config.RateLimitedAsResourceExhausted = resourceExhausted;
        var paths = InboundPathSettings.Default;
        var listener = InboundListenerTranslator.BuildListener(
            InboundListenerTranslator.ListenerName("127.0.0.1", (uint)port), "127.0.0.1", (uint)port, MtlsMode.Disable, null, null, paths, jwt: null, config);
        // A fake clock: no refill happens while the calls run, however slow the first (cold) call is.
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UnixEpoch);
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors, time), string.Join("\n", errors));
        store.Replace([policy]);

        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var client = new Mesh.Client.Tests.Grpc.Greeter.GreeterClient(channel);
        var outcomes = new List<StatusCode>();
        for (var i = 0; i < 4; i++)
        {
            try
            {
                await client.HelloAsync(new HelloRequest { Name = "x" });
                outcomes.Add(StatusCode.OK);
            }
            catch (RpcException ex)
            {
                outcomes.Add(ex.StatusCode);
                Assert.Equal("local_rate_limited", ex.Status.Detail);
            }
        }

        Assert.Equal([StatusCode.OK, StatusCode.OK, expected, expected], outcomes);
    }

    private sealed class Greeter : Mesh.Client.Tests.Grpc.Greeter.GreeterBase
    {
        public override Task<HelloReply> Hello(HelloRequest request, ServerCallContext context) =>
            Task.FromResult(new HelloReply { Backend = "limited" });
    }
}
