using System.Collections.Concurrent;
using System.Net;
using Mesh.Client.Security;
using Mesh.Client.Tests.Grpc;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Grpc.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.Client.Tests.Security;

/// <summary>
/// A real Kestrel backend on 127.0.0.1:0 with the mesh inbound connection middleware and claims filter, as
/// AddServiceMesh sets them up in secure mode. It answers with its name and records what the app saw.
/// </summary>
internal sealed class MeshBackend : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _connections;

    private MeshBackend(WebApplication app) => _app = app;

    public int Port { get; private set; }

    /// <summary>Gets the TCP connections accepted (each mTLS connection is one handshake).</summary>
    public int Connections => Volatile.Read(ref _connections);

    /// <summary>Released once for every accepted connection that has ended (whoever closed it).</summary>
    public SemaphoreSlim ConnectionsEnded { get; } = new(0);

    /// <summary>What <c>/hold</c> waits for before it answers (a request kept in flight).</summary>
    public TaskCompletionSource Hold { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when a <c>/hold</c> request has reached the app.</summary>
    public TaskCompletionSource Holding { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ConcurrentQueue<Seen> Requests { get; } = new();

    public int Hits => Requests.Count;

    /// <summary>Gets the backend app's services.</summary>
    public IServiceProvider Services => _app.Services;

    public static Task<MeshBackend> StartAsync(
        string name,
        IWorkloadCertificateSource certificates,
        PeerAuthenticationMode mode,
        HttpProtocols protocols = HttpProtocols.Http1AndHttp2,
        Action<IServiceCollection>? configureServices = null) =>
        StartAsync(name, certificates, new StaticPeerAuthenticationModeSource(mode), protocols, configureServices);

    /// <summary>A backend whose ports take their PeerAuthentication mode from <paramref name="modes"/> (it may change).</summary>
    public static async Task<MeshBackend> StartAsync(
        string name,
        IWorkloadCertificateSource certificates,
        IPeerAuthenticationModeSource modes,
        HttpProtocols protocols = HttpProtocols.Http1AndHttp2,
        Action<IServiceCollection>? configureServices = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(certificates);
        builder.Services.AddSingleton(modes);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<IStartupFilter, MeshPeerIdentityStartupFilter>();
        builder.Services.AddGrpc();
        configureServices?.Invoke(builder.Services);
        builder.Services.AddSingleton<MeshExcludedListeners>();
        MeshBackend? self = null;
        builder.Services.AddSingleton(_ => new GreeterService(name, () => self!));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AllowAlternateSchemes = true;
            kestrel.Listen(IPAddress.Loopback, 0, listen =>
            {
                listen.Protocols = protocols;
                listen.Use(next => async connection =>
                {
                    Interlocked.Increment(ref self!._connections);
                    try
                    {
                        await next(connection);
                    }
                    finally
                    {
                        self.ConnectionsEnded.Release();
                    }
                });
                MeshSecurityRegistration.UseMeshInbound(listen, kestrel.ApplicationServices);
            });
        });
        var app = builder.Build();
        app.MapGrpcService<GreeterService>();
        app.Map("/hold", async (HttpContext context) =>
        {
            self!.Record(context);
            self.Holding.TrySetResult();
            await self.Hold.Task;
            return name;
        });
        app.Map("/{**path}", (HttpContext context) =>
        {
            self!.Record(context);
            return name;
        });
        self = new MeshBackend(app);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        self.Port = new Uri(address).Port;
        return self;
    }

    public async ValueTask DisposeAsync()
    {
        // No drain: an idle connection (a gRPC subchannel's pre-connected socket) would hold a graceful stop until the
        // inbound handshake timeout; after a second Kestrel aborts what is left.
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }

    private void Record(HttpContext context)
    {
        var feature = context.Features.Get<IMeshPeerIdentityFeature>();
        Requests.Enqueue(new Seen(
            context.Request.Host.Value ?? string.Empty,
            context.Request.Protocol,
            context.User.FindFirst(MeshClaimTypes.SpiffeId)?.Value,
            context.User.FindFirst(MeshClaimTypes.Namespace)?.Value,
            context.User.FindFirst(MeshClaimTypes.ServiceAccount)?.Value,
            feature?.SpiffeId,
            context.Connection.ClientCertificate is not null,
            context.Connection.ClientCertificate?.Thumbprint));
    }

    internal sealed record Seen(string Host, string Protocol, string? ClaimSpiffeId, string? ClaimNamespace, string? ClaimServiceAccount, string? FeatureSpiffeId, bool HasClientCertificate, string? ClientCertificateThumbprint);

    private sealed class GreeterService(string name, Func<MeshBackend> backend) : Greeter.GreeterBase
    {
        public override Task<HelloReply> Hello(HelloRequest request, global::Grpc.Core.ServerCallContext context)
        {
            backend().Record(context.GetHttpContext());
            return Task.FromResult(new HelloReply { Backend = name, Authority = context.Host });
        }
    }
}
