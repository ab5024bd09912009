using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Mesh.ControlPlane.Tests.Integration;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Service.Discovery.V3;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>ADS on the secure port: a workload SVID is required; bounded per-stream state.</summary>
public sealed class SecureAdsTests
{
    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          endpoints: [{address: 127.0.0.2}]
        """;

    [Fact]
    public async Task StreamAggregatedResources_NoClientCertificate_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync(files: ("orders.yaml", Orders));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel()).StreamAggregatedResources());

        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.StartsWith("ADS on the secure port (ControlPlane:SecureAddress) requires the workload's certificate", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_BootstrapTokenWithoutCertificate_Unauthenticated()
    {
        await using var cp = await SecureHost.StartAsync(files: ("orders.yaml", Orders));
        var call = new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel()).StreamAggregatedResources(SecureHost.Bearer(cp.Token("default", "orders")));
        await using var ads = new AdsTestClient(call);

        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());

        Assert.Equal(StatusCode.Unauthenticated, (await ads.ErrorAsync()).StatusCode);
    }

    [Fact]
    public async Task StreamAggregatedResources_CertificateOfAnotherCa_UnauthenticatedNamingWhy()
    {
        await using var cp = await SecureHost.StartAsync(files: ("orders.yaml", Orders));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=orders", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddUri(new Uri("spiffe://cluster.local/ns/default/sa/orders"));
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        using var foreign = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(foreign)).StreamAggregatedResources());

        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.Contains("is not issued by a CA of the trust bundle", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_WorkloadCertificate_ServesClustersAndCaStillTakesTokenOnlyCallers()
    {
        await using var cp = await SecureHost.StartAsync(files: ("orders.yaml", Orders));

        // CreateCertificate on the same port without a client certificate: the TLS layer asks for one but does not require it.
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "frontend"));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(leaf)).StreamAggregatedResources());
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());

        Assert.Single((await ads.NextAsync()).Resources);
    }

    [Fact]
    public async Task StreamAggregatedResources_ClientCertificateExpires_StreamEndsUnauthenticated()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var cp = await SecureHost.StartAsync(null, null, false, services => services.AddSingleton<TimeProvider>(time), ("orders.yaml", Orders));
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "frontend"), ttlSeconds: 600);
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(leaf)).StreamAggregatedResources());
        await ads.SendAsync(TypeUrls.Cluster, [], AdsTestClient.Node());
        Assert.Single((await ads.NextAsync()).Resources);

        // No stream outlives the credential it was opened with: past NotAfter the client must reconnect with its renewed SVID.
        time.Advance(TimeSpan.FromMinutes(11));
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.Unauthenticated, error.StatusCode);
        Assert.StartsWith("the client certificate of spiffe://cluster.local/ns/default/sa/frontend expired at ", error.Status.Detail, StringComparison.Ordinal);
        Assert.EndsWith("; reconnect presenting the renewed SVID", error.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StreamAggregatedResources_TooManyNamesForOneType_ResourceExhaustedNamingTheKey()
    {
        await using var cp = await SecureHost.StartAsync(args: ["--ControlPlane:AdsMaxResourceNamesPerType=3"], files: ("orders.yaml", Orders));
        var (_, leaf) = await cp.IssueAsync(cp.Token("default", "frontend"));
        await using var ads = new AdsTestClient(new AggregatedDiscoveryService.AggregatedDiscoveryServiceClient(cp.SecureChannel(leaf)).StreamAggregatedResources());

        await ads.SendAsync(TypeUrls.ClusterLoadAssignment, ["a", "b", "c", "d"], AdsTestClient.Node());
        var error = await ads.ErrorAsync();

        Assert.Equal(StatusCode.ResourceExhausted, error.StatusCode);
        Assert.Contains("holds 4 type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment names of resources that do not exist", error.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("at most 3 such names per type (ControlPlane:AdsMaxResourceNamesPerType)", error.Status.Detail, StringComparison.Ordinal);
    }
}
