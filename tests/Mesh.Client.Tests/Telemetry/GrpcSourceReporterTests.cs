using System.Diagnostics.Metrics;
using Grpc.Core;
using Mesh.Client.Tests.Grpc;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>reporter="source" on <c>xds:///</c> gRPC channels (the same handlers as IHttpClientFactory clients), against real h2c Kestrel.</summary>
public sealed class GrpcSourceReporterTests
{
    [Fact]
    public async Task XdsChannel_EachCallCountedOnce_AsGrpc()
    {
        await using var backend = await TestBackend.StartAsync("inventory-0", grpc: true);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(backend.Port)])))).BuildServiceProvider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);

        for (var i = 0; i < 6; i++)
        {
            Assert.Equal("inventory-0", (await client.HelloAsync(new HelloRequest())).Backend);
        }

        Assert.Equal(6, metrics.Requests.Count);
        Assert.All(metrics.Requests, m =>
        {
            Assert.Equal("grpc", m.Labels["request_protocol"]);
            Assert.Equal("200", m.Labels["response_code"]);
            Assert.Equal("inventory.default.svc.cluster.local", m.Labels["destination_service"]);
            Assert.Equal("inventory", m.Labels["destination_service_name"]);
        });
    }

    [Fact]
    public async Task XdsChannel_TrailersOnlyFailure_ReportsItsGrpcStatus()
    {
        await using var backend = await TestBackend.StartAsync("inventory-0", grpc: true, grpcFailure: StatusCode.PermissionDenied);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(backend.Port)])))).BuildServiceProvider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);

        var error = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.PermissionDenied, error.StatusCode);
        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("grpc", "200", "7", "-"), (request.Labels["request_protocol"], request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
    }

    [Fact]
    public async Task XdsChannel_MeshFailures_ReportTheGrpcStatusTheirCodeMapsTo()
    {
        // As Envoy's getGrpcStatus: a call the mesh failed without an answer is reported with its HTTP code's gRPC status
        // (UH 503 → UNAVAILABLE, NR 404 → UNIMPLEMENTED), so alerts on grpc_response_status="14" see mesh failures too.
        var noEndpoints = TestSnapshots.Cluster("inventory", 80, []);
        var snapshot = new Mesh.Client.Discovery.MeshSnapshot("test", TestSnapshots.Bind("inventory", TestSnapshots.Service("inventory", 80, noEndpoints)), [noEndpoints]);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        using var metrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Greeter.GreeterClient(channel);

        var error = await Assert.ThrowsAsync<RpcException>(async () => await client.HelloAsync(new HelloRequest()));

        Assert.Equal(StatusCode.Unavailable, error.StatusCode);
        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("grpc", "503", "14", "UH"), (request.Labels["request_protocol"], request.Labels["response_code"], request.Labels["grpc_response_status"], request.Labels["response_flags"]));
    }

    [Theory]
    [InlineData(400, 13)]
    [InlineData(401, 16)]
    [InlineData(403, 7)]
    [InlineData(404, 12)]
    [InlineData(429, 14)]
    [InlineData(502, 14)]
    [InlineData(503, 14)]
    [InlineData(504, 14)]
    [InlineData(200, 2)]
    [InlineData(500, 2)]
    public void HttpToGrpcStatus_IsEnvoysMapping(int http, int grpc) =>
        Assert.Equal(grpc, Mesh.Client.Telemetry.IstioRequestMetrics.HttpToGrpcStatus(http));
}
