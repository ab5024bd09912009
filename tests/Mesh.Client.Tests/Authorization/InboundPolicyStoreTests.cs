using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Mesh.Client.Tests.Authorization;

public sealed class InboundPolicyStoreTests
{
    private const string Name8080 = "xds.istio.io/grpc/lds/inbound/127.0.0.1:8080";

    [Fact]
    public void Lookup_WorkloadWithoutInboundMeshTraffic_PortIsNotMeshServed()
    {
        var store = new InboundPolicyStore();

        Assert.Equal(InboundPortState.NotMeshServed, store.Lookup(8080, out _));
        Assert.Null(store.PendingReason());
    }

    /// <summary>
    /// Fail closed from the first request: the store knows it is mesh-served when it is created, not when the registration
    /// service starts (with ServicesStartConcurrently, or Kestrel ordered first, the server may serve before that).
    /// </summary>
    [Theory]
    [InlineData("https://127.0.0.1:1", "orders", null, true)]
    [InlineData("https://127.0.0.1:1", "orders", "true", true)]
    [InlineData("https://127.0.0.1:1", "orders", "false", true)]
    [InlineData("https://127.0.0.1:1", null, null, false)]
    [InlineData("http://127.0.0.1:1", "orders", null, false)]
    public void Lookup_BeforeAnyHostedServiceStarts_MeshServedDecidedByOptions(string address, string? service, string? registration, bool meshServed)
    {
        var root = Path.GetTempFileName();
        try
        {
            using (var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256))
            {
                var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=root", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
                using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddHours(1));
                File.WriteAllText(root, certificate.ExportCertificatePem());
            }

            var settings = new Dictionary<string, string?>
            {
                ["Mesh:ControlPlane:Address"] = address,
                ["Mesh:ControlPlane:RootCertificate"] = root,
                ["Mesh:Identity:Token"] = "t",
            };
            if (service is not null)
            {
                settings["Mesh:Service"] = service;
            }

            if (registration is not null)
            {
                settings["Mesh:Registration:Enabled"] = registration;
            }

            var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Configuration.AddInMemoryCollection(settings);
            builder.Services.Configure<HostOptions>(o => o.ServicesStartConcurrently = true);
            builder.AddServiceMesh();
            using var host = builder.Build();

            var store = host.Services.GetRequiredService<InboundPolicyStore>();

            Assert.Equal(meshServed, store.IsMeshServed);
            Assert.Equal(meshServed ? InboundPortState.NotReceived : InboundPortState.NotMeshServed, store.Lookup(8080, out _));
        }
        finally
        {
            File.Delete(root);
        }
    }

    [Fact]
    public void Lookup_MeshServedWithoutPolicy_NotReceivedOnEveryPort()
    {
        var store = new InboundPolicyStore(meshServed: true);
        store.Replace([Policy(9090)]);

        Assert.Equal(InboundPortState.NotReceived, store.Lookup(8080, out var policy));
        Assert.Null(policy);
        Assert.Equal(InboundPortState.Policy, store.Lookup(9090, out policy));
        Assert.Equal(9090, policy!.Port);
    }

    [Fact]
    public void Lookup_PolicyLeftOutOfTheNextPush_RemovedEvenWhenNotMeshServed_UntilItComesBack()
    {
        var store = new InboundPolicyStore();
        store.Replace([Policy(8080)]);
        store.Replace([]);

        Assert.Equal(InboundPortState.Removed, store.Lookup(8080, out _));
        Assert.Equal(PeerAuthenticationMode.Unset, store.GetMode(8080));

        store.Replace([]);
        Assert.Equal(InboundPortState.Removed, store.Lookup(8080, out _));

        store.Replace([Policy(8080)]);
        Assert.Equal(InboundPortState.Policy, store.Lookup(8080, out _));
    }

    [Fact]
    public void PendingReason_NamesNotReceivedThenRemovedListeners()
    {
        var store = new InboundPolicyStore(meshServed: true);
        Assert.Contains("not yet requested", store.PendingReason(), StringComparison.Ordinal);

        Assert.True(store.SetNames([Name8080]));
        Assert.False(store.SetNames([Name8080]));
        Assert.Contains($"of {Name8080} has not arrived yet", store.PendingReason(), StringComparison.Ordinal);

        store.Replace([Policy(8080)]);
        Assert.Null(store.PendingReason());

        store.Replace([]);
        Assert.Contains($"the control plane removed the inbound policy (PeerAuthentication, AuthorizationPolicy) of {Name8080}", store.PendingReason(), StringComparison.Ordinal);
    }

    private static InboundPolicy Policy(int port) => new($"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}", port, PeerAuthenticationMode.Strict, deny: null, allow: null, PathNormalizationOptions.Default);
}
