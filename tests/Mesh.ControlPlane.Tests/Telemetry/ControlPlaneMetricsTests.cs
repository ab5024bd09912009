using System.Net;
using System.Reflection;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Tests.Integration;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Mesh.Xds.Istio.Auth.V1;
using Mesh.Xds.Registry.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Mesh.ControlPlane.Tests.Support.AdsFixtures;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Telemetry;

/// <summary>Scrapes a real control plane's admin <c>/metrics</c> over HTTP and checks Istio's series move as istiod's would.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class ControlPlaneMetricsTests
{
    private static readonly string[] IstioNames =
        ["pilot_xds", "pilot_xds_pushes", "pilot_total_xds_rejects", "citadel_server_csr_count", "citadel_server_success_cert_issuance_count"];

    [Fact]
    public async Task Metrics_ConfigChange_OnePushPerChangedTypeAndConvergenceRecorded()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        var node = AdsTestClient.Node();
        node.Metadata = new Struct { Fields = { ["ISTIO_VERSION"] = Value.ForString("1.29.0") } };

        // Subscribe CDS, EDS and LDS to everything and RDS to the orders route only, and ACK each.
        await ads.SendAsync(TypeUrls.Cluster, [], node);
        await ads.AckAsync(await ads.NextAsync(), []);
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, []);
        await ads.AckAsync(await ads.NextAsync(), []);
        await ads.SendAsync(TypeUrls.Listener, []);
        await ads.AckAsync(await ads.NextAsync(), []);
        await ads.SendAsync(TypeUrls.RouteConfiguration, [Cluster80]);
        await ads.AckAsync(await ads.NextAsync(), [Cluster80]);

        var before = await ScrapeUntilAsync(cp.Admin, s => s.Value("pilot_xds", ("version", "1.29.0")) == 1, "pilot_xds{version=\"1.29.0\"} never reached 1");
        Assert.Equal("gauge", before.TypeOf("pilot_xds"));
        Assert.Equal("counter", before.TypeOf("pilot_xds_pushes"));
        Assert.Equal(1, before.Count("pilot_xds_pushes", ("type", "rds")));

        // A new service: new clusters, endpoints and listeners; the orders route the client asked for is unchanged.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "payments.yaml"), Payments);
        var pushed = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var response = await ads.NextAsync();
            pushed.Add(response.TypeUrl);
            await ads.AckAsync(response, response.TypeUrl == TypeUrls.RouteConfiguration ? [Cluster80] : []);
        }

        Assert.Equal([TypeUrls.Cluster, TypeUrls.ClusterLoadAssignment, TypeUrls.Listener], pushed);
        // Both convergence histograms once: istiod's at the push's write, ours at the client's last ACK.
        var after = await ScrapeUntilAsync(
            cp.Admin,
            s => s.Count("pilot_proxy_convergence_time_count") == before.Count("pilot_proxy_convergence_time_count") + 1
                && s.Count("mesh_proxy_ack_convergence_time_count") == before.Count("mesh_proxy_ack_convergence_time_count") + 1,
            "the ACKed change was never recorded in pilot_proxy_convergence_time and mesh_proxy_ack_convergence_time");
        foreach (var type in new[] { "cds", "eds", "lds" })
        {
            Assert.Equal(before.Count("pilot_xds_pushes", ("type", type)) + 1, after.Count("pilot_xds_pushes", ("type", type)));
            Assert.Equal(after.Count("pilot_xds_pushes", ("type", type)), after.Count("pilot_xds_push_time_count", ("type", type)));
        }

        Assert.Equal(before.Count("pilot_xds_pushes", ("type", "rds")), after.Count("pilot_xds_pushes", ("type", "rds")));
        Assert.Equal(2, after.Count("pilot_xds_pushes", ("type", "cds")));

        // Istio's buckets, in seconds, and Istio's names: nothing appended.
        Assert.Equal("histogram", after.TypeOf("pilot_proxy_convergence_time"));
        Assert.Equal("histogram", after.TypeOf("pilot_xds_push_time"));
        foreach (var le in new[] { "0.1", "0.5", "1", "3", "5", "10", "20", "30", "+Inf" })
        {
            Assert.NotNull(after.Value("pilot_proxy_convergence_time_bucket", ("le", le)));
        }

        Assert.DoesNotContain(after.SeriesNames, n => n.EndsWith("_total", StringComparison.Ordinal) && n.StartsWith("pilot_", StringComparison.Ordinal) && n != "pilot_total_xds_rejects");
        Assert.DoesNotContain(after.SeriesNames, n => n.StartsWith("pilot_xds_push_time_seconds", StringComparison.Ordinal) || n.StartsWith("pilot_proxy_convergence_time_seconds", StringComparison.Ordinal));
        Assert.DoesNotContain("target_info", after.Text, StringComparison.Ordinal);
        Assert.DoesNotContain("otel_scope_name", after.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_ConfigChangeNacked_PushConvergenceRecordedAsIstiodDoes_AckConvergenceNot()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        await ads.AckAsync(await ads.NextAsync(), []);
        var before = await ScrapeUntilAsync(cp.Admin, s => s.Value("pilot_xds", ("version", "unknown")) == 1, "the client is not counted in pilot_xds");

        // The change's CDS push is rejected: istiod still records its write; the client never converged on it.
        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "payments.yaml"), Payments);
        var cds = await ads.NextAsync();
        await ads.SendAsync(TypeUrls.Cluster, [], nonce: cds.Nonce, version: string.Empty, error: "cluster rejected by the test");

        var after = await ScrapeUntilAsync(
            cp.Admin,
            s => s.Count("pilot_total_xds_rejects", ("type", "cds")) == 1 && s.Count("pilot_proxy_convergence_time_count") == before.Count("pilot_proxy_convergence_time_count") + 1,
            "the NACKed push was never recorded in pilot_proxy_convergence_time");
        Assert.Equal(before.Count("mesh_proxy_ack_convergence_time_count"), after.Count("mesh_proxy_ack_convergence_time_count"));
    }

    [Fact]
    public async Task Metrics_Nack_CountedInRejectsAndClientLeavesPilotXds()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        var ads = cp.OpenAds();
        await using (ads)
        {
            await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], AdsTestClient.Node());
            var eds = await ads.NextAsync();
            await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], nonce: eds.Nonce, version: string.Empty, error: "endpoint rejected by the test");

            var scrape = await ScrapeUntilAsync(cp.Admin, s => s.Count("pilot_total_xds_rejects", ("type", "eds")) == 1, "the NACK was never counted");
            Assert.Equal("counter", scrape.TypeOf("pilot_total_xds_rejects"));
            Assert.Equal(0, scrape.Count("pilot_total_xds_rejects", ("type", "cds")));
            Assert.Equal(1, scrape.Value("pilot_xds", ("version", "unknown")));
        }

        await ScrapeUntilAsync(cp.Admin, s => s.Value("pilot_xds", ("version", "unknown")) == 0, "the closed stream is still counted in pilot_xds");
    }

    [Fact]
    public async Task Metrics_NackOfASupersededResponse_IsStillCounted()
    {
        // A bad push quickly followed by a fix: the client's NACK names the older nonce, yet the rejection happened.
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        await using var ads = cp.OpenAds();
        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], AdsTestClient.Node());
        var eds = await ads.NextAsync();
        Assert.NotEqual("0", eds.Nonce);

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, [Cluster80], nonce: "0", version: string.Empty, error: "rejected an older response");

        await ScrapeUntilAsync(cp.Admin, s => s.Count("pilot_total_xds_rejects", ("type", "eds")) == 1, "the NACK of a superseded response was not counted");
    }

    [Fact]
    public async Task Metrics_OnlyOnTheAdminPort()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        using var xds = new HttpClient { BaseAddress = cp.Host.XdsAddress, DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };

        using var onXds = await xds.GetAsync(new Uri("/metrics", UriKind.Relative));
        using var post = await cp.Admin.PostAsync(new Uri("/metrics", UriKind.Relative), null);

        Assert.Equal(HttpStatusCode.NotFound, onXds.StatusCode);
        Assert.NotEqual(HttpStatusCode.OK, post.StatusCode);
        var scrape = await PrometheusText.ScrapeAsync(cp.Admin);
        Assert.Contains("# TYPE mesh_config_errors gauge", scrape.Text, StringComparison.Ordinal);

        // istiod's build gauge (the control-plane dashboard's "Pilot Versions"): this build's version, no commit suffix.
        var version = typeof(Mesh.ControlPlane.Telemetry.ControlPlaneMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion;
        Assert.Equal(1, scrape.Value("istio_build", ("component", "pilot"), ("tag", version.Split('+')[0])));
    }

    [Fact]
    public async Task Metrics_CertificateRequests_CountCsrsIssuancesAndEachFailure()
    {
        await using var cp = await SecureHost.StartAsync();

        await cp.IssueAsync(cp.Token("default", "orders"));
        var issued = await ScrapeUntilAsync(cp.Admin, s => s.Count("citadel_server_success_cert_issuance_count") == 1, "the issuance was never counted");
        Assert.Equal(1, issued.Count("citadel_server_csr_count"));
        Assert.Equal("counter", issued.TypeOf("citadel_server_csr_count"));

        var badCsr = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n" },
            SecureHost.Bearer(cp.Token("default", "orders"))).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, badCsr.StatusCode);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var noCredential = await Assert.ThrowsAsync<RpcException>(() => cp.CaClient().CreateCertificateAsync(
            new IstioCertificateRequest { Csr = SecureHost.Csr(key) }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, noCredential.StatusCode);

        var scrape = await ScrapeUntilAsync(cp.Admin, s => s.Count("citadel_server_csr_count") == 3, "citadel_server_csr_count never reached 3");
        Assert.Equal(1, scrape.Count("citadel_server_success_cert_issuance_count"));
        Assert.Equal(1, scrape.Count("citadel_server_csr_parsing_err_count"));
        Assert.Equal(1, scrape.Count("citadel_server_authentication_failure_count"));

        // The generated ten-year root: its expiry as a unix timestamp, and no warning.
        var root = cp.Ca.Roots[0];
        Assert.Equal(new DateTimeOffset(root.NotAfter.ToUniversalTime()).ToUnixTimeSeconds(), scrape.Value("citadel_server_root_cert_expiry_timestamp")!.Value, 0);
        Assert.Equal(scrape.Value("citadel_server_root_cert_expiry_timestamp"), scrape.Value("citadel_server_cert_chain_expiry_timestamp"));
        Assert.Equal(0, scrape.Value("mesh_ca_expiry_warning", ("cert", "root")));
        Assert.Equal("ready", await ReadyBodyAsync(cp.Admin));
        Assert.All(IstioNames, name => Assert.DoesNotContain(name + "_total", scrape.Text, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Metrics_RootWithinExpiryWindow_ReportedByMetricLogAndReadiness()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            var (root, rootKey) = MakeCa("CN=Expiring Root", null, TimeSpan.FromDays(10));
            var logs = new LogSink();
            await using var cp = await SecureHost.StartAsync(
                null, [.. CaArgs(dir, root, rootKey, []), "--ControlPlane:Ca:DefaultTtl=01:00:00"], plaintextXds: false, services => services.AddSingleton<ILoggerProvider>(logs));

            var warning = Assert.Single(logs.Entries, e => e.EventName == "CaCertificateExpiring");
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Contains("root certificate 'CN=Expiring Root'", warning.Message, StringComparison.Ordinal);
            Assert.Contains("ControlPlane:Ca:ExpiryWarningWindow 30.00:00:00", warning.Message, StringComparison.Ordinal);

            var body = await ReadyBodyAsync(cp.Admin);
            Assert.StartsWith("ready\nwarning: the CA's root certificate 'CN=Expiring Root' expires at ", body, StringComparison.Ordinal);

            var scrape = await PrometheusText.ScrapeAsync(cp.Admin);
            Assert.Equal(1, scrape.Value("mesh_ca_expiry_warning", ("cert", "root")));
            Assert.Equal(new DateTimeOffset(root.NotAfter.ToUniversalTime()).ToUnixTimeSeconds(), scrape.Value("citadel_server_root_cert_expiry_timestamp")!.Value, 0);
            Assert.InRange(scrape.Value("citadel_server_root_cert_expiry_seconds")!.Value, TimeSpan.FromDays(9).TotalSeconds, TimeSpan.FromDays(10).TotalSeconds);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Metrics_SigningCertificateWithinWindow_RootFine_WarnsForTheChainOnly()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            var (root, rootKey) = MakeCa("CN=Long Root", null, TimeSpan.FromDays(365));
            var (intermediate, intermediateKey) = MakeCa("CN=Expiring Intermediate", (root, rootKey), TimeSpan.FromDays(20));
            var logs = new LogSink();
            await using var cp = await SecureHost.StartAsync(
                null, [.. CaArgs(dir, intermediate, intermediateKey, [root]), "--ControlPlane:Ca:DefaultTtl=01:00:00"], plaintextXds: false, services => services.AddSingleton<ILoggerProvider>(logs));

            var warning = Assert.Single(logs.Entries, e => e.EventName == "CaCertificateExpiring");
            Assert.Contains("signing certificate 'CN=Expiring Intermediate'", warning.Message, StringComparison.Ordinal);
            var body = await ReadyBodyAsync(cp.Admin);
            Assert.StartsWith("ready\nwarning: the CA's signing certificate 'CN=Expiring Intermediate'", body, StringComparison.Ordinal);
            Assert.DoesNotContain("root certificate", body, StringComparison.Ordinal);

            var scrape = await PrometheusText.ScrapeAsync(cp.Admin);
            Assert.Equal(0, scrape.Value("mesh_ca_expiry_warning", ("cert", "root")));
            Assert.Equal(1, scrape.Value("mesh_ca_expiry_warning", ("cert", "cert_chain")));
            Assert.Equal(new DateTimeOffset(intermediate.NotAfter.ToUniversalTime()).ToUnixTimeSeconds(), scrape.Value("citadel_server_cert_chain_expiry_timestamp")!.Value, 0);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Metrics_WindowShorterThanTimeLeft_NoWarning()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        try
        {
            var (root, rootKey) = MakeCa("CN=Root Ten Days", null, TimeSpan.FromDays(10));
            var logs = new LogSink();
            await using var cp = await SecureHost.StartAsync(
                null, [.. CaArgs(dir, root, rootKey, []), "--ControlPlane:Ca:DefaultTtl=01:00:00", "--ControlPlane:Ca:ExpiryWarningWindow=5.00:00:00"], plaintextXds: false,
                services => services.AddSingleton<ILoggerProvider>(logs));

            Assert.Equal("ready", await ReadyBodyAsync(cp.Admin));
            Assert.DoesNotContain(logs.Entries, e => e.EventName == "CaCertificateExpiring");
            Assert.Equal(0, (await PrometheusText.ScrapeAsync(cp.Admin)).Value("mesh_ca_expiry_warning", ("cert", "root")));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("soon")]
    [InlineData("-1.00:00:00")]
    [InlineData("4000.00:00:00")]
    public async Task StartAsync_BadExpiryWarningWindow_FailsNamingTheKey(string value)
    {
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => ControlPlaneHost.StartAsync([$"--ControlPlane:Ca:ExpiryWarningWindow={value}"]));

        Assert.Contains($"ControlPlane:Ca:ExpiryWarningWindow must be a TimeSpan like 30.00:00:00 between 00:00:00 and 3650.00:00:00 (got '{value}')", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_ConfigErrorsRegistrationsAndLeaseExpiries()
    {
        await using var cp = await ControlPlaneFixture.StartAsync(("orders.yaml", Orders));
        var start = await PrometheusText.ScrapeAsync(cp.Admin);
        Assert.Equal(0, start.Value("mesh_config_errors", ("kind", "VirtualService")));

        await File.WriteAllTextAsync(Path.Combine(cp.ConfigDirectory, "bad.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata:
              name: broken
            spec:
              hosts: [orders]
              http:
              - route:
                - destination: {host: nowhere}
            """);
        var broken = await ScrapeUntilAsync(cp.Admin, s => s.Value("mesh_config_errors", ("kind", "VirtualService")) >= 1, "the VirtualService error never showed in mesh_config_errors");
        Assert.Equal(0, broken.Value("mesh_config_errors", ("kind", "ServiceEntry")));
        File.Delete(Path.Combine(cp.ConfigDirectory, "bad.yaml"));
        await ScrapeUntilAsync(cp.Admin, s => s.Value("mesh_config_errors", ("kind", "VirtualService")) == 0, "mesh_config_errors stayed up after the folder was fixed");

        var registry = new WorkloadRegistry.WorkloadRegistryClient(cp.Channel);
        var workload = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5002 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" };
        var kept = await registry.RegisterAsync(new RegisterRequest { Workload = workload });
        await registry.RenewAsync(new RenewRequest { LeaseId = kept.LeaseId });
        await registry.DeregisterAsync(new DeregisterRequest { LeaseId = kept.LeaseId });
        var shortLived = new WorkloadEntry { Address = "127.0.0.1", Ports = { ["http"] = 5003 }, Labels = { ["app"] = "orders" }, ServiceAccount = "orders" };
        await registry.RegisterAsync(new RegisterRequest { Workload = shortLived, LeaseTtl = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) });

        // Not renewed: the one-second lease expires and is counted once.
        var expired = await ScrapeUntilAsync(cp.Admin, s => s.Count("mesh_lease_expiries") == 1, "the unrenewed lease never counted in mesh_lease_expiries");
        Assert.Equal(2, expired.Count("mesh_registrations", ("event", "register")));
        Assert.Equal(1, expired.Count("mesh_registrations", ("event", "renew")));
        Assert.Equal(1, expired.Count("mesh_registrations", ("event", "deregister")));
        Assert.Equal(0, expired.Value("mesh_leases"));
    }

    private static async Task<PrometheusText> ScrapeUntilAsync(HttpClient admin, Func<PrometheusText, bool> condition, string failure)
    {
        PrometheusText? last = null;
        await Poll.UntilAsync(async () => condition(last = await PrometheusText.ScrapeAsync(admin)), failure);
        return last!;
    }

    private static async Task<string> ReadyBodyAsync(HttpClient admin)
    {
        string? body = null;
        await Poll.UntilAsync(async () =>
        {
            using var response = await admin.GetAsync(new Uri("/healthz/ready", UriKind.Relative));
            body = await response.Content.ReadAsStringAsync();
            return response.StatusCode == HttpStatusCode.OK;
        }, "the control plane never became ready");
        return body!;
    }

    private static string[] CaArgs(string dir, X509Certificate2 cert, ECDsa key, X509Certificate2[] chain)
    {
        var certFile = Path.Combine(dir, "ca-cert.pem");
        var keyFile = Path.Combine(dir, "ca-key.pem");
        File.WriteAllText(certFile, CertificateAuthority.ToPem(cert));
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        string[] args = [$"--ControlPlane:Ca:CertificateFile={certFile}", $"--ControlPlane:Ca:KeyFile={keyFile}"];
        if (chain.Length == 0)
        {
            return args;
        }

        var chainFile = Path.Combine(dir, "ca-chain.pem");
        File.WriteAllText(chainFile, string.Concat(chain.Select(CertificateAuthority.ToPem)));
        return [.. args, $"--ControlPlane:Ca:ChainFile={chainFile}"];
    }

    private static (X509Certificate2 Cert, ECDsa Key) MakeCa(string subject, (X509Certificate2 Cert, ECDsa Key)? issuer, TimeSpan lifetime)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var notBefore = DateTimeOffset.UtcNow.AddDays(-1);
        if (issuer is null)
        {
            return (request.CreateSelfSigned(notBefore, DateTimeOffset.UtcNow + lifetime), key);
        }

        var issued = request.Create(issuer.Value.Cert.SubjectName, X509SignatureGenerator.CreateForECDsa(issuer.Value.Key), notBefore, DateTimeOffset.UtcNow + lifetime, RandomNumberGenerator.GetBytes(8));
        return (issued, key);
    }
}
