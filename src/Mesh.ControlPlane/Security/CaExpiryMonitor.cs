using System.Globalization;
using System.Security.Cryptography.X509Certificates;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// Makes the CA's expiry never silent: feeds the <c>citadel_server_*_expiry_*</c> gauges, logs a warning (at start, then
/// daily) while the root or the signing chain expires within ControlPlane:Ca:ExpiryWarningWindow, and tells readiness.
/// </summary>
/// <remarks>
/// Readiness stays 200 with the warning in its body, as istiod keeps serving: turning the only CA not-ready weeks before
/// its certificate expires would take away config and certificates from every workload now, to warn of an outage later.
/// </remarks>
internal sealed partial class CaExpiryMonitor : BackgroundService
{
    public static readonly TimeSpan CheckPeriod = TimeSpan.FromHours(1);
    public static readonly TimeSpan RepeatPeriod = TimeSpan.FromDays(1);

    private readonly TimeProvider _time;
    private readonly ILogger<CaExpiryMonitor> _logger;
    private readonly TimeSpan _window;
    private readonly Watched[] _watched;
    private PeriodicTimer? _timer;

    public CaExpiryMonitor(CertificateAuthority ca, ControlPlaneOptions options, TimeProvider time, ILogger<CaExpiryMonitor> logger, ControlPlaneMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(ca);
        ArgumentNullException.ThrowIfNull(options);
        _time = time;
        _logger = logger;
        _window = options.Ca.ExpiryWarningWindow;
        var root = ca.ChainAfterLeaf[^1];

        // The chain's validity ends with its first certificate to expire; every issued leaf is clamped to it.
        var chainEnd = ca.ChainAfterLeaf.MinBy(c => c.NotAfter)!;
        _watched = ReferenceEquals(chainEnd, root) || chainEnd.Thumbprint == root.Thumbprint
            ? [new Watched("root certificate", root)]
            : [new Watched("root certificate", root), new Watched(chainEnd == ca.SigningCertificate ? "signing certificate" : "signing chain certificate", chainEnd)];
        metrics?.SetCaExpiry(NotAfter(root), NotAfter(chainEnd), _window);
    }

    /// <summary>One line per watched certificate that expires within the window; empty when none does.</summary>
    public IReadOnlyList<string> Warnings()
    {
        var now = _time.GetUtcNow();
        return [.. _watched.Where(w => NotAfter(w.Certificate) - now <= _window).Select(w => Describe(w, now))];
    }

    public override Task StartAsync(CancellationToken cancellationToken)
    {
        // Checked once before the host serves, so the first warning is in the startup log.
        Check();
        _timer = new PeriodicTimer(CheckPeriod, _time);
        return base.StartAsync(cancellationToken);
    }

    public override void Dispose()
    {
        _timer?.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _timer!.WaitForNextTickAsync(stoppingToken))
            {
                Check();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void Check()
    {
        var now = _time.GetUtcNow();
        foreach (var watched in _watched)
        {
            var left = NotAfter(watched.Certificate) - now;
            if (left > _window || (watched.LastWarned is { } last && now - last < RepeatPeriod))
            {
                continue;
            }

            watched.LastWarned = now;
            LogExpiring(_logger, watched.What, watched.Certificate.Subject, NotAfter(watched.Certificate), left.TotalDays, FormatWindow(_window));
        }
    }

    private string Describe(Watched watched, DateTimeOffset now)
    {
        var notAfter = NotAfter(watched.Certificate);
        return string.Create(CultureInfo.InvariantCulture,
            $"the CA's {watched.What} '{watched.Certificate.Subject}' expires at {notAfter:O} (in {(notAfter - now).TotalDays:F1} days, within ControlPlane:Ca:ExpiryWarningWindow {FormatWindow(_window)}); rotate it before workloads can no longer get certificates");
    }

    private static string FormatWindow(TimeSpan window) => window.ToString("c", CultureInfo.InvariantCulture);

    private static DateTimeOffset NotAfter(X509Certificate2 certificate) => new(certificate.NotAfter.ToUniversalTime());

    private sealed class Watched(string what, X509Certificate2 certificate)
    {
        public string What { get; } = what;

        public X509Certificate2 Certificate { get; } = certificate;

        public DateTimeOffset? LastWarned { get; set; }
    }
}
