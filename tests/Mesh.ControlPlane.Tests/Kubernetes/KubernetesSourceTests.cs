using System.Net;
using System.Text.Json.Nodes;
using Grpc.Core;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Tests.Integration;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.KubernetesFake;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.DependencyInjection;
using System.Threading.Channels;
using Xunit.Abstractions;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>
/// The control plane in process with ControlPlane:Kubernetes:Enabled against the fake API server (real KubernetesClient,
/// kubeconfig, TLS, HTTP/2): what ADS serves from Istio objects through watch faults.
/// </summary>
public sealed class KubernetesSourceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Start_ApiServerDown_NotReadyAndNoAdsUntilEveryKindListed_ThenServesTheObjects()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        await fake.GoDownAsync();

        // A supplied CA: without one, startup itself waits for the API server (the replicas' shared CA Secret), and this test
        // is about what a started control plane serves while the source has not listed.
        using var ca = new SuppliedCa();
        await using var cp = await StartAsync(fake, $"--ControlPlane:Ca:CertificateFile={ca.CertificateFile}", $"--ControlPlane:Ca:KeyFile={ca.KeyFile}");

        using (var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.Contains("the Kubernetes source has not listed", await ready.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var refused = await Assert.ThrowsAsync<RpcException>(() => ClustersAsync(cp));
        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Contains("Kubernetes source has not listed", refused.Status.Detail, StringComparison.Ordinal);

        await fake.ComeBackAsync();

        await ServedAsync(cp, ["reviews"]);
        using var readyAfter = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, readyAfter.StatusCode);
    }

    [Fact]
    public async Task WatchDropped_RewatchesFromTheLastResourceVersionWithoutRelisting_NewObjectServed()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        await using var cp = await StartAsync(fake);
        await ServedAsync(cp, ["reviews"]);
        // Service, EndpointSlice, Pod, Node and Istio's eight kinds, in all namespaces.
        await fake.WaitUntilAsync(() => fake.OpenWatches() == 12, Deadline, () => $"{fake.OpenWatches()} watches open");
        var lists = Lists(fake, "serviceentries");
        var before = fake.Requests.Count;

        Assert.Equal(12, fake.DropWatches());
        fake.Apply(Entry("ratings", "10.0.0.2"));

        await ServedAsync(cp, ["ratings", "reviews"]);
        var rewatch = fake.Requests.Skip(before).First(r => r.IsWatch && r.Resource == "serviceentries");
        Assert.False(string.IsNullOrEmpty(rewatch.QueryValue("resourceVersion")), "the rewatch starts from the last resourceVersion seen");
        Assert.Equal("true", rewatch.QueryValue("allowWatchBookmarks"));
        Assert.InRange(int.Parse(rewatch.QueryValue("timeoutSeconds")!, System.Globalization.CultureInfo.InvariantCulture), 300, 599);
        Assert.Equal(lists, Lists(fake, "serviceentries"));
    }

    [Fact]
    public async Task WatchSilent_WatchdogCancelsAndRewatches_ChangeArrivesWhenTheStreamTalksAgain()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        await using var cp = await StartAsync(fake, "--ControlPlane:Kubernetes:WatchIdleTimeout=00:00:02");
        await ServedAsync(cp, ["reviews"]);
        var lists = Lists(fake, "serviceentries");

        fake.SilenceWatches(true);
        var silencedAt = fake.Requests.Count;
        fake.Apply(Entry("ratings", "10.0.0.2"));

        // Each silent watch is cut by the watchdog and opened again from the same resourceVersion.
        await fake.WaitUntilAsync(() => fake.Requests.Skip(silencedAt).Count(r => r.IsWatch && r.Resource == "serviceentries") >= 2, Deadline, () => "the watchdog never restarted the silent watch");
        Assert.DoesNotContain("outbound|80||ratings.shop.svc.cluster.local", await ClustersAsync(cp), StringComparer.Ordinal);
        var metrics = await PrometheusText.ScrapeAsync(cp.Admin);
        Assert.True(metrics.Count("mesh_kubernetes_watch_restarts", ("kind", "ServiceEntry"), ("reason", "idle")) >= 1, metrics.Text);

        fake.SilenceWatches(false);
        await ServedAsync(cp, ["ratings", "reviews"]);
        Assert.Equal(lists, Lists(fake, "serviceentries"));
    }

    [Fact]
    public async Task ResourceVersionCompactedDuringOutage_410ThenRelist_ConvergesWithNoDuplicateAndNoLostObject()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        fake.Apply(Entry("ratings", "10.0.0.2"));
        await using var cp = await StartAsync(fake);
        await ServedAsync(cp, ["ratings", "reviews"]);
        var lists = Lists(fake, "serviceentries");

        await fake.GoDownAsync(FakeApiServerOutage.Unavailable);
        fake.Delete("networking.istio.io/v1", "ServiceEntry", "shop", "reviews");
        fake.Apply(Entry("details", "10.0.0.3"));
        fake.Apply(Entry("ratings", "10.0.0.4"));
        fake.Compact();
        await fake.ComeBackAsync();

        // The rewatch from the old resourceVersion gets 410; the relist drops reviews (a delete no watch delivered).
        await ServedAsync(cp, ["details", "ratings"]);
        Assert.True(Lists(fake, "serviceentries") > lists, "the informer relisted after 410 Gone");
        var metrics = await PrometheusText.ScrapeAsync(cp.Admin);
        Assert.True(metrics.Count("mesh_kubernetes_relists", ("kind", "ServiceEntry")) >= 1, metrics.Text);
        Assert.True(metrics.Count("mesh_kubernetes_watch_restarts", ("kind", "ServiceEntry"), ("reason", "expired")) >= 1, metrics.Text);
        var store = cp.Host.Services.GetRequiredService<ConfigStore>();
        var ratings = Assert.Single(store.Current.Config.ServiceEntries, s => s.Name == "ratings");
        Assert.Equal("10.0.0.4", Assert.Single(ratings.StaticEndpoints).Address);
    }

    [Fact]
    public async Task ApiServerDown_LastGoodConfigKeepsServingOverAds_ThenConvergesWithoutRelisting()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        await using var cp = await StartAsync(fake);
        await ServedAsync(cp, ["reviews"]);
        var lists = Lists(fake, "serviceentries");

        await fake.GoDownAsync();
        fake.Apply(Entry("ratings", "10.0.0.2"));

        // Three seconds of refused connections: the informers back off, the mesh does not lose a service.
        var outage = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        var checks = 0;
        while (DateTime.UtcNow < outage)
        {
            Assert.Equal(["outbound|80||reviews.shop.svc.cluster.local"], await ClustersAsync(cp));
            using var ready = await cp.Admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            checks++;
        }

        Assert.True(checks > 1);
        await fake.ComeBackAsync();
        await ServedAsync(cp, ["ratings", "reviews"]);

        // Connection refused is the server's absence, not a stale resourceVersion: rewatch, no relist (client-go's rule).
        Assert.Equal(lists, Lists(fake, "serviceentries"));
    }

    [Fact]
    public async Task InvalidVirtualService_ReportedWithNamespaceNameAndFieldPath_IgnoredWhileTheRestApplies()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        fake.Apply(Entry("ratings", "10.0.0.2"));
        fake.Apply(Route("ratings", weight: 100));
        fake.Apply(Route("reviews", weight: "lots"));
        await using var cp = await StartAsync(fake);

        await ServedAsync(cp, ["ratings", "reviews"]);
        var store = cp.Host.Services.GetRequiredService<ConfigStore>();
        var error = Assert.Single(store.Errors, e => !e.IsWarning);
        Assert.Equal("VirtualService shop/reviews", error.File);
        Assert.StartsWith("VirtualService shop/reviews: spec.http[0].route[0].weight: ", error.Message, StringComparison.Ordinal);
        Assert.Equal(["ratings"], store.Current.Config.VirtualServices.Select(v => v.Name));
        var dump = await cp.Admin.GetStringAsync(new Uri("/debug/config_dump", UriKind.Relative));
        Assert.Contains("VirtualService shop/reviews: spec.http[0].route[0].weight", dump, StringComparison.Ordinal);
        Assert.Equal(1, (await PrometheusText.ScrapeAsync(cp.Admin)).Value("mesh_config_errors", ("kind", "VirtualService")));

        // Fixed with kubectl apply: the error goes, the route applies.
        fake.Apply(Route("reviews", weight: 100));
        await Poll.UntilAsync(() => store.Current.Config.VirtualServices.Length == 2 && store.Errors.IsEmpty, "the fixed VirtualService was not applied", Deadline);
    }

    [Fact]
    public async Task ObjectApplied_PushedToAnOpenAdsStream_MeasuredLatency()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        await using var cp = await StartAsync(fake);
        await ServedAsync(cp, ["reviews"]);
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var response = await ads.NextAsync();
        var latencies = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            await ads.AckAsync(response, []);
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            fake.Apply(Entry($"extra{i}", $"10.0.1.{i + 1}"));
            do
            {
                response = await ads.NextAsync();
            }
            while (!response.Resources.Any(r => r.Unpack<Cluster>().Name == $"outbound|80||extra{i}.shop.svc.cluster.local"));
            latencies.Add(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }

        // Watch event → informer → publisher debounce (20 ms here) → translation → push; printed for the report.
        output.WriteLine($"kubectl apply → CDS push: {string.Join(", ", latencies.Select(l => $"{l:F0} ms"))}");
        Assert.All(latencies, l => Assert.True(l < 5000, $"{l} ms"));
    }

    [Fact]
    public async Task Namespaces_Configured_OnlyThoseAreWatched()
    {
        await using var fake = await FakeKubernetesApiServer.StartAsync();
        fake.Apply(Entry("reviews", "10.0.0.1"));
        fake.Apply(Entry("intruder", "10.0.0.9", ns: "other"));
        await using var cp = await StartAsync(fake, "--ControlPlane:Kubernetes:Namespaces=shop");

        await ServedAsync(cp, ["reviews"]);
        Assert.DoesNotContain(fake.Requests, r => r.Resource == "serviceentries" && !r.Path.Contains("/namespaces/shop/", StringComparison.Ordinal));
    }

    private static async Task<ControlPlaneFixture> StartAsync(FakeKubernetesApiServer fake, params string[] args) =>
        await ControlPlaneFixture.StartAsync(
        [
            "--ControlPlane:Kubernetes:Enabled=true",
            $"--ControlPlane:Kubernetes:Kubeconfig={fake.KubeconfigPath}",
            .. args,
        ]);

    private static int Lists(FakeKubernetesApiServer fake, string resource) => fake.Requests.Count(r => r.Verb == "list" && r.Resource == resource);

    /// <summary>Waits until a fresh ADS stream's clusters are exactly the given ServiceEntries' (names in shop, port 80).</summary>
    private static Task ServedAsync(ControlPlaneFixture cp, string[] names)
    {
        string[] expected = [.. names.Select(n => $"outbound|80||{n}.shop.svc.cluster.local").Order(StringComparer.Ordinal)];
        string[]? last = null;
        return Poll.UntilAsync(
            async Task<bool> () =>
            {
                try
                {
                    last = await ClustersAsync(cp);
                    return last.SequenceEqual(expected, StringComparer.Ordinal);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
                {
                    return false;
                }
            },
            $"ADS never served exactly [{string.Join(", ", expected)}]; last: [{string.Join(", ", last ?? [])}]",
            Deadline);
    }

    /// <summary>The clusters one new ADS stream gets for a wildcard CDS request, sorted; duplicates kept (a test would see them).</summary>
    private static async Task<string[]> ClustersAsync(ControlPlaneFixture cp)
    {
        var ads = cp.OpenAds();
        try
        {
            try
            {
                await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
            }
            catch (RpcException)
            {
                // The server ended the stream first (refused): its status is read below.
            }

            try
            {
                var response = await ads.NextAsync();
                return [.. response.Resources.Select(r => r.Unpack<Cluster>().Name).Order(StringComparer.Ordinal)];
            }
            catch (ChannelClosedException)
            {
                // The stream ended without a response: refused (not ready) with the status it carries.
                throw ads.Error ?? (Exception)new InvalidOperationException("the ADS stream ended without a response or a status");
            }
        }
        finally
        {
            try
            {
                await ads.DisposeAsync();
            }
            catch (Exception ex) when (ex is ObjectDisposedException or OperationCanceledException or RpcException)
            {
                // The test client's reader racing its own disposal; the answer above is what the test checks.
            }
        }
    }

    private static JsonObject Entry(string name, string address, string ns = "shop") =>
        KubeJson.CustomResource("networking.istio.io/v1", "ServiceEntry", ns, name, new JsonObject
        {
            ["hosts"] = new JsonArray(name),
            ["ports"] = new JsonArray(new JsonObject { ["number"] = 80, ["name"] = "http", ["protocol"] = "HTTP" }),
            ["resolution"] = "STATIC",
            ["endpoints"] = new JsonArray(new JsonObject { ["address"] = address }),
        });

    private static JsonObject Route(string host, JsonNode weight) =>
        KubeJson.CustomResource("networking.istio.io/v1", "VirtualService", "shop", host, new JsonObject
        {
            ["hosts"] = new JsonArray(host),
            ["http"] = new JsonArray(new JsonObject
            {
                ["route"] = new JsonArray(new JsonObject { ["destination"] = new JsonObject { ["host"] = host }, ["weight"] = weight }),
            }),
        });

    /// <summary>A self-signed CA written as the ControlPlane:Ca:CertificateFile/KeyFile pair (key owner-only, as the CA requires).</summary>
    private sealed class SuppliedCa : IDisposable
    {
        private readonly string _directory = Directory.CreateTempSubdirectory("mesh-ca-").FullName;

        public SuppliedCa()
        {
            using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("O=mesh-test, CN=Test Root CA", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509KeyUsageExtension(
                System.Security.Cryptography.X509Certificates.X509KeyUsageFlags.KeyCertSign | System.Security.Cryptography.X509Certificates.X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            using var root = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(365));
            CertificateFile = Path.Combine(_directory, "ca-cert.pem");
            KeyFile = Path.Combine(_directory, "ca-key.pem");
            File.WriteAllText(CertificateFile, root.ExportCertificatePem());
            File.WriteAllText(KeyFile, key.ExportPkcs8PrivateKeyPem());
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(KeyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
        }

        public string CertificateFile { get; }

        public string KeyFile { get; }

        public void Dispose() => Directory.Delete(_directory, recursive: true);
    }
}
