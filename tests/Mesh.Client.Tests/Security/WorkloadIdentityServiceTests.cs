using System.Security.Cryptography.X509Certificates;
using Mesh.Client.Hosting;
using Mesh.Client.Security;
using Mesh.Client.Tests.Support;
using Mesh.Client.Xds;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Security;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
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

        // The renewal loop arms its timer relative to the clock it read, so an Advance that lands
        // between that read and the arming pushes the due time out. Step the clock until the renewal
        // is seen rather than assume the timer was armed before the first step (CI saw that race).
        await Poll.UntilAsync(
            () =>
            {
                if (!ReferenceEquals(first, store.Current) || store.LastError is not null)
                {
                    return true;
                }

                if (_time.GetUtcNow() < first.NotAfter - TimeSpan.FromHours(1))
                {
                    _time.Advance(TimeSpan.FromMinutes(30));
                }

                return false;
            },
            "the renewed certificate");
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

    [Fact]
    public async Task CredentialFile_Restart_RenewsWithTheSavedSvidInsteadOfTheSpentToken()
    {
        using var scratch = new Scratch();
        using (var first = Create(out var firstStore, out _, credentialFile: scratch.File))
        {
            await first.StartAsync(default);
            await firstStore.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
            await first.StopAsync(default);
        }

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scratch.File));
        Assert.Equal([scratch.File], Directory.GetFiles(scratch.Directory));
        var saved = await File.ReadAllTextAsync(scratch.File);
        Assert.Contains("-----BEGIN PRIVATE KEY-----", saved, StringComparison.Ordinal);
        Assert.Equal(3, saved.Split("-----BEGIN").Length - 1);

        // The restarted workload's token was spent by its first start: a CA that sees it would refuse.
        var logs = new LogSink();
        using var restarted = Create(out var store, out _, token: "spent", credentialFile: scratch.File, logger: logs);
        await restarted.StartAsync(default);
        await Poll.UntilAsync(() => restarted.Issued == 1 || store.LastError is not null, "the renewal after the restart");
        await restarted.StopAsync(default);

        Assert.True(store.LastError is null, store.LastError);
        Assert.Equal(["token", $"cert:{TestCa.Id("orders")}"], _server.Authentications);
        Assert.Contains(logs.Lines, l => l.Contains($"Resuming with the workload certificate for {TestCa.Id("orders")} from Mesh:Identity:CredentialFile {scratch.File}", StringComparison.Ordinal));
        Assert.NotEqual(saved, await File.ReadAllTextAsync(scratch.File));
    }

    [Fact]
    public async Task CredentialFile_Expired_FallsBackToTheTokenAndSaysWhy()
    {
        using var scratch = new Scratch();
        using (var first = Create(out var firstStore, out _, credentialFile: scratch.File))
        {
            await first.StartAsync(default);
            await firstStore.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
            await first.StopAsync(default);
        }

        _time.Advance(TimeSpan.FromHours(25));
        var logs = new LogSink();
        using var restarted = Create(out var store, out _, credentialFile: scratch.File, logger: logs);
        await restarted.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        await restarted.StopAsync(default);

        Assert.Equal(["token", "token"], _server.Authentications);
        Assert.Contains(logs.Lines, l => l.Contains($"Mesh:Identity:CredentialFile {scratch.File} is not used: its certificate is not a valid SVID of this mesh now", StringComparison.Ordinal)
            && l.Contains("requested with the bootstrap token", StringComparison.Ordinal));
    }

    public static TheoryData<string, string> UnusableFiles() => new()
    {
        { "foreign", "its certificate is not a valid SVID of this mesh now" },
        { "other-identity", $"it holds {TestCa.Id("payments")}, not this workload's {TestCa.Id("orders")}" },
        { "garbage", "it holds no CERTIFICATE block" },
        { "no-key", "it is not an ECDSA private key with its certificate chain in PEM" },
        { "group-readable", "it is accessible by group or others (mode 640), so its key may have leaked" },
    };

    [Theory]
    [MemberData(nameof(UnusableFiles))]
    public async Task CredentialFile_Unusable_FallsBackToTheTokenAndSaysWhy(string kind, string expected)
    {
        using var scratch = new Scratch();
        using var foreignCa = new TestCa("foreign-root");
        switch (kind)
        {
            case "foreign":
                Write(scratch.File, foreignCa.Issue([TestCa.Id("orders")]), TestCa.Id("orders"), foreignCa);
                break;
            case "other-identity":
                Write(scratch.File, _ca.Issue([TestCa.Id("payments")]), TestCa.Id("payments"), _ca);
                break;
            case "garbage":
                await File.WriteAllTextAsync(scratch.File, "not a pem file");
                File.SetUnixFileMode(scratch.File, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                break;
            case "no-key":
                await File.WriteAllTextAsync(scratch.File, _ca.Issue([TestCa.Id("orders")]).ExportCertificatePem());
                File.SetUnixFileMode(scratch.File, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                break;
            default:
                Write(scratch.File, _ca.Issue([TestCa.Id("orders")]), TestCa.Id("orders"), _ca);
                File.SetUnixFileMode(scratch.File, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
                break;
        }

        var logs = new LogSink();
        using var identity = Create(out var store, out _, credentialFile: scratch.File, logger: logs);
        await identity.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        await identity.StopAsync(default);

        Assert.Equal(["token"], _server.Authentications);
        Assert.True(logs.Lines.Any(l => l.Contains($"Mesh:Identity:CredentialFile {scratch.File} is not used: {expected}", StringComparison.Ordinal)), string.Join(Environment.NewLine, logs.Lines));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scratch.File));
    }

    [Fact]
    public async Task CredentialFile_ExistingWorldReadableFile_ReplacedByAnOwnerOnlyOne()
    {
        using var scratch = new Scratch();
        await File.WriteAllTextAsync(scratch.File, "old");
        File.SetUnixFileMode(scratch.File, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        using var identity = Create(out var store, out _, credentialFile: scratch.File);

        await identity.StartAsync(default);
        await store.FirstCertificate.WaitAsync(TimeSpan.FromSeconds(10));
        await identity.StopAsync(default);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(scratch.File));
        Assert.Contains("-----BEGIN PRIVATE KEY-----", await File.ReadAllTextAsync(scratch.File), StringComparison.Ordinal);
        Assert.Equal([scratch.File], Directory.GetFiles(scratch.Directory));
    }

    private static void Write(string path, X509Certificate2 leaf, string id, TestCa ca)
    {
        using var key = leaf.GetECDsaPrivateKey()!;
        WorkloadCredentialFile.Save(path, key, new WorkloadCertificate(leaf, ca.Intermediate is { } intermediate ? [intermediate] : [], SpiffeId.Parse(id)));
    }

    private ServiceMeshOptions Options(string token = TestCaServer.Token, string? credentialFile = null)
    {
        var options = new ServiceMeshOptions { Service = "orders" };
        options.ControlPlane.Address = _server.Address;
        options.ControlPlane.RootCertificate = _rootFile;
        options.Identity.Token = token;
        options.Identity.CredentialFile = credentialFile;
        return options;
    }

    private WorkloadIdentityService Create(
        out WorkloadCertificateStore store, out ControlPlaneChannel channel, string token = TestCaServer.Token, string? credentialFile = null, ILoggerProvider? logger = null)
    {
        var options = Microsoft.Extensions.Options.Options.Create(Options(token, credentialFile));
        store = new WorkloadCertificateStore(true, "cluster.local", TrustBundle.FromPem(File.ReadAllText(_rootFile), _rootFile));
        channel = new ControlPlaneChannel(options, store, _time);
        ILogger<WorkloadIdentityService> log = logger is null ? NullLogger<WorkloadIdentityService>.Instance : new Logger<WorkloadIdentityService>(new LoggerFactory([logger]));
        return new WorkloadIdentityService(options, store, channel, _time, log, () => 0.5);
    }

    /// <summary>A private temp directory with the credential file's path in it.</summary>
    private sealed class Scratch : IDisposable
    {
        public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("mesh-credential-").FullName;

        public string File => Path.Combine(Directory, "orders.pem");

        public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);
    }

    /// <summary>Collects every formatted log line.</summary>
    private sealed class LogSink : ILoggerProvider
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Lines { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Sink(this);

        public void Dispose()
        {
        }

        private sealed class Sink(LogSink owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Lines.Enqueue(formatter(state, exception));
        }
    }
}
