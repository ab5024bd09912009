using System.Diagnostics;
using System.Globalization;
using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Telemetry;

/// <summary>
/// Issue 10 "Done when": a real Prometheus (the Debian package's binary) scrapes the demo's services over mTLS under the
/// demo's mesh-wide STRICT policy and PromQL sees the requests the test sent through frontend → orders → inventory.
/// </summary>
public sealed class PrometheusScrapeTests(ITestOutputHelper output)
{
    private const int Requests = 200;
    private const int Concurrency = 8;
    private const string FrontendPrincipal = "spiffe://cluster.local/ns/default/sa/frontend";
    private const string PrometheusPrincipal = "spiffe://cluster.local/ns/default/sa/prometheus";
    private static readonly string[] ServiceJobs = ["frontend", "orders", "inventory"];

    [Fact]
    public async Task Prometheus_ScrapesTheSampleServicesOverMtls_AndCountsEveryRequest()
    {
        PrometheusServer.RequireBinary();
        var started = Stopwatch.StartNew();
        await using var mesh = await LocalMesh.StartAsync(output);

        // The demo's policies: mesh-wide STRICT mTLS (so Prometheus must present a mesh certificate, as it does in an
        // Istio mesh that scrapes through the workloads' mTLS) and the DENY rule on DELETE frontend → orders.
        File.Copy(Path.Combine(Repository.Root, "samples", "Mesh.Demo", "mesh-config", "security.yaml"), Path.Combine(mesh.ConfigDirectory, "security.yaml"));
        var inventory = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
        var orders = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");

        using (var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(5) })
        {
            await Eventually.HoldsAsync(
                async () => await PlaintextAnswersAsync(plain, new UriBuilder(frontend.Address) { Path = "/metrics" }.Uri) is false,
                "frontend to refuse plaintext (/metrics included) under the demo's STRICT policy",
                TimeSpan.FromSeconds(60));
        }

        var prometheusIdentity = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "prometheus", Path.Combine(mesh.StateDirectory, "..", "prometheus-identity"));
        var tls = new PrometheusTls(prometheusIdentity.RootCertificate, prometheusIdentity.CertificateChain, prometheusIdentity.PrivateKey);
        var targets = new List<ScrapeTarget>
        {
            new("frontend", Https(frontend), tls),
            new("orders", Https(orders), tls),
            new("inventory", Https(inventory), tls),
            // The control plane's admin /metrics (plain HTTP on loopback, as istiod's monitoring port).
            new("control-plane", mesh.ControlPlane.AdminAddress),
        };
        // The scrape identity may GET /metrics and nothing else (the demo's prometheus-scrapes-only policy).
        using (var asPrometheus = WorkloadCertificates.CreateMtlsClient(prometheusIdentity))
        {
            await Eventually.HoldsAsync(
                async () =>
                {
                    using var other = await asPrometheus.GetAsync(Https(orders));
                    return other.StatusCode == HttpStatusCode.Forbidden;
                },
                "orders to refuse the prometheus identity anything but /metrics",
                TimeSpan.FromSeconds(60));
            using var delete = await asPrometheus.DeleteAsync(new Uri(Https(orders), "/metrics"));
            using var scrape = await asPrometheus.GetAsync(new Uri(Https(orders), "/metrics"));
            Assert.Equal(HttpStatusCode.Forbidden, delete.StatusCode);
            Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        }

        await using var prometheus = await PrometheusServer.StartAsync(targets);
        output.WriteLine($"Prometheus {prometheus.Address} scraping {string.Join(", ", targets.Select(t => $"{t.Job}={t.Address}"))}");
        await prometheus.WaitForScrapeAsync(ServiceJobs);

        // N requests through the front door, over mTLS as a mesh workload of its own (STRICT lets nothing else in).
        var driverIdentity = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "test-driver", Path.Combine(mesh.StateDirectory, "..", "driver-identity"));
        using var driver = WorkloadCertificates.CreateMtlsClient(driverIdentity);
        var failures = new List<string>();
        var next = 0;
        await Task.WhenAll(Enumerable.Range(0, Concurrency).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) <= Requests)
            {
                using var response = await driver.GetAsync(Https(frontend));
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    var body = await response.Content.ReadAsStringAsync();
                    lock (failures)
                    {
                        failures.Add($"{(int)response.StatusCode}: {body}");
                    }
                }
            }
        }));
        Assert.True(failures.Count == 0, $"{failures.Count} of {Requests} requests through frontend failed; first: {failures.FirstOrDefault()}");

        // Each job's count as Prometheus stores it, once a scrape after the last request has landed.
        var frontendCount = await ScrapedAsync(prometheus, """sum(http_server_request_duration_seconds_count{job="frontend",http_route="/"})""", Requests);
        var ordersCount = await ScrapedAsync(prometheus, """sum(http_server_request_duration_seconds_count{job="orders",http_route="/orders/{id:int}",http_request_method="GET"})""", Requests);
        var inventoryCount = await ScrapedAsync(prometheus, """sum(http_server_request_duration_seconds_count{job="inventory",http_request_method="POST"})""", Requests);
        output.WriteLine($"sent {Requests}; Prometheus: frontend {frontendCount}, orders GET {ordersCount}, inventory (gRPC POST) {inventoryCount}");

        // Histogram buckets: more than the +Inf bucket, cumulative, the +Inf one holding every request.
        var buckets = await prometheus.QueryAsync("""http_server_request_duration_seconds_bucket{job="frontend",http_route="/"}""");
        var le = buckets.GroupBy(b => b.Labels["le"]).ToDictionary(g => g.Key, g => g.Sum(b => b.Value), StringComparer.Ordinal);
        output.WriteLine($"frontend buckets: {string.Join(" ", le.OrderBy(b => b.Key == "+Inf" ? double.PositiveInfinity : double.Parse(b.Key, CultureInfo.InvariantCulture)).Select(b => $"le={b.Key}:{b.Value}"))}");
        Assert.True(le.Count > 2, $"expected several buckets, got {le.Count}: {string.Join("; ", buckets)}");
        Assert.Equal(Requests, le["+Inf"]);
        var p50 = await prometheus.QueryScalarAsync("""histogram_quantile(0.5, sum by (le) (http_server_request_duration_seconds_bucket{job="frontend",http_route="/"}))""");
        output.WriteLine($"frontend p50 {p50 * 1000:0.0} ms");
        Assert.InRange(p50 ?? double.NaN, 0, 10);

        // The mesh client's outbound calls show in HttpClient's own meter (GETs, plus the DELETEs frontend makes).
        var clientCount = await prometheus.QueryScalarAsync("""sum(http_client_request_duration_seconds_count{job="frontend"})""");
        output.WriteLine($"frontend HttpClient requests: {clientCount}");
        Assert.True(clientCount >= Requests, $"frontend's HttpClient recorded {clientCount} requests; expected at least {Requests}");

        // Istio's names come out unchanged: no scope labels, no target_info (the exporter options in DemoTelemetryExtensions).
        Assert.Empty(await prometheus.QueryAsync("""{otel_scope_name=~".+"}"""));
        Assert.Empty(await prometheus.QueryAsync("target_info"));

        // Istio's standard metrics, as Kiali and Istio's dashboards query them. frontend's DELETEs (1 in 5, at random) are
        // denied by the demo's AuthorizationPolicy with 403: the GETs are the 200s, the DELETEs the 403s.
        var denied = await DeniedByOrdersAsync(driver, Https(frontend));
        var source200 = await ScrapedAsync(prometheus, """sum(istio_requests_total{job="frontend",reporter="source",destination_service_name="orders",response_code="200"})""", Requests);
        // At orders, frontend's calls by its identity.
        var destination200 = await ScrapedAsync(prometheus, $$"""sum(istio_requests_total{job="orders",reporter="destination",destination_service_name="orders",source_principal="{{FrontendPrincipal}}",response_code="200"})""", Requests);
        output.WriteLine($"istio_requests_total to orders, response_code 200: source {source200}, destination {destination200} (sent {Requests}); denied DELETEs {denied}");
        Assert.InRange(source200, Requests * 0.99, Requests * 1.01);
        Assert.InRange(destination200, Requests * 0.99, Requests * 1.01);

        // Scrapes are not the service's traffic: orders' scrape endpoint is out of HTTP metrics (DisableHttpMetrics), so
        // Prometheus' answered scrapes add to no Istio series, as in Istio, where the agent answers them. Three more scrapes
        // of orders leave its requests from Prometheus' identity where they were (the test's own calls above are in them).
        var fromPrometheus = $$"""sum(istio_requests_total{job="orders",reporter="destination",source_principal="{{PrometheusPrincipal}}",response_code="200"}) or vector(0)""";
        var scrapeCount = """count_over_time(up{job="orders"}[1h])""";
        var before = (await prometheus.QueryScalarAsync(fromPrometheus), await prometheus.QueryScalarAsync(scrapeCount));
        await Eventually.ReturnsAsync(() => prometheus.QueryScalarAsync(scrapeCount), v => v >= before.Item2 + 3, "Prometheus to scrape orders three more times", TimeSpan.FromSeconds(60));
        var after = await prometheus.QueryScalarAsync(fromPrometheus);
        output.WriteLine($"istio_requests_total at orders from Prometheus' identity, 200: {before.Item1} before three more scrapes, {after} after");
        Assert.Equal(before.Item1, after);

        // The denials, both sides: 403 with no response flag, as Envoy's RBAC filter reports its own denial.
        foreach (var reporter in new[] { ("source", "frontend"), ("destination", "orders") })
        {
            var promql = $$"""sum(istio_requests_total{job="{{reporter.Item2}}",reporter="{{reporter.Item1}}",destination_service_name="orders",source_principal="{{FrontendPrincipal}}",response_code="403",response_flags="-"})""";
            var value = denied == 0 ? await prometheus.QueryScalarAsync(promql) ?? 0 : await ScrapedAsync(prometheus, promql, denied);
            output.WriteLine($"{promql} = {value}");
            Assert.Equal(denied, value);
        }

        // Every request orders served came over mTLS: mutual_tls, and never none.
        var mutualTls = await prometheus.QueryScalarAsync("""sum(istio_requests_total{job="orders",reporter="destination",connection_security_policy="mutual_tls"})""");
        var plaintext = await prometheus.QueryScalarAsync("""sum(istio_requests_total{job="orders",reporter="destination",connection_security_policy="none"})""");
        output.WriteLine($"orders, reporter destination: mutual_tls {mutualTls}, none {plaintext ?? 0}");
        Assert.True(mutualTls >= Requests, $"expected at least {Requests} mutual_tls requests at orders, got {mutualTls}");
        Assert.Null(plaintext);

        // Istio's histograms with Envoy's buckets (0.5 … 3,600,000).
        foreach (var histogram in new[] { "istio_request_duration_milliseconds_bucket", "istio_request_bytes_bucket", "istio_response_bytes_bucket" })
        {
            var series = await prometheus.QueryAsync($$"""{{histogram}}{job="orders",reporter="destination",response_code="200"}""");
            var bounds = series.Select(b => b.Labels["le"] == "+Inf" ? double.PositiveInfinity : double.Parse(b.Labels["le"], NumberStyles.Float, CultureInfo.InvariantCulture)).ToHashSet();
            output.WriteLine($"{histogram}: le {string.Join(" ", bounds.Order())}");
            Assert.Contains(0.5, bounds);
            Assert.Contains(3_600_000, bounds);
            Assert.Contains(double.PositiveInfinity, bounds);
        }

        // The control plane's own metrics, scraped from its admin port: pushes and certificate issuance moved.
        await prometheus.WaitForScrapeAsync(["control-plane"]);
        var pushes = await Eventually.ReturnsAsync(() => prometheus.QueryScalarAsync("""sum(pilot_xds_pushes{job="control-plane"})"""), v => v > 0, "pilot_xds_pushes to be scraped", TimeSpan.FromSeconds(30));
        var issued = await Eventually.ReturnsAsync(() => prometheus.QueryScalarAsync("""sum(citadel_server_success_cert_issuance_count{job="control-plane"})"""), v => v >= 5, "citadel_server_success_cert_issuance_count to be scraped", TimeSpan.FromSeconds(30));
        output.WriteLine($"control plane: pilot_xds_pushes {pushes}, certificates issued {issued} (3 workloads, prometheus, the driver)");

        output.WriteLine($"test ran {started.Elapsed.TotalSeconds:0.0} s");
    }

    private static async Task<double> ScrapedAsync(PrometheusServer prometheus, string promql, int expected)
    {
        // A scrape every second: the count reaches the expected value once one lands after the last request.
        var value = await Eventually.ReturnsAsync(() => prometheus.QueryScalarAsync(promql), v => v >= expected, $"{promql} to reach {expected}", TimeSpan.FromSeconds(30));
        Assert.Equal(expected, value);
        return value!.Value;
    }

    /// <summary>How many of frontend's DELETEs orders' AuthorizationPolicy refused, from frontend's own count (<c>/_stats</c>).</summary>
    private static async Task<int> DeniedByOrdersAsync(HttpClient driver, Uri frontend)
    {
        using var stats = await driver.GetAsync(new Uri(frontend, "/_stats"));
        stats.EnsureSuccessStatusCode();
        using var json = System.Text.Json.JsonDocument.Parse(await stats.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("denied").GetInt32();
    }

    private static Uri Https(WorkloadProcess workload) => new UriBuilder(workload.Address) { Scheme = "https" }.Uri;

    private static async Task<bool> PlaintextAnswersAsync(HttpClient plain, Uri uri)
    {
        try
        {
            using var response = await plain.GetAsync(uri);
            return true;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            return false;
        }
    }
}
