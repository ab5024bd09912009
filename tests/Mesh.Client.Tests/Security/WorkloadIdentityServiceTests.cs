using Mesh.Client.Hosting;
using Mesh.Client.Security;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Security;

public sealed class WorkloadIdentityServiceTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.UtcNow);
    private readonly string _rootFile = Path.GetTempFileName();
    private TestCa _ca = null!;
    private TestCaServer _server = null!;

    public async Task InitializeAsync()
    {
        _ca = new TestCa(intermediate: true, time: _time);
        _server = await TestCaServer.StartAsync(_ca);
        await File.WriteAllTextAsync(_rootFile, _ca.RootPem);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _ca.Dispose();
        File.Delete(_rootFile);
    }

    [Fact]
    public async Task Start_WithBootstrapToken_ObtainsSvidWithPrivateKeyAndRenewalAtHalfLife()
    {
        using var identity = Create(out var store, out _);

        await identity.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        await identity.StopAsync(default);

        var certificate = store.Current!;
        Assert.Equal(TestCa.Id("orders"), certificate.Id.Value);
        Assert.True(certificate.Leaf.HasPrivateKey);
        Assert.Single(certificate.Intermediates);
        Assert.Equal(TimeSpan.FromHours(24), certificate.NotAfter - certificate.NotBefore);
        Assert.Equal("token", Assert.Single(_server.Authentications));
        // Half of the remaining lifetime from issuance, not from the backdated NotBefore (now − 2 min).
        var issuedAt = _time.GetUtcNow();
        Assert.Equal(issuedAt + ((certificate.NotAfter - issuedAt) * 0.5), identity.NextRenewal);
    }

    [Fact]
    public async Task Rotation_AtHalfLife_NewSerialAuthenticatedByCurrentSvid()
    {
        using var identity = Create(out var store, out _);
        await identity.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        var first = store.Current!;

        _time.Advance(TimeSpan.FromHours(11));
        await Task.Yield();
        Assert.Same(first, store.Current);

        _time.Advance(TimeSpan.FromHours(1));
        await Poll.UntilAsync(() => !ReferenceEquals(first, store.Current) || store.LastError is not null, "the renewed certificate");
        Assert.True(store.LastError is null, store.LastError);
        await identity.StopAsync(default);

        Assert.NotEqual(first.Leaf.SerialNumber, store.Current!.Leaf.SerialNumber);
        Assert.Equal(first.Id, store.Current.Id);
        Assert.Equal(["token", $"cert:{TestCa.Id("orders")}"], _server.Authentications);
    }

    [Fact]
    public async Task Bundle_ControlPlaneAddsRoot_AppliedLive()
    {
        using var identity = Create(out var store, out _);
        await identity.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        using var next = new TestCa("next-root");
        using var nextLeaf = next.Issue([TestCa.Id("payments")]);
        Assert.False(SvidValidator.TryValidate(nextLeaf, [], store.Bundle, "cluster.local", DateTimeOffset.UtcNow, out _, out _));

        _server.BundlePem = _ca.RootPem + next.RootPem;
        await Poll.UntilAsync(
            () =>
            {
                _time.Advance(WorkloadIdentityService.BundleRefreshInterval);
                return store.Bundle.Roots.Count == 2;
            },
            "the two-root bundle");
        await identity.StopAsync(default);

        Assert.True(SvidValidator.TryValidate(nextLeaf, [], store.Bundle, "cluster.local", DateTimeOffset.UtcNow, out _, out var error), error);
    }

    [Fact]
    public async Task Start_WrongToken_NoCertificateAndReadinessSaysWhy()
    {
        using var identity = Create(out var store, out var channel, token: "wrong");
        await identity.StartAsync(default);
        await Poll.UntilAsync(() => store.LastError is not null, "the failed request");
        await identity.StopAsync(default);

        Assert.Null(store.Current);
        Assert.Contains("Unauthenticated", store.LastError, StringComparison.Ordinal);
        using var xds = new XdsClient(Microsoft.Extensions.Options.Options.Create(Options(token: "wrong")), channel, _time, NullLogger<XdsClient>.Instance, "app");
        var health = await new MeshReadinessHealthCheck(xds, store).CheckHealthAsync(new());
        Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Unhealthy, health.Status);
        Assert.Contains("no workload certificate yet", health.Description, StringComparison.Ordinal);
        Assert.Contains("Unauthenticated", health.Description, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_ControlPlanePresentsOtherIdentity_Refused()
    {
        await using var impostor = await TestCaServer.StartAsync(_ca, TestCa.Id("orders"));
        var options = Options();
        options.ControlPlane.Address = impostor.Address;
        using var store = new WorkloadCertificateStore(true, "cluster.local", _ca.Bundle);
        using var channel = new ControlPlaneChannel(Microsoft.Extensions.Options.Options.Create(options), store, _time);
        using var identity = new WorkloadIdentityService(Microsoft.Extensions.Options.Options.Create(options), store, channel, _time, NullLogger<WorkloadIdentityService>.Instance, () => 0.5);

        await identity.StartAsync(default);
        await Poll.UntilAsync(() => store.LastError is not null, "the failed request");
        await identity.StopAsync(default);

        Assert.Null(store.Current);
        Assert.Empty(impostor.Authentications);
        Assert.Contains($"expected {TestCaServer.ControlPlaneId}): the peer presented {TestCa.Id("orders")}", store.LastError, StringComparison.Ordinal);
    }

    private ServiceMeshOptions Options(string token = TestCaServer.Token)
    {
        var options = new ServiceMeshOptions { Service = "orders" };
        options.ControlPlane.Address = _server.Address;
        options.ControlPlane.RootCertificate = _rootFile;
        options.Identity.Token = token;
        return options;
    }

    private WorkloadIdentityService Create(out WorkloadCertificateStore store, out ControlPlaneChannel channel, string token = TestCaServer.Token)
    {
        var options = Microsoft.Extensions.Options.Options.Create(Options(token));
        store = new WorkloadCertificateStore(true, "cluster.local", TrustBundle.FromPem(File.ReadAllText(_rootFile), _rootFile));
        channel = new ControlPlaneChannel(options, store, _time);
        return new WorkloadIdentityService(options, store, channel, _time, NullLogger<WorkloadIdentityService>.Instance, () => 0.5);
    }
}
