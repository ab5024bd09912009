using System.Net;
using System.Net.Security;
using System.Text.Json;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Sidecar;

/// <summary>
/// The demo's Python service (samples/Mesh.Samples.Python/ratings.py, standard library only) behind a real
/// mesh-sidecar, in a mesh of real processes under the demo's config (STRICT mTLS, ratings' ALLOW list): called by a
/// .NET service (frontend) and calling one (orders), both over mTLS, each side seeing the other's SPIFFE identity;
/// and what an attacker tries: a path a DENY policy names (and other spellings of it), a forged
/// X-Forwarded-Client-Cert, another mesh identity, a caller without a mesh certificate.
/// </summary>
public sealed class PythonSampleTests(ITestOutputHelper output)
{
    private const string FrontendId = "spiffe://cluster.local/ns/default/sa/frontend";
    private const string RatingsId = "spiffe://cluster.local/ns/default/sa/ratings";
    private static readonly string Script = Path.Combine(Repository.Root, "samples", "Mesh.Samples.Python", "ratings.py");

    [Fact]
    public async Task Ratings_CalledByFrontendAndCallingOrders_OverMtls_EachSideSeesTheOthersSpiffeId()
    {
        await using var mesh = await StartMeshAsync();
        var frontend = await mesh.StartReadyWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1");
        await using var ratings = await StartRatingsAsync(mesh);
        using var driver = WorkloadCertificates.CreateMtlsClient(
            await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "test-driver", Path.Combine(mesh.StateDirectory, "..", "driver")));

        // frontend's answer carries ratings' answer once frontend's mesh knows ratings' endpoint (pushed after registration).
        using var page = await Eventually.ReturnsAsync(
            async () =>
            {
                using var response = await driver.GetAsync(new UriBuilder(frontend.Address) { Scheme = "https", Path = "/" }.Uri);
                var body = await response.Content.ReadAsStringAsync();
                return response.StatusCode == HttpStatusCode.OK ? JsonDocument.Parse(body) : throw new InvalidOperationException($"frontend answered {(int)response.StatusCode}: {body}");
            },
            doc => doc.RootElement.GetProperty("ratings").ValueKind == JsonValueKind.Object,
            "frontend's page to include ratings' answer");
        output.WriteLine($"frontend: {page.RootElement.GetRawText()}");
        var rating = page.RootElement.GetProperty("ratings");

        // frontend → ratings: the sidecar took frontend's identity from the mTLS handshake and passed it in XFCC.
        Assert.Equal("ratings-1", rating.GetProperty("ratings").GetString());
        Assert.Equal(FrontendId, rating.GetProperty("caller").GetString());

        // ratings → orders through the sidecar's outbound proxy: orders (a .NET mesh workload) saw sa/ratings over mTLS
        // (a peer identity exists only for an mTLS peer).
        Assert.StartsWith("orders-", rating.GetProperty("orders").GetString(), StringComparison.Ordinal);
        Assert.Equal(RatingsId, rating.GetProperty("ordersCaller").GetString());

        // Registered as an instance of ratings, and presenting sa/ratings on its mesh port.
        Assert.Equal(1, await mesh.EndpointCountAsync("ratings"));
        string? presented = null;
        using var asFrontend = WorkloadCertificates.CreateMtlsClient(
            await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "frontend", Path.Combine(mesh.StateDirectory, "..", "as-frontend")),
            certificate => presented = WorkloadCertificates.SpiffeIdOf(certificate));
        using var direct = await asFrontend.GetAsync(Inbound(ratings, "/ratings/7"));
        Assert.Equal(HttpStatusCode.OK, direct.StatusCode);
        Assert.Equal(RatingsId, presented);
        Console.WriteLine($"[python-sample] frontend → ratings (python3 + mesh-sidecar, presents {presented}) saw caller {rating.GetProperty("caller")}; ratings → orders ({rating.GetProperty("orders")}) saw caller {rating.GetProperty("ordersCaller")}");

        // SIGTERM to the app while its sidecar holds idle keep-alive connections to it: it drains and exits 0 by itself.
        var stopping = System.Diagnostics.Stopwatch.StartNew();
        await ratings.AppProcess.StopAsync(TimeSpan.FromSeconds(30));
        var exitCode = await ratings.AppProcess.Exited;
        Console.WriteLine($"[python-sample-stop] SIGTERM → ratings.py exited {exitCode} after {stopping.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(0, exitCode);
        Assert.Contains("ratings stopped", ratings.AppProcess.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ratings_DenyPolicyForgedXfccOtherIdentityAndNoCertificate_AreRefusedByTheSidecar_OtherPathsStillWork()
    {
        await using var mesh = await StartMeshAsync();
        await using var ratings = await StartRatingsAsync(mesh);
        var scratch = Path.Combine(mesh.StateDirectory, "..");
        using var asFrontend = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "frontend", Path.Combine(scratch, "as-frontend")));
        using var asOther = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "test-driver", Path.Combine(scratch, "other")));
        await Eventually.HoldsAsync(async () => (await StatusAsync(asFrontend, HttpMethod.Get, Inbound(ratings, "/ratings/14"))) == HttpStatusCode.OK, "ratings to answer frontend");

        // A forged XFCC naming another identity is replaced by the sidecar: the app sees the mTLS peer only.
        using (var forged = new HttpRequestMessage(HttpMethod.Get, Inbound(ratings, "/ratings/14")))
        {
            forged.Headers.TryAddWithoutValidation("X-Forwarded-Client-Cert", "By=spiffe://cluster.local/ns/default/sa/ratings;URI=spiffe://cluster.local/ns/default/sa/admin");
            using var response = await asFrontend.SendAsync(forged);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, body);
            using var json = JsonDocument.Parse(body);
            Assert.Equal(FrontendId, json.RootElement.GetProperty("caller").GetString());
        }

        // ratings' ALLOW list (the demo's security.yaml) admits frontend's GET /ratings/* only.
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asOther, HttpMethod.Get, Inbound(ratings, "/ratings/14")));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Post, Inbound(ratings, "/ratings/14")));
        Assert.Equal(HttpStatusCode.Forbidden, await StatusAsync(asFrontend, HttpMethod.Get, Inbound(ratings, "/_stats")));

        // A DENY rule for one order, written into the control plane's config folder while everything runs.
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "ratings-deny.yaml"), """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata:
              name: ratings-no-13
              namespace: default
            spec:
              selector:
                matchLabels:
                  app: ratings
              action: DENY
              rules:
                - to:
                    - operation:
                        paths: ["/ratings/13"]
            """);
        await Eventually.HoldsAsync(
            async () => await StatusAsync(asFrontend, HttpMethod.Get, Inbound(ratings, "/ratings/13")) == HttpStatusCode.Forbidden,
            "the sidecar to deny /ratings/13");
        var served = await AppRequestsAsync(ratings);
        var spellings = new Dictionary<string, HttpStatusCode>(StringComparer.Ordinal);
        foreach (var path in new[] { "/ratings/13", "/ratings/13?x=1", "/ratings/%31%33", "/ratings//13", "/ratings/013", "/RATINGS/13" })
        {
            spellings[path] = await StatusAsync(asFrontend, HttpMethod.Get, Inbound(ratings, path));
        }

        var other = await StatusAsync(asFrontend, HttpMethod.Get, Inbound(ratings, "/ratings/12"));
        Console.WriteLine($"[python-sample-deny] DENY /ratings/13: {string.Join(", ", spellings.Select(s => $"{s.Key} → {(int)s.Value}"))}; /ratings/12 → {(int)other}");
        Assert.Equal(HttpStatusCode.OK, other);

        // No spelling of the denied order gets a rating: the sidecar denies it, or the app has no such path.
        Assert.Equal(HttpStatusCode.Forbidden, spellings["/ratings/13"]);
        Assert.Equal(HttpStatusCode.Forbidden, spellings["/ratings/13?x=1"]);
        Assert.All(spellings, s => Assert.True(s.Value is HttpStatusCode.Forbidden or HttpStatusCode.NotFound, $"{s.Key} answered {(int)s.Value}"));

        // The app served /ratings/12 and none of the refused requests (denied ones never reach it).
        var notFound = spellings.Count(s => s.Value == HttpStatusCode.NotFound);
        Assert.Equal(served + 1, await AppRequestsAsync(ratings));

        // Under STRICT a caller without a mesh certificate does not reach the app: neither plaintext nor TLS without a client certificate.
        served = await AppRequestsAsync(ratings);
        using var plain = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        var plaintext = await OutcomeAsync(plain, new UriBuilder(ratings.Workload.Address) { Path = "/ratings/12" }.Uri);
        using var noCertificate = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            // The server is ratings' sidecar (its SVID); this client just has no certificate of its own to present.
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                    certificate is not null && WorkloadCertificates.SpiffeIdOf(new System.Security.Cryptography.X509Certificates.X509Certificate2(certificate)) == RatingsId,
            },
        })
        { Timeout = TimeSpan.FromSeconds(10) };
        var tlsWithoutCertificate = await OutcomeAsync(noCertificate, Inbound(ratings, "/ratings/12"));
        Console.WriteLine($"[python-sample-strict] no mesh certificate: plaintext → {plaintext}; TLS without a client certificate → {tlsWithoutCertificate}; {notFound} spelling(s) were 404 from the app");
        Assert.False(plaintext.StartsWith("200", StringComparison.Ordinal), plaintext);
        Assert.False(tlsWithoutCertificate.StartsWith("200", StringComparison.Ordinal), tlsWithoutCertificate);
        Assert.Equal(served, await AppRequestsAsync(ratings));
    }

    private async Task<LocalMesh> StartMeshAsync()
    {
        var mesh = await LocalMesh.StartAsync(output);
        try
        {
            // The demo's security: STRICT mesh-wide, ratings answers frontend only, frontend may not DELETE orders.
            File.Copy(Path.Combine(Repository.Root, "samples", "Mesh.Demo", "mesh-config", "security.yaml"), Path.Combine(mesh.ConfigDirectory, "security.yaml"));
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Inventory", "inventory", "inventory-1");
            await mesh.StartReadyWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-1");
            return mesh;
        }
        catch
        {
            await mesh.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts python3 ratings.py behind its sidecar and waits until the sidecar says it is ready and it is registered.</summary>
    private async Task<RatingsHandle> StartRatingsAsync(LocalMesh mesh)
    {
        // Fails with how to install python3 when it is missing (PythonRuntime's message).
        var workload = await SidecarProcesses.StartPythonWorkloadAsync(Repository.App("mesh-sidecar"), Script, "ratings", "ratings-1", mesh.ControlPlane);
        var handle = new RatingsHandle(workload, output);
        try
        {
            using var admin = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
            await Eventually.HoldsAsync(
                async () =>
                {
                    using var response = await admin.GetAsync(new Uri(workload.Sidecar.Admin, "/healthz/ready"));
                    return response.StatusCode == HttpStatusCode.OK;
                },
                "ratings' sidecar to be ready (/healthz/ready on its admin port)");
            await mesh.WaitForEndpointsAsync("ratings", 1);
            return handle;
        }
        catch
        {
            await handle.DisposeAsync();
            throw;
        }
    }

    private static Uri Inbound(RatingsHandle ratings, string pathAndQuery) =>
        new($"https://{ratings.Workload.Address.Authority}{pathAndQuery}");

    private static async Task<HttpStatusCode> StatusAsync(HttpClient client, HttpMethod method, Uri uri)
    {
        using var request = new HttpRequestMessage(method, uri);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    /// <summary>The status a client got, or the failure (refused handshake, closed connection) it got instead.</summary>
    private static async Task<string> OutcomeAsync(HttpClient client, Uri uri)
    {
        try
        {
            using var response = await client.GetAsync(uri);
            return $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
        }
        catch (HttpRequestException e)
        {
            return $"refused ({e.HttpRequestError}: {e.InnerException?.Message ?? e.Message})";
        }
        catch (TaskCanceledException)
        {
            return "no answer within 10 s";
        }
    }

    /// <summary>Reads the app's own request counter on its 127.0.0.1 port (what reached ratings.py, not the sidecar).</summary>
    private static async Task<long> AppRequestsAsync(RatingsHandle ratings)
    {
        using var local = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        using var stats = JsonDocument.Parse(await local.GetStringAsync(new Uri(ratings.AppAddress, "/_stats")));
        return stats.RootElement.GetProperty("requests").GetInt64();
    }

    /// <summary>The started sample; disposing stops the sidecar, then the app, and writes both outputs to the test log.</summary>
    private sealed class RatingsHandle(SidecarWorkload workload, ITestOutputHelper output) : IAsyncDisposable
    {
        public WorkloadProcess Workload => workload.Workload;

        public Uri AppAddress => workload.AppAddress;

        public ChildProcess AppProcess => workload.App;

        public async ValueTask DisposeAsync()
        {
            await workload.DisposeAsync();
            foreach (var process in new[] { workload.Sidecar.Process, workload.App })
            {
                var text = process.Output;
                output.WriteLine($"----- {process.Name} (pid {process.Id}, exit {await process.Exited}) -----");
                output.WriteLine(text.Length > 20_000 ? "…" + text[^20_000..] : text);
            }
        }
    }
}
