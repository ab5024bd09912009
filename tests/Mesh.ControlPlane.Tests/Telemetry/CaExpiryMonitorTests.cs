using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Telemetry;
using Mesh.ControlPlane.Tests.Security;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Telemetry;

[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public class CaExpiryMonitorTests
{
    [Fact]
    public async Task Check_RootEntersWindowWhileRunning_WarnsThenRepeatsDaily()
    {
        var dir = SecureHost.NewRoot();
        Directory.CreateDirectory(dir);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        try
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=Forty Day Root", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            using var root = request.CreateSelfSigned(time.GetUtcNow().AddDays(-1), time.GetUtcNow().AddDays(40));
            var certFile = Path.Combine(dir, "ca-cert.pem");
            var keyFile = Path.Combine(dir, "ca-key.pem");
            await File.WriteAllTextAsync(certFile, CertificateAuthority.ToPem(root));
            await File.WriteAllTextAsync(keyFile, key.ExportPkcs8PrivateKeyPem());
            File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            var options = new ControlPlaneOptions { StateDirectory = dir, Ca = new CaOptions { CertificateFile = certFile, KeyFile = keyFile } };
            using var ca = CertificateAuthority.Load(options, time);
            var logger = new Sink();
            using var monitor = new CaExpiryMonitor(ca, options, time, logger);

            await monitor.StartAsync(CancellationToken.None);
            Assert.Empty(logger.Warnings);
            Assert.Empty(monitor.Warnings());

            // Eleven days on, 29 days are left: inside the 30-day window, found by the hourly check.
            time.Advance(TimeSpan.FromDays(11));
            await Poll.UntilAsync(() => logger.Warnings.Count == 1, "entering the window while running was never logged");
            Assert.Contains("root certificate 'CN=Forty Day Root'", Assert.Single(monitor.Warnings()), StringComparison.Ordinal);

            // Not again within the day; again once a day has passed.
            for (var hour = 0; hour < 23; hour++)
            {
                time.Advance(TimeSpan.FromHours(1));
            }

            Assert.Single(logger.Warnings);
            time.Advance(TimeSpan.FromHours(1));
            await Poll.UntilAsync(() => logger.Warnings.Count == 2, "the daily repeat of the warning never came");
            await monitor.StopAsync(CancellationToken.None);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ClientConnected_VersionsFromTheNetwork_FoldIntoUnknownPastTheCap()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ControlPlaneMetrics(services.GetRequiredService<IMeterFactory>(), TimeProvider.System);

        var labels = Enumerable.Range(0, ControlPlaneMetrics.MaxClientVersions + 8).Select(i => metrics.ClientConnected($"1.{i}.0")).ToList();

        Assert.Equal(ControlPlaneMetrics.MaxClientVersions, labels.Distinct().Count(l => l != ControlPlaneMetrics.UnknownVersion));
        Assert.All(labels.Skip(ControlPlaneMetrics.MaxClientVersions), l => Assert.Equal(ControlPlaneMetrics.UnknownVersion, l));
        Assert.Equal("1.0.0", metrics.ClientConnected("1.0.0"));
        Assert.Equal(ControlPlaneMetrics.UnknownVersion, metrics.ClientConnected(null));
    }

    [Fact]
    public void ClientConnected_VersionsWhoseClientsLeft_FreeTheirSlots()
    {
        // 40 versions come and go (say, one client each, or someone cycling made-up versions): a new one still gets a label.
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ControlPlaneMetrics(services.GetRequiredService<IMeterFactory>(), TimeProvider.System);
        for (var i = 0; i < ControlPlaneMetrics.MaxClientVersions + 8; i++)
        {
            metrics.ClientDisconnected(metrics.ClientConnected($"9.{i}.0"));
        }

        Assert.Equal("2.0.0", metrics.ClientConnected("2.0.0"));
    }

    [Theory]
    [InlineData("1.29.0", "1.29.0")]
    [InlineData("1.29.0-dev+abc_1", "1.29.0-dev")]
    [InlineData("0.1.0+4b1ee70a3c9d5e2f1b0a9c8d7e6f5a4b3c2d1e0f", "0.1.0")]
    [InlineData("1.29\n0", null)]
    [InlineData("1.29.0 (evil)", null)]
    [InlineData("", null)]
    public void VersionOf_IstioVersionMetadata_OnlyShortVersionTokens(string version, string? expected)
    {
        var node = new Node { Metadata = new Google.Protobuf.WellKnownTypes.Struct { Fields = { ["ISTIO_VERSION"] = Google.Protobuf.WellKnownTypes.Value.ForString(version) } } };

        Assert.Equal(expected, AdsNode.VersionOf(node));
    }

    [Fact]
    public void VersionOf_NoMetadata_UsesUserAgentVersionUnlessTooLong()
    {
        Assert.Equal("0.4.2", AdsNode.VersionOf(new Node { UserAgentName = "mesh-dotnet", UserAgentVersion = "0.4.2" }));
        Assert.Null(AdsNode.VersionOf(new Node { UserAgentVersion = new string('9', 65) }));
    }

    private sealed class Sink : ILogger<CaExpiryMonitor>
    {
        private readonly ConcurrentQueue<string> _warnings = new();

        public IReadOnlyList<string> Warnings => [.. _warnings];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel == LogLevel.Warning && eventId.Name == "CaCertificateExpiring")
            {
                _warnings.Enqueue(formatter(state, exception));
            }
        }
    }
}
