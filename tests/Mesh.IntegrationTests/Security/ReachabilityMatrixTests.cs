using System.Collections.Concurrent;
using System.Net;
using Mesh.Client;
using Mesh.IntegrationTests.Infrastructure;
using Mesh.Samples.Processes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static Mesh.IntegrationTests.Security.SecurityKit;

namespace Mesh.IntegrationTests.Security;

/// <summary>
/// security.md §5 tests 1, 2 and 4: servers under STRICT, PERMISSIVE and DISABLE (workload-scoped
/// PeerAuthentication) × clients (mesh .NET client, with whether it used mTLS; plaintext HttpClient, curl TLS
/// without a client certificate, curl with each kind of bad certificate, and controls with good certificates).
/// </summary>
public sealed partial class ReachabilityMatrixTests(ITestOutputHelper output)
{
    private static readonly string[] Modes = ["STRICT", "PERMISSIVE", "DISABLE"];

    [Fact]
    public async Task ServersUnderStrictPermissiveDisable_EachClientKind_GetsExactlyTheExpectedOutcome()
    {
        RequireTool("curl");
        await using var mesh = await LocalMesh.StartAsync(output);
        var scratch = Directory.CreateTempSubdirectory("mesh-secit-matrix-").FullName;
        try
        {
            await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "matrix.yaml"), MatrixYaml());
            await Eventually.ReturnsAsync(ServiceCountAsync, n => n == LocalMesh.DemoServiceCount + 3, "the three matrix services to be accepted");

            using var plain = CreatePlainClient();
            using var probe = WorkloadCertificates.CreateMtlsClient(await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "matrix-probe", Path.Combine(scratch, "probe")));
            var servers = new Dictionary<string, WorkloadProcess>();
            foreach (var mode in Modes)
            {
                var service = Service(mode);
                servers[mode] = await mesh.StartWorkloadAsync("Mesh.Samples.Orders", service, $"{service}-1");
            }

            foreach (var mode in Modes)
            {
                await WaitReadyAnyWayAsync(servers[mode], probe, plain);
                await mesh.WaitForEndpointsAsync(Service(mode), 1);
            }

            // The policy reaches each server over xDS: wait for each mode's signature before judging the matrix.
            await Eventually.HoldsAsync(async () => !await IsReadyAsync(plain, Http(servers["STRICT"], "/_stats")), "strict-svc to close plaintext", TimeSpan.FromSeconds(60));
            await Eventually.HoldsAsync(async () => !await IsReadyAsync(probe, Https(servers["DISABLE"], "/_stats")), "disable-svc to refuse TLS", TimeSpan.FromSeconds(60));

            var handshakes = new HandshakeRecorder();
            using var host = await mesh.CreateClientHostAsync(configureHost: builder =>
            {
                builder.Logging.AddProvider(handshakes);
                builder.Logging.AddFilter<HandshakeRecorder>(HandshakeRecorder.Category, LogLevel.Debug);
            });
            await host.StartAsync();
            var health = host.Services.GetRequiredService<HealthCheckService>();
            await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
            var meshClient = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
            meshClient.Timeout = TimeSpan.FromSeconds(15);

            // Certificates: signed by our mesh root (its key is in the control plane's state folder) unless said otherwise.
            using var root = LoadMeshRoot(mesh.StateDirectory);
            using var foreign = CreateForeignRoot("Foreign Root CA");
            var now = DateTimeOffset.UtcNow;
            var x = SpiffeId("x");
            // The root is backdated (about 1 h): the expired leaf lives inside the root's validity and ended 10 min ago (beyond the 2-min skew).
            var badCertificates = new (string Name, (string Certificate, string Key) Files)[]
            {
                ("expired", WriteLeaf(Path.Combine(scratch, "expired"), new LeafSpec([x], root.NotBefore.ToUniversalTime(), now.AddMinutes(-10)), root)),
                ("not-yet-valid (NotBefore now+10 min)", WriteLeaf(Path.Combine(scratch, "future"), new LeafSpec([x], now.AddMinutes(10), now.AddHours(1)), root)),
                ("self-signed", WriteLeaf(Path.Combine(scratch, "self"), ValidSpec(x), issuer: null)),
                ("foreign CA", WriteLeaf(Path.Combine(scratch, "foreign"), ValidSpec(x), foreign)),

                // Our CA never issues outside its trust domain, so a foreign-trust-domain SVID is made two ways:
                // by a foreign CA for evil.org (what an attacker could really hold), and with our root key
                // (chain valid, only the trust domain is wrong: isolates the trust-domain check).
                ("trust domain evil.org (foreign CA)", WriteLeaf(Path.Combine(scratch, "evil-foreign"), ValidSpec(SpiffeId("x", trustDomain: "evil.org")), foreign)),
                ("trust domain evil.org (our root key)", WriteLeaf(Path.Combine(scratch, "evil-ours"), ValidSpec(SpiffeId("x", trustDomain: "evil.org")), root)),
                ("two URI SANs", WriteLeaf(Path.Combine(scratch, "two-sans"), ValidSpec(x, SpiffeId("y")), root)),
                ("leaf with CA:true", WriteLeaf(Path.Combine(scratch, "ca-leaf"), ValidSpec(x) with { IsCa = true }, root)),
            };
            var issued = await WorkloadCertificates.IssueAsync(mesh.ControlPlane, "curl-client", Path.Combine(scratch, "issued"));
            var goodCertificates = new (string Name, (string Certificate, string Key) Files)[]
            {
                ("valid SVID issued by our CA", (issued.CertificateChain, issued.PrivateKey)),
                ("valid SVID forged with our root key (control)", WriteLeaf(Path.Combine(scratch, "forged-good"), ValidSpec(x), root)),
            };

            var cells = new List<Cell>();
            foreach (var mode in Modes)
            {
                var server = servers[mode];
                var port = server.Address.Port;
                var https = $"https://127.0.0.1:{port}/_stats";

                // (a) mesh .NET client. Auto mTLS (ServiceEntry with workloadSelector, no DestinationRule) reads the
                // server's PeerAuthentication as Istio does (src/Mesh.ControlPlane/README.md "mTLS in CDS"): STRICT and
                // PERMISSIVE servers get an mTLS cluster; a DISABLE server refuses TLS, so its cluster is plaintext and
                // the call succeeds without a handshake.
                var (meshOk, meshDetail) = await MeshCallAsync(meshClient, $"http://{Service(mode)}/_stats");
                cells.Add(new($"{mode} × mesh client", true, meshOk, meshDetail));
                var peers = handshakes.PeersOf(Service(mode));
                cells.Add(new($"{mode} × mesh client used mTLS", mode != "DISABLE", peers.Count > 0,
                    peers.Count > 0 ? $"handshake with {string.Join(", ", peers)}" : "no TLS handshake", Yes: "mTLS", No: "plaintext"));

                // (b) plaintext HttpClient without a certificate.
                var (plainOk, plainDetail) = await PlainCallAsync(plain, Http(server, "/_stats"));
                cells.Add(new($"{mode} × plaintext HttpClient", mode != "STRICT", plainOk, plainDetail));

                // (c) TLS without a client certificate: STRICT/PERMISSIVE require one for TLS; DISABLE refuses TLS.
                var noCert = await CurlAsync("-k", https);
                cells.Add(new($"{mode} × curl TLS without client certificate", false, noCert.GotResponse, noCert.ToString()));

                // (d) bad certificates: refused everywhere (DISABLE refuses TLS altogether).
                foreach (var (name, files) in badCertificates)
                {
                    var result = await CurlAsync("-k", "--cert", files.Certificate, "--key", files.Key, https);
                    cells.Add(new($"{mode} × curl cert {name}", false, result.GotResponse, result.ToString()));
                }

                // Controls: good certificates succeed on STRICT and PERMISSIVE, so refusals above are not an artefact.
                foreach (var (name, files) in goodCertificates)
                {
                    var result = await CurlAsync("-k", "--cert", files.Certificate, "--key", files.Key, https);
                    cells.Add(new($"{mode} × curl cert {name}", mode != "DISABLE", result.HttpCode == "200", result.ToString()));
                }
            }

            var wrong = cells.Where(c => c.Expected != c.Actual).ToList();
            foreach (var cell in cells)
            {
                Console.WriteLine($"[reachability-matrix]   {(cell.Expected == cell.Actual ? "ok   " : "WRONG")} {cell.Name}: expected {cell.Word(cell.Expected)}, got {cell.Word(cell.Actual)} ({cell.Detail})");
            }

            Console.WriteLine($"[reachability-matrix] reachability matrix: {cells.Count} cells checked, {wrong.Count} wrong");
            foreach (var cell in wrong)
            {
                Console.WriteLine($"[reachability-matrix]   WRONG {cell.Name}: expected {cell.Word(cell.Expected)} ({cell.Detail})");
            }

            Assert.True(wrong.Count == 0, $"{wrong.Count} wrong cell(s): {string.Join("; ", wrong.Select(c => $"{c.Name} ({c.Detail})"))}");
            await host.StopAsync();
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }

        async Task<int> ServiceCountAsync()
        {
            using var dump = await mesh.ConfigDumpAsync();
            return dump.RootElement.GetProperty("services").GetArrayLength();
        }
    }

    private static string Service(string mode) => $"{mode.ToLowerInvariant()}-svc";

    /// <summary>One checked cell; <see cref="Yes"/>/<see cref="No"/> name the two outcomes in the printed matrix.</summary>
    private sealed record Cell(string Name, bool Expected, bool Actual, string Detail, string Yes = "success", string No = "refused")
    {
        public string Word(bool outcome) => outcome ? Yes : No;
    }

    /// <summary>
    /// Records the mesh client's mTLS handshakes (the Debug event "Handshake", "mTLS connection to {Service}…", which the
    /// shared UpstreamTlsConnector writes under EndpointConnectionPools' category) so a cell can tell an mTLS call from a
    /// plaintext one.
    /// </summary>
    private sealed class HandshakeRecorder : ILoggerProvider
    {
        public const string Category = "Mesh.Client.Http.EndpointConnectionPools";
        private const string HandshakeEventName = "Handshake";

        private readonly ConcurrentQueue<(string Service, string Peer)> _handshakes = new();

        /// <summary>The SPIFFE IDs presented in handshakes with <paramref name="service"/> (short name or FQDN).</summary>
        public IReadOnlyList<string> PeersOf(string service) =>
            [.. _handshakes.Where(h => h.Service == service || h.Service.StartsWith(service + ".", StringComparison.Ordinal)).Select(h => h.Peer).Distinct()];

        public ILogger CreateLogger(string categoryName) => categoryName == Category ? new Recorder(this) : NullLogger.Instance;

        public void Dispose()
        {
        }

        private sealed class Recorder(HandshakeRecorder owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (eventId.Name != HandshakeEventName || state is not IReadOnlyList<KeyValuePair<string, object?>> fields)
                {
                    return;
                }

                var service = fields.FirstOrDefault(f => f.Key == "Service").Value as string ?? string.Empty;
                var peer = fields.FirstOrDefault(f => f.Key == "PeerId").Value as string ?? string.Empty;
                owner._handshakes.Enqueue((service, peer));
            }
        }
    }

    private static async Task<(bool Ok, string Detail)> MeshCallAsync(HttpClient client, string url)
    {
        try
        {
            using var response = await client.GetAsync(url);
            return (response.StatusCode == HttpStatusCode.OK, $"HTTP {(int)response.StatusCode}");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or ServiceMeshException)
        {
            return (false, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static async Task<(bool Ok, string Detail)> PlainCallAsync(HttpClient client, Uri uri)
    {
        try
        {
            using var response = await client.GetAsync(uri);
            return (response.StatusCode == HttpStatusCode.OK, $"HTTP {(int)response.StatusCode}");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return (false, $"{e.GetType().Name}: {e.Message}");
        }
    }

    private static string MatrixYaml() => string.Join("---\n", Modes.Select(mode => $"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {"{"}name: {Service(mode)}, namespace: default{"}"}
        spec:
          hosts: [{Service(mode)}.default.svc.cluster.local]
          ports: [{"{"}number: 80, name: http, protocol: HTTP{"}"}]
          resolution: STATIC
          workloadSelector:
            labels: {"{"}app: {Service(mode)}{"}"}
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {"{"}name: {Service(mode)}, namespace: default{"}"}
        spec:
          selector:
            matchLabels: {"{"}app: {Service(mode)}{"}"}
          mtls: {"{"}mode: {mode}{"}"}

        """));
}
