using System.Diagnostics.Metrics;
using System.Net;
using Mesh.Client.Authorization;
using Mesh.Client.Discovery;
using Mesh.Client.Security;
using Mesh.Client.Tests.Security;
using Mesh.Xds.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.Client.Tests.Authorization.IstioPolicies;
using Mesh.Client.Tests.Support;

namespace Mesh.Client.Tests.Telemetry;

/// <summary>
/// reporter="destination": real Kestrel on 127.0.0.1 with the mesh's inbound middleware, a MeterListener on the app's
/// meter. Every request counted once, the ones the mesh refuses included; mTLS callers by their SPIFFE ID.
/// </summary>
public sealed class DestinationReporterTests : IDisposable
{
    private static readonly string Frontend = TestCa.Id("frontend");

    private readonly TestCa _ca = new(intermediate: true);
    private readonly string _rootFile = Path.GetTempFileName();

    public void Dispose()
    {
        _ca.Dispose();
        File.Delete(_rootFile);
    }

    [Fact]
    public async Task Plaintext_AllowedAndDenied_CountedWithTheirCodes_RbacDenialHasEnvoysNoFlag()
    {
        await using var app = await PlaintextApp.StartAsync();
        using var metrics = new IstioMetricsListener(app.Services.GetRequiredService<IMeterFactory>());
        using var client = new HttpClient();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(new Uri($"http://127.0.0.1:{app.Port}/orders/{i}"))).StatusCode);
        }

        for (var i = 0; i < 2; i++)
        {
            Assert.Equal(HttpStatusCode.Forbidden, (await client.DeleteAsync(new Uri($"http://127.0.0.1:{app.Port}/orders/{i}"))).StatusCode);
        }

        // Recorded when the middleware returns, which may be a moment after the client has read the response.
        await Poll.UntilAsync(() => metrics.Requests.Count >= 5, "the destination reporter to record the five requests (it records when the middleware returns)", TimeSpan.FromSeconds(30));
        Assert.Equal(5, metrics.Requests.Count);
        Assert.Equal(3, metrics.Requests.Count(m => m.Labels["response_code"] == "200"));
        var denied = metrics.Requests.Where(m => m.Labels["response_code"] == "403").ToList();
        Assert.Equal(2, denied.Count);
        var expected = new Dictionary<string, string>
        {
            ["reporter"] = "destination",
            ["source_workload"] = "unknown",
            ["source_workload_namespace"] = "unknown",
            ["source_principal"] = "unknown",
            ["source_app"] = "unknown",
            ["source_version"] = "unknown",
            ["source_canonical_service"] = "unknown",
            ["source_canonical_revision"] = "latest",
            ["source_cluster"] = "east",
            ["destination_workload"] = "orders-v2",
            ["destination_workload_namespace"] = "shop",
            ["destination_principal"] = "unknown",
            ["destination_app"] = "orders",
            ["destination_version"] = "v2",
            ["destination_service"] = "orders.shop.svc.cluster.local",
            ["destination_service_name"] = "orders",
            ["destination_service_namespace"] = "shop",
            ["destination_canonical_service"] = "orders",
            ["destination_canonical_revision"] = "v2",
            ["destination_cluster"] = "east",
            ["request_protocol"] = "http",
            ["response_code"] = "403",
            ["grpc_response_status"] = string.Empty,

            // Envoy's RBAC filter sets no response flag on its 403 (the denial is in RESPONSE_CODE_DETAILS).
            ["response_flags"] = "-",
            ["connection_security_policy"] = "none",
        };
        Assert.All(denied, m => Assert.Equal(expected.OrderBy(p => p.Key), m.Labels.OrderBy(p => p.Key)));
        Assert.All(metrics.Of("istio_request_duration_milliseconds"), m => Assert.True(m.Value >= 0));
        Assert.Equal(5, metrics.Of("istio_request_duration_milliseconds").Count);
    }

    [Fact]
    public async Task EndpointOutOfHttpMetrics_ScrapesAndProbesNotCounted_ButRefusedOnesAre()
    {
        await using var app = await PlaintextApp.StartAsync();
        using var metrics = new IstioMetricsListener(app.Services.GetRequiredService<IMeterFactory>());
        using var client = new HttpClient();

        // ASP.NET Core's own request metrics listened to, as under an OpenTelemetry MeterProvider with AddAspNetCoreInstrumentation:
        // only then does a request carry the IHttpMetricsTagsFeature the probe endpoint turns off.
        using var hosting = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "Microsoft.AspNetCore.Hosting")
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        hosting.Start();

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("# metrics", await client.GetStringAsync(new Uri($"http://127.0.0.1:{app.Port}/metrics")));
            Assert.Equal("ok", await client.GetStringAsync(new Uri($"http://127.0.0.1:{app.Port}/healthz")));
        }

        // The mesh refused this one before it reached its endpoint: it is the mesh's answer, and counted.
        app.Services.GetRequiredService<InboundPolicyStore>().Replace([PlaintextApp.Policy(app.Port, Deny("no-scrape-delete", Rule(to: [Operation(methods: ["DELETE"], paths: ["/metrics"])])))]);
        Assert.Equal(HttpStatusCode.Forbidden, (await client.DeleteAsync(new Uri($"http://127.0.0.1:{app.Port}/metrics"))).StatusCode);
        Assert.Equal("1", await client.GetStringAsync(new Uri($"http://127.0.0.1:{app.Port}/orders/1")));

        await Poll.UntilAsync(() => metrics.Requests.Count >= 2, "the destination reporter to record the refused DELETE and the call to /orders/1", TimeSpan.FromSeconds(30));
        Assert.Equal(["200", "403"], metrics.Requests.Select(m => m.Labels["response_code"]).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task SecureWorkload_PlaintextCallerOnPermissive_NoPrincipalOnEitherSide()
    {
        // As Istio's server side: both principals come from the caller's TLS connection, so a plaintext one has neither,
        // whatever SPIFFE ID this workload holds.
        await using var app = await PlaintextApp.StartAsync(secure: true);
        using var metrics = new IstioMetricsListener(app.Services.GetRequiredService<IMeterFactory>());
        using var client = new HttpClient();

        Assert.Equal("1", await client.GetStringAsync(new Uri($"http://127.0.0.1:{app.Port}/orders/1")));

        await Poll.UntilAsync(() => metrics.Requests.Count >= 1, "the destination reporter to record the request", TimeSpan.FromSeconds(30));
        var request = Assert.Single(metrics.Requests);
        Assert.Equal(("unknown", "unknown", "none"), (request.Labels["source_principal"], request.Labels["destination_principal"], request.Labels["connection_security_policy"]));
    }

    [Fact]
    public async Task Mtls_CallerBySpiffeId_MutualTls_DenialIs403()
    {
        await using var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca);
        using var metrics = new IstioMetricsListener(backend.Services.GetRequiredService<IMeterFactory>());
        await using var provider = Client(backend);
        using var sourceMetrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));
        }

        // The caller's side over the same mTLS: its own SAN and the one the endpoint's handshake verified, as Istio's client
        // side takes both from the upstream connection.
        Assert.All(sourceMetrics.Requests, m => Assert.Equal((Frontend, TestCa.Id("orders")), (m.Labels["source_principal"], m.Labels["destination_principal"])));
        Assert.Equal(4, sourceMetrics.Requests.Count);

        using (var refused = await client.DeleteAsync(new Uri("http://orders/items/1")))
        {
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        }

        await Poll.UntilAsync(() => metrics.Requests.Count >= 5, "the destination reporter to record the five requests (it records when the middleware returns)", TimeSpan.FromSeconds(30));
        Assert.Equal(5, metrics.Requests.Count);
        Assert.All(metrics.Requests, m =>
        {
            Assert.Equal("mutual_tls", m.Labels["connection_security_policy"]);
            Assert.Equal(Frontend, m.Labels["source_principal"]);
            Assert.Equal("default", m.Labels["source_workload_namespace"]);
            Assert.Equal(TestCa.Id("orders"), m.Labels["destination_principal"]);
            Assert.Equal("orders.default.svc.cluster.local", m.Labels["destination_service"]);
        });
        Assert.Equal(4, metrics.Requests.Count(m => m.Labels["response_code"] == "200"));
        var denied = Assert.Single(metrics.Requests, m => m.Labels["response_code"] == "403");
        Assert.Equal("-", denied.Labels["response_flags"]);
    }

    [Fact]
    public async Task Mtls_ConnectionFailsAfterAnEarlierHandshake_NoPrincipalClaimed()
    {
        // The pool verified orders before; this request's connection was refused: it had no TLS, so no principal either
        // side, as Envoy reports a failed connect (an endpoint address reused by another workload must not be named).
        var backend = await OrdersBackend.StartDenyingDeleteAsync(_ca);
        await using var provider = Client(backend);
        using var sourceMetrics = new IstioMetricsListener(provider.GetRequiredService<IMeterFactory>());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/items")));

        await backend.DisposeAsync();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetStringAsync(new Uri("http://orders/items")));

        var failed = Assert.Single(sourceMetrics.Requests, m => m.Labels["response_code"] != "200");
        Assert.Contains("UF", failed.Labels["response_flags"], StringComparison.Ordinal);
        Assert.Equal(("unknown", "unknown"), (failed.Labels["source_principal"], failed.Labels["destination_principal"]));
    }

    private ServiceProvider Client(MeshBackend backend)
    {
        var name = TestSnapshots.Names.Qualify("orders");
        var cluster = new MeshCluster($"outbound|80||{name}", name, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(backend.Port)], tls: new UpstreamTlsSettings([]));
        var source = new FixedSnapshotSource(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]));
        // frontend in secure mode (an https:// control plane), as its certificate says.
        File.WriteAllText(_rootFile, _ca.RootPem);
        var services = MeshServices.Create(source, options =>
        {
            options.Service = "frontend";
            options.ControlPlane.Address = new Uri("https://127.0.0.1:15012");
            options.ControlPlane.RootCertificate = _rootFile;
            options.Identity.Token = "unused: the certificate comes from the test's store";
        });
        services.AddSingleton<IWorkloadCertificateSource>(_ca.Store(_ca.Issue([Frontend])));
        return services.BuildServiceProvider();
    }

    /// <summary>A plaintext app behind the mesh authorization (PERMISSIVE), with a DENY on DELETE /orders/*.</summary>
    private sealed class PlaintextApp : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private PlaintextApp(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public IServiceProvider Services => _app.Services;

        /// <param name="secure">Secure mode (an https:// control plane): the workload has a SPIFFE ID, which a plaintext caller never sees.</param>
        public static async Task<PlaintextApp> StartAsync(bool secure = false)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            builder.Services.AddMeshAuthorization();
            builder.Services.Configure<ServiceMeshOptions>(options =>
            {
                options.Service = "orders";
                options.Namespace = "shop";
                options.Telemetry.ClusterId = "east";
                options.Telemetry.Workload = "orders-v2";
                options.Labels["version"] = "v2";
                if (secure)
                {
                    options.ControlPlane.Address = new Uri("https://127.0.0.1:15012");
                }
            });
            var app = builder.Build();
            app.MapGet("/orders/{id}", (string id) => id);
            app.MapDelete("/orders/{id}", (string id) => id);

            // As an app maps its Prometheus scrape endpoint and health probes, out of ASP.NET Core's HTTP metrics.
            app.MapGet("/metrics", () => "# metrics").DisableHttpMetrics();
            app.MapDelete("/metrics", () => "deleted").DisableHttpMetrics();
            app.MapGet("/healthz", (HttpContext context) =>
            {
                context.Features.GetRequiredFeature<IHttpMetricsTagsFeature>().MetricsDisabled = true;
                return "ok";
            });
            await app.StartAsync();
            var port = new Uri(app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single()).Port;
            app.Services.GetRequiredService<InboundPolicyStore>().Replace([Policy(port, Deny("no-delete", Rule(to: [Operation(methods: ["DELETE"], paths: ["/orders/*"])])))]);
            return new PlaintextApp(app, port);
        }

        public static InboundPolicy Policy(int port, params Mesh.ControlPlane.Model.AuthorizationPolicyModel[] policies)
        {
            Assert.True(InboundPolicyDecoder.TryDecode(Listener([.. policies], (uint)port), out var policy, out var errors), string.Join("; ", errors));
            return policy;
        }

        public async ValueTask DisposeAsync() => await _app.DisposeAsync();
    }
}
