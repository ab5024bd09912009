using Grpc.Core;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Inventory.V1;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// The sidecar's outbound port with real processes: the app (curl) calls a .NET mesh service as an HTTP proxy and by
/// Host; a host outside the mesh is refused by name; CONNECT is refused; gRPC goes through to an h2c app.
/// </summary>
public sealed class SidecarOutboundTests(ITestOutputHelper output)
{
    [Fact]
    public async Task AppCallsMeshService_AsProxyAndByHost_NonMeshHost502_Connect405()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "legacy");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        await using var app = await TestApp.StartAsync("legacy-1");
        await using var sidecar = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-1", app.Port), output);
        await SidecarKit.WaitReadyAsync(sidecar.Sidecar);
        var proxy = $"http://127.0.0.1:{sidecar.Sidecar.OutboundPort}";

        // HTTP_PROXY style: absolute-form request line.
        var (status, body) = await Eventually.ReturnsAsync(() => SidecarKit.CurlAsync("-x", proxy, "http://orders/orders/7"), r => r.Status == 200, "orders through the outbound proxy");
        output.WriteLine($"proxy: {status} {body}");
        Assert.Contains("orders-1", body, StringComparison.Ordinal);

        // A plain listener routing by Host.
        (status, body) = await SidecarKit.CurlAsync($"{proxy}/orders/7", "-H", "Host: orders");
        output.WriteLine($"host: {status} {body}");
        Assert.Equal(200, status);
        Assert.Contains("orders-1", body, StringComparison.Ordinal);

        // Outside the mesh: a clear 502 naming the host, nothing sent.
        (status, body) = await SidecarKit.CurlAsync("-x", proxy, "http://payments.example.invalid/charge");
        output.WriteLine($"non-mesh: {status} {body}");
        Assert.Equal(502, status);
        Assert.Contains("'payments.example.invalid' is not a mesh service", body, StringComparison.Ordinal);

        // CONNECT (https:// through the proxy) is refused with a reason.
        (status, body) = await SidecarKit.CurlAsync("-X", "CONNECT", "--request-target", "orders:443", "-H", "Host: orders:443", proxy);
        output.WriteLine($"connect: {status} {body}");
        Assert.Equal(405, status);
        Assert.Contains("CONNECT is not supported", body, StringComparison.Ordinal);

        // Source-side metrics of the app's calls, on the admin port.
        using var http = new HttpClient(new SocketsHttpHandler { UseProxy = false });
        var metrics = await http.GetStringAsync(new Uri(sidecar.Sidecar.Admin, "/stats/prometheus"));
        var requests = metrics.Split('\n').Where(line => line.StartsWith("istio_requests_total{", StringComparison.Ordinal)).ToList();
        output.WriteLine(string.Join('\n', requests));
        Assert.Contains(requests, line => line.Contains("reporter=\"source\"", StringComparison.Ordinal) && line.Contains("destination_service_name=\"orders\"", StringComparison.Ordinal));

        // The refused call too, as Istio reports REGISTRY_ONLY's: BlackHoleCluster, the host as the service.
        Assert.Contains(requests, line => line.Contains("destination_service_name=\"BlackHoleCluster\"", StringComparison.Ordinal)
            && line.Contains("destination_service=\"payments.example.invalid\"", StringComparison.Ordinal)
            && line.Contains("response_code=\"502\"", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Passthrough_NameResolvingToThisMachine_OwnPortRefusedOnce508_OtherPortPasses()
    {
        // With passthrough, a name that resolves to 127.0.0.1 (here the machine's hostname) on the outbound port brought
        // each request back into the sidecar, one connection per hop, until file descriptors ran out (found in review).
        var name = await SidecarKit.LoopbackNameAsync();
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "legacy");
        await using var app = await TestApp.StartAsync("legacy-1");
        await using var external = await TestApp.StartAsync("external-1");
        await using var sidecar = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy", "legacy-sidecar-1", app.Port, "--passthrough-non-mesh-hosts", "true"), output);
        await SidecarKit.WaitReadyAsync(sidecar.Sidecar);
        var outbound = sidecar.Sidecar.OutboundPort;
        var proxy = $"http://127.0.0.1:{outbound}";

        // The same name on another port is not this sidecar: it passes through.
        var (status, body) = await SidecarKit.CurlAsync("-x", proxy, $"http://{name}:{external.Port}/pay");
        output.WriteLine($"{name}:{external.Port}: {status} {body}");
        Assert.Equal(200, status);
        Assert.Contains("instance=external-1", body, StringComparison.Ordinal);

        // Counted as Istio counts ALLOW_ANY's: PassthroughCluster, the host as the service.
        using (var http = new HttpClient(new SocketsHttpHandler { UseProxy = false }))
        {
            var metrics = await http.GetStringAsync(new Uri(sidecar.Sidecar.Admin, "/stats/prometheus"));
            Assert.Contains(metrics.Split('\n'), line => line.StartsWith("istio_requests_total{", StringComparison.Ordinal)
                && line.Contains("destination_service_name=\"PassthroughCluster\"", StringComparison.Ordinal)
                && line.Contains($"destination_service=\"{name.ToLowerInvariant()}\"", StringComparison.Ordinal)
                && line.Contains("response_code=\"200\"", StringComparison.Ordinal));
        }

        (status, body) = await SidecarKit.CurlAsync("-x", proxy, $"http://{name}:{outbound}/loop");
        output.WriteLine($"{name}:{outbound}: {status} {body}");
        Assert.Equal(508, status);
        Assert.Contains($"'{name}:{outbound}' resolves to this machine", body, StringComparison.Ordinal);

        // One refusal, not a chain of hops each failing in turn.
        var failed = $@"An outbound request for {System.Text.RegularExpressions.Regex.Escape(name)}:{outbound} failed";
        await sidecar.Sidecar.Process.WaitForLineAsync(failed, MeshProcesses.StartTimeout);
        Assert.Equal(1, System.Text.RegularExpressions.Regex.Count(sidecar.Sidecar.Process.Output, failed));
    }

    [Fact]
    public async Task Grpc_MeshClientToH2cAppThroughSidecar_AndAppOutboundOverH2c()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        SidecarKit.WriteServiceEntry(mesh, "legacy-grpc", grpc: true);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        await using var app = await TestApp.StartAsync("grpc-app", grpc: true);
        await using var sidecar = new ProcessScope(await SidecarKit.StartSidecarAsync(mesh, "legacy-grpc", "legacy-grpc-sidecar", app.Port, "--app-protocol", "http2"), output);
        await SidecarKit.WaitReadyAsync(sidecar.Sidecar);
        await mesh.WaitForEndpointsAsync("legacy-grpc", 1);

        using var host = await mesh.CreateClientHostAsync(configureHost: builder =>
            builder.Services.AddGrpcClient<Inventory.InventoryClient>(o => o.Address = new Uri("http://legacy-grpc")));
        await host.StartAsync();
        var client = host.Services.GetRequiredService<Inventory.InventoryClient>();
        var reply = await Eventually.ReturnsAsync(
            () => TryReserveAsync(client),
            r => r?.Instance == "grpc-app",
            "a gRPC call through the sidecar");
        output.WriteLine($"gRPC through the sidecar: {reply}");
        Assert.Equal(41, reply!.Remaining);
        Assert.Matches(@"^By=spiffe://cluster\.local/ns/default/sa/legacy-grpc;Hash=[0-9a-f]{64};URI=spiffe://cluster\.local/ns/default/sa/test-client$", reply.Caller);

        // The app's own gRPC client speaks h2c to the outbound port (prior knowledge), the sidecar takes it into the mesh.
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress($"http://127.0.0.1:{sidecar.Sidecar.OutboundPort}", new Grpc.Net.Client.GrpcChannelOptions
        {
            HttpHandler = new HostHeaderHandler("inventory") { InnerHandler = new SocketsHttpHandler { UseProxy = false } },
        });
        var outbound = new Inventory.InventoryClient(channel);
        var call = await Eventually.ReturnsAsync(
            () => TryReserveAsync(outbound),
            r => r?.Instance == "inventory-1",
            "a gRPC call from the app to inventory through the outbound port");
        output.WriteLine($"gRPC out of the app: {call}");
        Assert.Equal("spiffe://cluster.local/ns/default/sa/legacy-grpc", call!.Caller);
        await host.StopAsync();
    }

    /// <summary>One call; null when it failed (the mesh may not have synced yet), so that a test can poll.</summary>
    private async Task<ReserveReply?> TryReserveAsync(Inventory.InventoryClient client)
    {
        try
        {
            return await client.ReserveAsync(new ReserveRequest { Sku = "sku-1", Quantity = 1 }, deadline: DateTime.UtcNow.AddSeconds(10));
        }
        catch (RpcException e)
        {
            output.WriteLine($"gRPC call failed: {e.Status}");
            return null;
        }
    }

    /// <summary>Names the mesh service in :authority, as an app does that points its gRPC client at the sidecar.</summary>
    private sealed class HostHeaderHandler(string host) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Host = host;
            return base.SendAsync(request, cancellationToken);
        }
    }
}
