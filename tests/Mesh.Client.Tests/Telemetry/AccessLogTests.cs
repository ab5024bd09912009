using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Mesh.Client.Routing;
using Mesh.Client.Security;
using Mesh.Client.Telemetry;
using Mesh.Client.Tests.Security;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RetryPolicy = Mesh.Xds.Envoy.Config.Route.V3.RetryPolicy;
using RouteAction = Mesh.Xds.Envoy.Config.Route.V3.RouteAction;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// The access log end to end: IHttpClientFactory clients and Kestrel backends on 127.0.0.1, real mTLS with SPIFFE
/// certificates, real RBAC; a logger provider receives the entries as a structured sink would.
/// </summary>
public sealed class AccessLogTests : IDisposable
{
    private static readonly string Frontend = TestCa.Id("frontend");
    private static readonly string Orders = TestCa.Id("orders");

    private readonly TestCa _ca = new(intermediate: true);

    public void Dispose() => _ca.Dispose();

    [Fact]
    public async Task Mtls_AllowedAndDenied_OneOutboundAndOneInboundEntryEach_WithPeersRouteAndUpstream()
    {
        using var backendLog = new AccessLogCapture();
        await using var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca, services => services.AddSingleton<ILoggerProvider>(backendLog), options => options.Telemetry.AccessLog.Enabled = true);
        using var clientLog = new AccessLogCapture();
        await using var provider = Client(clientLog, ("orders", [TestSnapshots.Endpoint(backend.Port)]));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using (var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/items?access_token=secret"))
        {
            request.Headers.Add("X-Request-Id", "req-allowed");
            using var allowed = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }

        using (var refused = await client.DeleteAsync(new Uri("http://orders/items/1")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        // The inbound entry is written when the middleware returns, which may be a moment after the client has the response.
        await Poll.UntilAsync(() => backendLog.Entries.Count >= 2, "the backend's two access log entries", TimeSpan.FromSeconds(30));
        var outbound = clientLog.Of("source");
        Assert.Equal(2, outbound.Count);
        Assert.Equal(2, clientLog.Entries.Count);
        var inbound = backendLog.Of("destination");
        Assert.Equal(2, inbound.Count);
        Assert.Equal(2, backendLog.Entries.Count);

        var sent = outbound[0];
        Assert.Equal(("GET", "/items", 200, "-", "via_upstream"), (sent.Text("method"), sent.Text("path"), (int)sent.Fields["response_code"]!, sent.Text("response_flags"), sent.Text("response_code_details")));
        Assert.Equal(("outbound", "default"), (sent.Text("direction"), sent.Text("route_name")));
        Assert.Equal($"127.0.0.1:{backend.Port}", sent.Text("upstream_host"));
        Assert.Equal("outbound|80||orders.default.svc.cluster.local", sent.Text("upstream_cluster"));
        Assert.Equal(Orders, sent.Text("destination_principal"));
        Assert.Equal(1, sent.Fields["attempts"]);
        Assert.Equal("req-allowed", sent.Text("request_id"));
        Assert.Equal("orders", sent.Text("authority"));
        Assert.DoesNotContain("secret", sent.Message, StringComparison.Ordinal);

        var denied = outbound[1];
        Assert.Equal(("DELETE", "/items/1", 403, "-", "via_upstream"), (denied.Text("method"), denied.Text("path"), (int)denied.Fields["response_code"]!, denied.Text("response_flags"), denied.Text("response_code_details")));
        Assert.Equal(Orders, denied.Text("destination_principal"));

        var received = Assert.Single(inbound, e => e.Text("method") == "GET");
        Assert.Equal(("/items", 200, "via_upstream", "inbound"), (received.Text("path"), (int)received.Fields["response_code"]!, received.Text("response_code_details"), received.Text("direction")));
        Assert.Equal(Frontend, received.Text("source_principal"));
        Assert.Equal(Orders, received.Text("destination_principal"));
        Assert.Equal($"inbound|{backend.Port}||", received.Text("upstream_cluster"));
        Assert.Equal($"127.0.0.1:{backend.Port}", received.Text("upstream_host"));
        Assert.Equal($"127.0.0.1:{backend.Port}", received.Text("downstream_local_address"));
        Assert.StartsWith("127.0.0.1:", received.Text("downstream_remote_address"), StringComparison.Ordinal);
        Assert.Equal("/{**path}", received.Text("route_name"));
        Assert.Equal("orders", received.Text("requested_server_name")); // the SNI the mesh client sent
        Assert.Equal("req-allowed", received.Text("request_id"));
        Assert.DoesNotContain("secret", received.Message, StringComparison.Ordinal);

        var refusedEntry = Assert.Single(inbound, e => e.Text("method") == "DELETE");
        Assert.Equal((403, "-", "rbac_access_denied"), ((int)refusedEntry.Fields["response_code"]!, refusedEntry.Text("response_flags"), refusedEntry.Text("response_code_details")));
        Assert.Equal(Frontend, refusedEntry.Text("source_principal"));

        // RBAC refused before routing: no application endpoint matched.
        Assert.Null(refusedEntry.Fields["route_name"]);
    }

    [Fact]
    public async Task Failures_ConnectionRefusedIsUF_NoEndpointIsUH_503_WithTheClusterAndAttempts()
    {
        using var clientLog = new AccessLogCapture();
        await using var provider = Client(clientLog, ("payments", [TestSnapshots.Endpoint(Ports.Closed())]), ("stock", []));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync(new Uri("http://payments/pay")));
        await Assert.ThrowsAsync<NoHealthyEndpointException>(() => client.GetAsync(new Uri("http://stock/items")));

        Assert.Equal(2, clientLog.Entries.Count);
        var refused = Assert.Single(clientLog.Entries, e => e.Text("upstream_cluster") == "outbound|80||payments.default.svc.cluster.local");
        Assert.Equal((503, "UF", "upstream_reset_before_response_started{connection_failure}"), ((int)refused.Fields["response_code"]!, refused.Text("response_flags"), refused.Text("response_code_details")));
        Assert.StartsWith("127.0.0.1:", refused.Text("upstream_host"), StringComparison.Ordinal);
        Assert.NotNull(refused.Text("upstream_transport_failure_reason"));
        Assert.Equal(1, refused.Fields["attempts"]);
        Assert.Null(refused.Fields["destination_principal"]);

        var unhealthy = Assert.Single(clientLog.Entries, e => e.Text("upstream_cluster") == "outbound|80||stock.default.svc.cluster.local");
        Assert.Equal((503, "UH", "no_healthy_upstream"), ((int)unhealthy.Fields["response_code"]!, unhealthy.Text("response_flags"), unhealthy.Text("response_code_details")));
        Assert.Null(unhealthy.Fields["upstream_host"]);
        Assert.Equal("default", unhealthy.Text("route_name"));
    }

    [Fact]
    public async Task SecureNamingRefused_UF_TheReasonNamesBothIdentities_NoVerifiedPeer()
    {
        using var backendLog = new AccessLogCapture();
        await using var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca, services => services.AddSingleton<ILoggerProvider>(backendLog), options => options.Telemetry.AccessLog.Enabled = true);
        using var clientLog = new AccessLogCapture();
        var expected = TestCa.Id("payments");
        await using var provider = Client(clientLog, new UpstreamTlsSettings([new StringMatch(StringMatchKind.Exact, expected, false)]), ("orders", [TestSnapshots.Endpoint(backend.Port)]));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        await Assert.ThrowsAsync<ServiceMeshException>(() => client.GetAsync(new Uri("http://orders/items")));

        var entry = Assert.Single(clientLog.Entries);
        Assert.Equal((503, "UF"), ((int)entry.Fields["response_code"]!, entry.Text("response_flags")));
        var reason = entry.Text("upstream_transport_failure_reason");
        Assert.NotNull(reason);
        Assert.Contains(expected, reason, StringComparison.Ordinal);
        Assert.Contains(Orders, reason, StringComparison.Ordinal);
        Assert.Null(entry.Fields["destination_principal"]);
        Assert.Equal($"127.0.0.1:{backend.Port}", entry.Text("upstream_host"));
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Retried_OneEntry_TheLastAttemptsOutcome_URX_AttemptsCounted()
    {
        await using var backend = await TestBackend.StartAsync("orders-0");
        using var clientLog = new AccessLogCapture();
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(backend.Port)]);
        var errors = new List<string>();
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "orders-route")
        {
            Resilience = RouteResilience.Decode(new RouteAction { RetryPolicy = new RetryPolicy { RetryOn = "5xx", NumRetries = 2 } }, hostPolicy: null, "route", errors),
        };
        Assert.Empty(errors);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [cluster]);
        var services = MeshServices.Create(new FixedSnapshotSource(snapshot), options => options.Telemetry.AccessLog.Enabled = true);
        services.AddSingleton<ILoggerProvider>(clientLog);
        await using var provider = services.BuildServiceProvider();

        using var response = await provider.GetRequiredService<IHttpClientFactory>().CreateClient().GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(3, backend.Hits);
        var entry = Assert.Single(clientLog.Entries);
        Assert.Equal((500, "URX", 3, "orders-route"), ((int)entry.Fields["response_code"]!, entry.Text("response_flags"), (int)entry.Fields["attempts"]!, entry.Text("route_name")));
    }

    [Fact]
    public async Task SampledOut_OnlyTheFailureIsLogged()
    {
        await using var backend = await TestBackend.StartAsync("orders-0");
        using var clientLog = new AccessLogCapture();
        var services = MeshServices.Create(
            new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(backend.Port)]))),
            options =>
            {
                options.Resilience.MaxRetryAttempts = 0;
                (options.Telemetry.AccessLog.Enabled, options.Telemetry.AccessLog.SampleRate) = (true, 0);
            });
        services.AddSingleton<ILoggerProvider>(clientLog);
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/ok")));
        }

        using var failed = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
        var entry = Assert.Single(clientLog.Entries);
        Assert.Equal(("/fail", 500), (entry.Text("path"), (int)entry.Fields["response_code"]!));
    }

    [Fact]
    public async Task Off_NothingLogged_NoRequestFollowed()
    {
        await using var backend = await TestBackend.StartAsync("orders-0");
        using var clientLog = new AccessLogCapture();
        var services = MeshServices.Create(new FixedSnapshotSource(TestSnapshots.Snapshot(("orders", 80, [TestSnapshots.Endpoint(backend.Port)]))));
        services.AddSingleton<ILoggerProvider>(clientLog);
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/fail");
        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.False(provider.GetRequiredService<MeshAccessLog>().Enabled);
        Assert.Null(Mesh.Client.Http.AttemptTrail.Of(request));
        Assert.Empty(clientLog.Entries);
    }

    [Fact]
    public async Task XdsGrpcChannel_SampledOut_TheFailedCallIsLogged_WithItsGrpcStatus()
    {
        await using var backend = await TestBackend.StartAsync("inventory-0", grpc: true, grpcFailure: global::Grpc.Core.StatusCode.PermissionDenied);
        using var clientLog = new AccessLogCapture();
        var services = MeshServices.Create(
            new FixedSnapshotSource(TestSnapshots.Snapshot(("inventory", 80, [TestSnapshots.Endpoint(backend.Port)]))),
            options => (options.Telemetry.AccessLog.Enabled, options.Telemetry.AccessLog.SampleRate) = (true, 0));
        services.AddSingleton<ILoggerProvider>(clientLog);
        await using var provider = services.BuildServiceProvider();
        using var channel = provider.CreateMeshGrpcChannel("xds:///inventory");
        var client = new Mesh.Client.Tests.Grpc.Greeter.GreeterClient(channel);

        var error = await Assert.ThrowsAsync<global::Grpc.Core.RpcException>(async () => await client.HelloAsync(new Mesh.Client.Tests.Grpc.HelloRequest()));

        Assert.Equal(global::Grpc.Core.StatusCode.PermissionDenied, error.StatusCode);
        var entry = Assert.Single(clientLog.Entries);
        Assert.Equal((200, 7, "HTTP/2", "POST"), ((int)entry.Fields["response_code"]!, (int)entry.Fields["grpc_status"]!, entry.Text("protocol"), entry.Text("method")));
        Assert.EndsWith("/Hello", entry.Text("path"), StringComparison.Ordinal);
        Assert.Equal($"127.0.0.1:{backend.Port}", entry.Text("upstream_host"));
        Assert.Equal("outbound|80||inventory.default.svc.cluster.local", entry.Text("upstream_cluster"));
    }

    private ServiceProvider Client(AccessLogCapture log, params (string Name, MeshEndpoint[] Endpoints)[] targets) =>
        Client(log, new UpstreamTlsSettings([]), targets);

    /// <summary>A client whose services each have one mTLS cluster with the given endpoints and one route named <c>default</c>.</summary>
    private ServiceProvider Client(AccessLogCapture log, UpstreamTlsSettings tls, params (string Name, MeshEndpoint[] Endpoints)[] targets)
    {
        var bindings = new List<KeyValuePair<string, MeshService>>();
        var clusters = new List<MeshCluster>();
        foreach (var (name, endpoints) in targets)
        {
            var host = TestSnapshots.Names.Qualify(name);
            var cluster = new MeshCluster($"outbound|80||{host}", host, LoadBalancingPolicy.RoundRobin, [.. endpoints], tls: tls);
            clusters.Add(cluster);
            bindings.AddRange(TestSnapshots.Bind(name, TestSnapshots.Service(name, 80, new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default"))));
        }

        var services = MeshServices.Create(new FixedSnapshotSource(new MeshSnapshot("test", bindings, clusters)), options =>
        {
            options.Resilience.MaxRetryAttempts = 0;
            options.Telemetry.AccessLog.Enabled = true;
        });
        services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(_ca.Issue([Frontend])));
        services.AddSingleton<ILoggerProvider>(log);
        return services.BuildServiceProvider();
    }

}
