using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Tests.Security;
using Mesh.KubernetesFake;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>
/// Replicas on Kubernetes sign under one root: the Secret mesh-system/mesh-ca (istio-ca-secret layout), created once by the
/// holder of the Lease mesh-system/mesh-control-plane, against the fake API server through the real KubernetesClient.
/// </summary>
public sealed class SharedCaSecretTests : IAsyncLifetime
{
    private const string Ns = "mesh-system";
    private FakeKubernetesApiServer _api = null!;
    private readonly List<string> _roots = [];

    public async Task InitializeAsync() => _api = await FakeKubernetesApiServer.StartAsync();

    public async Task DisposeAsync()
    {
        await _api.DisposeAsync();
        foreach (var root in _roots)
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    [Fact]
    public async Task TwoReplicasStartTogether_OneSecretOneRoot_OneLeader_RestartReusesIt()
    {
        // At the same moment: both find no Secret and no Lease.
        var hosts = await Task.WhenAll(StartAsync(), StartAsync());
        var (first, second) = (hosts[0], hosts[1]);
        SecureHost? third = null;
        var stopped = false;
        try
        {
            var secret = _api.TryGet("v1", "Secret", Ns, SharedCaSecret.SecretName);
            Assert.NotNull(secret);
            var secretRoot = X509Certificate2.CreateFromPem(Data(secret, SharedCaSecret.CertificateKey));
            Assert.Equal(secretRoot.Thumbprint, first.Ca.Roots[0].Thumbprint);
            Assert.Equal(secretRoot.Thumbprint, second.Ca.Roots[0].Thumbprint);

            // Exactly one replica made it (one create request reached the API server), and it held the Lease.
            var outcomes = new[] { Outcome(first) ?? "none", Outcome(second) ?? "none" }.Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(["created", "read"], outcomes);
            Assert.Single(_api.Requests, r => r.Method == "POST" && r.Resource == "secrets");
            var creator = Outcome(first) == "created" ? first : second;
            var lease = _api.TryGet("coordination.k8s.io/v1", "Lease", Ns, ControlPlaneLeaderElection.LeaseName);
            Assert.NotNull(lease);
            Assert.Equal(Election(creator).Identity, lease["spec"]!["holderIdentity"]!.GetValue<string>());
            Assert.Equal(15, lease["spec"]!["leaseDurationSeconds"]!.GetValue<int>());
            Assert.True(Election(creator).IsLeader);
            Assert.False(Election(creator == first ? second : first).IsLeader);

            // The leadership shows on the admin port.
            var debug = await creator.Admin.GetFromJsonAsync<JsonObject>(new Uri(creator.Host.AdminAddress, "/debug/leader"));
            Assert.True(debug!["isLeader"]!.GetValue<bool>());
            Assert.Equal($"{Ns}/{ControlPlaneLeaderElection.LeaseName}", debug["lease"]!.GetValue<string>());

            // A workload certified by one replica is accepted by the other: the same CA.
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            using var leaf = first.Ca.Issue(new PublicKey(key), new WorkloadIdentity("cluster.local", "default", "orders"), TimeSpan.FromHours(1));
            Assert.NotNull(second.Ca.ValidateWorkloadCertificate(leaf, out var reason));
            Assert.Equal(string.Empty, reason);

            // Both stop; a replica with an empty state folder reads the same root from the Secret.
            await first.DisposeAsync();
            await second.DisposeAsync();
            stopped = true;
            third = await StartAsync();
            Assert.Equal("read", Outcome(third));
            Assert.Equal(secretRoot.Thumbprint, third.Ca.Roots[0].Thumbprint);
            Assert.Single(_api.Requests, r => r.Method == "POST" && r.Resource == "secrets");
        }
        finally
        {
            if (!stopped)
            {
                await first.DisposeAsync();
                await second.DisposeAsync();
            }

            if (third is not null)
            {
                await third.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task LeaseHeldByADeadReplica_TakenOverAfterItsDuration_ThenTheSecretIsCreated()
    {
        // A previous leader died before creating the Secret: its Lease says so until it runs out.
        var now = DateTime.UtcNow;
        _api.Create(new JsonObject
        {
            ["apiVersion"] = "coordination.k8s.io/v1",
            ["kind"] = "Lease",
            ["metadata"] = new JsonObject { ["name"] = ControlPlaneLeaderElection.LeaseName, ["namespace"] = Ns },
            ["spec"] = new JsonObject
            {
                ["holderIdentity"] = "mesh-control-plane-dead_00000000",
                ["leaseDurationSeconds"] = 3,
                ["acquireTime"] = now.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture),
                ["renewTime"] = now.ToString("yyyy-MM-ddTHH:mm:ss.ffffffZ", System.Globalization.CultureInfo.InvariantCulture),
            },
        });
        var started = System.Diagnostics.Stopwatch.StartNew();

        await using var host = await StartAsync("--ControlPlane:Kubernetes:LeaseDuration=00:00:03", "--ControlPlane:Kubernetes:RenewDeadline=00:00:02", "--ControlPlane:Kubernetes:RetryPeriod=00:00:00.500");

        Assert.Equal("created", Outcome(host));
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(3), $"took the Lease after {started.Elapsed.TotalSeconds:0.0} s, before the dead holder's 3 s ran out");
        var lease = _api.TryGet("coordination.k8s.io/v1", "Lease", Ns, ControlPlaneLeaderElection.LeaseName)!;
        Assert.Equal(Election(host).Identity, lease["spec"]!["holderIdentity"]!.GetValue<string>());
        Assert.Equal(1, lease["spec"]!["leaseTransitions"]!.GetValue<int>());
    }

    [Theory]
    [InlineData("mismatched-key", "Secret mesh-system/mesh-ca key ca-key.pem is not the private key of the certificate in ca-cert.pem")]
    [InlineData("missing-key", "Secret mesh-system/mesh-ca has no data key ca-key.pem")]
    [InlineData("garbage-cert", "Secret mesh-system/mesh-ca key ca-cert.pem is not a PEM certificate")]
    [InlineData("leaf-cert", "Secret mesh-system/mesh-ca key ca-cert.pem holds 'CN=not-a-ca', which is not a CA certificate")]
    [InlineData("expired-cert", "Secret mesh-system/mesh-ca key ca-cert.pem holds 'CN=Expired Root', valid")]
    public async Task Secret_Tampered_StartupFailsNamingSecretAndKey_NeverANewRoot(string tampering, string expected)
    {
        using var rootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Mesh Root CA", rootKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var root = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));
        var expiredRequest = new CertificateRequest("CN=Expired Root", rootKey, HashAlgorithmName.SHA256);
        expiredRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var expired = expiredRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddYears(-2), DateTimeOffset.UtcNow.AddYears(-1));
        using var leaf = new CertificateRequest("CN=not-a-ca", rootKey, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddYears(1));
        var data = tampering switch
        {
            "mismatched-key" => new JsonObject { ["ca-cert.pem"] = B64(root.ExportCertificatePem()), ["ca-key.pem"] = B64(otherKey.ExportPkcs8PrivateKeyPem()) },
            "missing-key" => new JsonObject { ["ca-cert.pem"] = B64(root.ExportCertificatePem()) },
            "garbage-cert" => new JsonObject { ["ca-cert.pem"] = B64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), ["ca-key.pem"] = B64(rootKey.ExportPkcs8PrivateKeyPem()) },
            "expired-cert" => new JsonObject { ["ca-cert.pem"] = B64(expired.ExportCertificatePem()), ["ca-key.pem"] = B64(rootKey.ExportPkcs8PrivateKeyPem()) },
            "leaf-cert" => new JsonObject { ["ca-cert.pem"] = B64(leaf.ExportCertificatePem()), ["ca-key.pem"] = B64(rootKey.ExportPkcs8PrivateKeyPem()) },
            _ => throw new ArgumentOutOfRangeException(nameof(tampering)),
        };
        var stored = _api.Create(new JsonObject
        {
            ["apiVersion"] = "v1",
            ["kind"] = "Secret",
            ["metadata"] = new JsonObject { ["name"] = SharedCaSecret.SecretName, ["namespace"] = Ns },
            ["data"] = data,
        });
        var version = stored["metadata"]!["resourceVersion"]!.GetValue<string>();
        var dir = NewRoot();

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => SecureHost.StartAsync(dir, Args()));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Equal(version, _api.TryGet("v1", "Secret", Ns, SharedCaSecret.SecretName)!["metadata"]!["resourceVersion"]!.GetValue<string>());
        Assert.False(File.Exists(Path.Combine(dir, "state", "ca", "root-cert.pem")), "a root was written despite the broken Secret");
        Assert.DoesNotContain(_api.Requests, r => r.Resource == "secrets" && r.Method is "POST" or "PUT" or "PATCH" or "DELETE");
    }

    [Fact]
    public async Task LocalRootFromEarlierRun_ReplacedByTheSecrets()
    {
        // First without Kubernetes: a root of its own in the state folder; then on Kubernetes with a Secret made by another replica.
        var dir = NewRoot();
        string localThumbprint;
        await using (var local = await SecureHost.StartAsync(dir))
        {
            localThumbprint = local.Ca.Roots[0].Thumbprint;
        }

        await using var other = await StartAsync();
        await using var host = await SecureHost.StartAsync(dir, Args());

        Assert.Equal("read", Outcome(host));
        Assert.NotEqual(localThumbprint, host.Ca.Roots[0].Thumbprint);
        Assert.Equal(other.Ca.Roots[0].Thumbprint, host.Ca.Roots[0].Thumbprint);
    }

    private async Task<SecureHost> StartAsync(params string[] extra) => await SecureHost.StartAsync(NewRoot(), [.. Args(), .. extra]);

    private string[] Args() =>
    [
        "--ControlPlane:Kubernetes:Enabled=true",
        $"--ControlPlane:Kubernetes:Kubeconfig={_api.KubeconfigPath}",
        $"--ControlPlane:Kubernetes:SystemNamespace={Ns}",
    ];

    private string NewRoot()
    {
        var root = SecureHost.NewRoot();
        _roots.Add(root);
        return root;
    }

    private static string? Outcome(SecureHost host) => ((SharedCaSecret)host.Host.Services.GetService(typeof(SharedCaSecret))!).Outcome;

    private static ControlPlaneLeaderElection Election(SecureHost host) => (ControlPlaneLeaderElection)host.Host.Services.GetService(typeof(ControlPlaneLeaderElection))!;

    private static string Data(JsonObject secret, string key) => Encoding.ASCII.GetString(Convert.FromBase64String(secret["data"]![key]!.GetValue<string>()));

    private static string B64(string text) => Convert.ToBase64String(Encoding.ASCII.GetBytes(text));
}
