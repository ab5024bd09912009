using System.Diagnostics;
using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using SpanKind = Mesh.IntegrationTests.Otlp.Trace.Span.Types.SpanKind;
using StatusCode = Mesh.IntegrationTests.Otlp.Trace.Status.Types.StatusCode;

namespace Mesh.IntegrationTests.Telemetry;

/// <summary>
/// Issue 10 "Done when": a request through frontend → orders → inventory (gRPC), the three demo services as real
/// processes exporting over OTLP/gRPC to the test's own receiver, arrives as one trace: each service's server span,
/// the mesh's attempt spans with what the mesh decided, .NET's client spans under them, the parent links across the
/// three processes, and a retried attempt (a second inventory endpoint that refuses connections).
/// </summary>
public sealed class TraceExportTests(ITestOutputHelper output)
{
    private const int Requests = 12;
    private const string Driver = "spiffe://cluster.local/ns/default/sa/test-driver";
    private const string FrontendId = "spiffe://cluster.local/ns/default/sa/frontend";
    private const string OrdersId = "spiffe://cluster.local/ns/default/sa/orders";
    private const string InventoryId = "spiffe://cluster.local/ns/default/sa/inventory";
    private const string InventoryHost = "inventory.default.svc.cluster.local";
    private const string TraceState = "mesh=e2e";

    [Fact]
    public async Task FrontendOrdersInventory_OneTrace_WithTheMeshsAttributesAndARetriedGrpcAttempt()
    {
        var started = Stopwatch.StartNew();
        await using var receiver = await OtlpTraceReceiver.StartAsync();
        await using var mesh = await LocalMesh.StartAsync(output);

        // The demo's policies (STRICT mTLS, frontend may not DELETE at orders), and a second inventory endpoint that refuses
        // connections, with a route that retries a connection failure: round robin sends about every other call there first.
        File.Copy(Path.Combine(Repository.Root, "samples", "Mesh.Demo", "mesh-config", "security.yaml"), Path.Combine(mesh.ConfigDirectory, "security.yaml"));
        var dead = Ports.Free();
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "inventory-retry.yaml"), $$"""
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata: {name: inventory-refusing, namespace: default}
            spec:
              address: 127.0.0.1
              ports: {grpc: {{dead}}}
              labels: {app: inventory}
              serviceAccount: inventory
            ---
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: inventory, namespace: default}
            spec:
              hosts: [{{InventoryHost}}]
              http:
              - name: reserve
                route:
                - destination: {host: {{InventoryHost}}}
                retries: {attempts: 2, retryOn: "connect-failure,unavailable"}
            """);

        // Export every span at once to the receiver (the default sampler, parent-based always-on, records them all).
        var otlp = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint.ToString(),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "grpc",
            ["OTEL_TRACES_SAMPLER"] = "always_on",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "100",
        };
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1", otlp);
        await mesh.WaitForEndpointsAsync("inventory", 2);
        await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1", otlp);
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1", otlp);

        // Each request starts its own trace at the driver (a traceparent of the test's own root span), over mTLS.
        var driverIdentity = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "test-driver", Path.Combine(mesh.StateDirectory, "..", "driver-identity"));
        using var driver = WorkloadCertificates.CreateMtlsClient(driverIdentity);
        var roots = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < Requests; i++)
        {
            var trace = ActivityTraceId.CreateRandom().ToHexString();
            var root = ActivitySpanId.CreateRandom().ToHexString();
            roots[trace] = root;
            using var request = new HttpRequestMessage(HttpMethod.Get, new UriBuilder(frontend.Address) { Scheme = "https" }.Uri);
            request.Headers.Add("traceparent", $"00-{trace}-{root}-01");
            request.Headers.Add("tracestate", TraceState);
            using var response = await driver.SendAsync(request);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"request {i}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }

        // A trace whose call to inventory took two attempts, once all of its spans (inventory's server span last) arrived.
        var (traceId, spans) = await Eventually.ReturnsAsync(
            () => Task.FromResult(RetriedTrace(receiver, roots.Keys)),
            found => found.Spans is not null,
            $"a trace with a retried attempt to inventory among {Requests} requests ({receiver.Exports} exports, {receiver.Spans.Count} spans so far)",
            TimeSpan.FromSeconds(60));
        output.WriteLine($"trace {traceId}, {spans!.Count} spans:");
        foreach (var span in spans)
        {
            output.WriteLine("  " + span);
        }

        // W3C trace context crossed every hop (HTTP, then gRPC): the driver's tracestate is on every span of all three.
        Assert.All(spans, s => Assert.Equal(TraceState, s.TraceState));

        // frontend: ASP.NET Core's server span is the child of the driver's traceparent and carries the authz decision.
        var frontendServer = Assert.Single(spans, s => s.Service == "frontend" && s.Kind == SpanKind.Server);
        Assert.Equal(roots[traceId!], frontendServer.ParentSpanId);
        Assert.Equal("allow", frontendServer["mesh.authz.decision"]);
        Assert.Equal(Driver, frontendServer["mesh.peer.spiffe_id"]);

        // frontend → orders: the attempt span under the server span, .NET's client span under it, orders' server span under that.
        var attempts = spans.Where(s => s.Service == "orders" && s.Scope == "Mesh.Client").OrderBy(s => s["mesh.attempt"], StringComparer.Ordinal).ToList();
        Assert.Equal(2, attempts.Count);
        var ordersServer = Assert.Single(Ancestors(spans, attempts[0]), s => s.Service == "orders" && s.Kind == SpanKind.Server);
        var frontendHttp = Parent(spans, ordersServer);
        Assert.Equal(("frontend", "System.Net.Http", SpanKind.Client), (frontendHttp.Service, frontendHttp.Scope, frontendHttp.Kind));
        var frontendAttempt = Parent(spans, frontendHttp);
        AssertAttempt(frontendAttempt, "frontend", "orders.default.svc.cluster.local", 1);
        Assert.Equal(OrdersId, frontendAttempt["mesh.peer.spiffe_id"]);
        Assert.Contains(frontendServer, Ancestors(spans, frontendAttempt));
        Assert.Equal("allow", ordersServer["mesh.authz.decision"]);
        Assert.Equal(FrontendId, ordersServer["mesh.peer.spiffe_id"]);

        // orders → inventory: two attempts under the same parent (the gRPC call), the first refused, the second retried.
        Assert.Equal(attempts[0].ParentSpanId, attempts[1].ParentSpanId);
        var refused = attempts[0];
        AssertAttempt(refused, "orders", InventoryHost, 1);
        Assert.Equal(dead.ToString(System.Globalization.CultureInfo.InvariantCulture), refused["server.port"]);
        Assert.Equal("connection_error", refused["error.type"]);
        Assert.Equal(StatusCode.Error, refused.Status);
        Assert.Null(refused["mesh.peer.spiffe_id"]);
        var retried = attempts[1];
        AssertAttempt(retried, "orders", InventoryHost, 2);
        Assert.Equal("connection_error", retried["mesh.retry.reason"]);
        Assert.Equal("1", retried["http.request.resend_count"]);
        Assert.Null(retried["error.type"]);
        Assert.Equal(InventoryId, retried["mesh.peer.spiffe_id"]);
        Assert.All(attempts, a => Assert.Equal("reserve", a["mesh.route"]));
        Assert.All(attempts, a => Assert.Equal($"outbound|50051||{InventoryHost}", a["mesh.cluster"]));

        // Each attempt has its own .NET client span; inventory's server span hangs under the retried attempt's.
        var refusedHttp = Assert.Single(spans, s => s.Scope == "System.Net.Http" && s.ParentSpanId == refused.SpanId);
        Assert.Equal("connection_error", refusedHttp["error.type"]);
        var retriedHttp = Assert.Single(spans, s => s.Scope == "System.Net.Http" && s.ParentSpanId == retried.SpanId);
        var inventoryServer = Assert.Single(spans, s => s.Service == "inventory" && s.Kind == SpanKind.Server);
        Assert.Equal(retriedHttp.SpanId, inventoryServer.ParentSpanId);
        Assert.Equal("allow", inventoryServer["mesh.authz.decision"]);
        Assert.Equal(OrdersId, inventoryServer["mesh.peer.spiffe_id"]);

        // frontend's DELETEs (one order in five) are denied by orders' DENY policy: shown on orders' server span.
        var denied = receiver.Spans.Where(s => s.Service == "orders" && s.Kind == SpanKind.Server && s["mesh.authz.decision"] == "deny").ToList();
        output.WriteLine($"denied DELETEs seen at orders: {denied.Count}");
        Assert.All(denied, d =>
        {
            Assert.Equal(FrontendId, d["mesh.peer.spiffe_id"]);
            Assert.Contains("orders-no-cancel-from-frontend", d["mesh.authz.policy"], StringComparison.Ordinal);
        });

        output.WriteLine($"test ran {started.Elapsed.TotalSeconds:0.0} s");
    }

    private static (string? TraceId, IReadOnlyList<ReceivedSpan>? Spans) RetriedTrace(OtlpTraceReceiver receiver, IEnumerable<string> traces)
    {
        foreach (var trace in traces)
        {
            var spans = receiver.Trace(trace);
            if (spans.Count(s => s.Service == "orders" && s.Scope == "Mesh.Client") >= 2
                && spans.Any(s => s.Service == "inventory" && s.Kind == SpanKind.Server)
                && spans.Any(s => s.Service == "frontend" && s.Kind == SpanKind.Server))
            {
                return (trace, spans);
            }
        }

        return (null, null);
    }

    private static void AssertAttempt(ReceivedSpan span, string service, string host, int attempt)
    {
        Assert.Equal((service, "Mesh.Client", "mesh.attempt", SpanKind.Internal), (span.Service, span.Scope, span.Name, span.Kind));
        Assert.Equal(host, span["mesh.service"]);
        Assert.Equal(attempt.ToString(System.Globalization.CultureInfo.InvariantCulture), span["mesh.attempt"]);
        Assert.Equal("127.0.0.1", span["server.address"]);
    }

    private static ReceivedSpan Parent(IReadOnlyList<ReceivedSpan> spans, ReceivedSpan child) =>
        Assert.Single(spans, s => s.SpanId == child.ParentSpanId);

    private static List<ReceivedSpan> Ancestors(IReadOnlyList<ReceivedSpan> spans, ReceivedSpan span)
    {
        var ancestors = new List<ReceivedSpan>();
        for (var parent = spans.FirstOrDefault(s => s.SpanId == span.ParentSpanId); parent is not null; parent = spans.FirstOrDefault(s => s.SpanId == parent.ParentSpanId))
        {
            ancestors.Add(parent);
        }

        return ancestors;
    }

}
