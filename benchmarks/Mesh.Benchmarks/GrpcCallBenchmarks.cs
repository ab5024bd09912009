using System.Collections.Immutable;
using System.Net;
using BenchmarkDotNet.Attributes;
using Grpc.Core;
using Grpc.Net.Client;
using Mesh.Benchmarks.V1;
using Mesh.Client;
using Mesh.Client.Discovery;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;

namespace Mesh.Benchmarks;

/// <summary>
/// One unary gRPC call over h2c to an in-process Kestrel Echo service on 127.0.0.1: a plain <see cref="GrpcChannel"/>,
/// an <c>xds:///echo</c> mesh channel, and AddGrpcClient factory clients with and without the mesh. The server's
/// allocations are the same in every case, so the differences in Allocated are the client paths'.
/// </summary>
[MemoryDiagnoser]
public class GrpcCallBenchmarks
{
    private readonly PingRequest _ping = new() { Text = "ping" };
    private WebApplication _server = null!;
    private ServiceProvider _services = null!;
    private GrpcChannel _plainChannel = null!;
    private GrpcChannel _meshChannel = null!;
    private Echo.EchoClient _plain = null!;
    private Echo.EchoClient _mesh = null!;
    private Echo.EchoClient _factory = null!;
    private Echo.EchoClient _factoryMesh = null!;

    [GlobalSetup]
    public void Setup()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        _server = builder.Build();
        _server.MapGrpcService<EchoService>();
        _server.StartAsync().GetAwaiter().GetResult();
        var address = new Uri(_server.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single());

        const string fqdn = "echo.default.svc.cluster.local";
        var cluster = new MeshCluster($"outbound|80||{fqdn}", fqdn, LoadBalancingPolicy.RoundRobin, ImmutableArray.Create(new MeshEndpoint("127.0.0.1", address.Port)));
        var service = new MeshService($"{fqdn}:80", fqdn, 80, [new MeshRoute("/", null, true, [new WeightedCluster(cluster, 100)])]);
        var snapshot = new MeshSnapshot("1", [new("echo", service), new(fqdn, service)], [cluster]);

        var services = new ServiceCollection();
        services.AddLogging();
        services.AddServiceMeshCore();
        services.Configure<ServiceMeshOptions>(o => o.ControlPlane.Address = new Uri("http://127.0.0.1:15010"));
        services.Replace(ServiceDescriptor.Singleton<IMeshSnapshotSource>(new FixedSource(snapshot)));
        services.AddGrpcClient<Echo.EchoClient>("plain", o => o.Address = address).WithoutServiceMesh();
        services.AddGrpcClient<Echo.EchoClient>("mesh", o => o.Address = new Uri("http://echo"));
        _services = services.BuildServiceProvider();

        _plainChannel = GrpcChannel.ForAddress(address);
        _meshChannel = _services.CreateMeshGrpcChannel("xds:///echo");
        _plain = new Echo.EchoClient(_plainChannel);
        _mesh = new Echo.EchoClient(_meshChannel);
        var factory = _services.GetRequiredService<Grpc.Net.ClientFactory.GrpcClientFactory>();
        _factory = factory.CreateClient<Echo.EchoClient>("plain");
        _factoryMesh = factory.CreateClient<Echo.EchoClient>("mesh");
    }

    [Benchmark(Baseline = true)]
    public async Task<PingReply> PlainChannel() => await _plain.PingAsync(_ping);

    [Benchmark]
    public async Task<PingReply> XdsChannel() => await _mesh.PingAsync(_ping);

    [Benchmark]
    public async Task<PingReply> FactoryWithoutMesh() => await _factory.PingAsync(_ping);

    [Benchmark]
    public async Task<PingReply> FactoryMesh() => await _factoryMesh.PingAsync(_ping);

    [GlobalCleanup]
    public void Cleanup()
    {
        _plainChannel.Dispose();
        _meshChannel.Dispose();
        _services.Dispose();
        _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private sealed class EchoService : Echo.EchoBase
    {
        private static readonly Task<PingReply> Pong = Task.FromResult(new PingReply { Text = "pong" });

        public override Task<PingReply> Ping(PingRequest request, ServerCallContext context) => Pong;
    }

    private sealed class FixedSource(MeshSnapshot snapshot) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }
}
