using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.Metrics;
using System.Reflection;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Telemetry;

namespace Mesh.ControlPlane.Telemetry;

/// <summary>
/// The control plane's one <see cref="Meter"/> (<see cref="MeterName"/>), made by the host's <see cref="IMeterFactory"/>.
/// Instrument names are Istio's own where istiod has the metric (<c>pilot_*</c>, <c>citadel_server_*</c>) and ours, with
/// the <c>mesh_</c> prefix, where it has none; istiod exports them with no <c>_total</c> or unit suffix, and so do we
/// (see <see cref="ControlPlaneTelemetry"/>).
/// </summary>
internal sealed class ControlPlaneMetrics
{
    public const string MeterName = "Mesh.ControlPlane";

    /// <summary>Distinct <c>version</c> values of <c>pilot_xds</c>; a client's version is its own claim, so more fold into "unknown".</summary>
    internal const int MaxClientVersions = 32;

    internal const string UnknownVersion = SemanticVersion.Unknown;

    // Istio's buckets (pilot/pkg/xds/monitoring.go): push time .01–30 s, convergence .1–30 s.
    private static readonly double[] PushTimeBuckets = [.01, .1, .5, 1, 3, 5, 10, 20, 30];
    private static readonly double[] ConvergenceBuckets = [.1, .5, 1, 3, 5, 10, 20, 30];

    /// <summary>Short xDS type names, Istio's <c>type</c> label values (v3.GetMetricType).</summary>
    private static readonly FrozenTypeTags Types = new();

    private static readonly string[] ConfigErrorKinds =
        ["ServiceEntry", "WorkloadEntry", "DestinationRule", "VirtualService", "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", Sources.YamlConfigLoader.RateLimitKind, "other", "file"];

    // istiod's istio_build{component="pilot",tag="<version>"} 1, which Istio's control-plane dashboard charts as "Pilot
    // Versions"; the tag is this build's version without its semver build metadata (the commit), as for pilot_xds.
    private static readonly KeyValuePair<string, object?>[] BuildTags =
    [
        new("component", "pilot"),
        new("tag", SemanticVersion.Of(typeof(ControlPlaneMetrics).Assembly)),
    ];

    private static readonly KeyValuePair<string, object?>[] RegisterTags = [new("event", "register")];
    private static readonly KeyValuePair<string, object?>[] RenewTags = [new("event", "renew")];
    private static readonly KeyValuePair<string, object?>[] DeregisterTags = [new("event", "deregister")];

    private readonly TimeProvider _time;
    private readonly Counter<long> _pushes;
    private readonly Histogram<double> _pushTime;
    private readonly Histogram<double> _convergence;
    private readonly Histogram<double> _ackConvergence;
    private readonly Counter<long> _rejects;
    private readonly Counter<long> _writeTimeouts;
    private readonly Counter<long> _csrs;
    private readonly Counter<long> _issued;
    private readonly Counter<long> _authenticationFailures;
    private readonly Counter<long> _csrParsingErrors;
    private readonly Counter<long> _csrSignErrors;
    private readonly Counter<long> _registrations;
    private readonly Counter<long> _leaseExpiries;
    private readonly Counter<long> _kubernetesRelists;
    private readonly Counter<long> _kubernetesWatchRestarts;
    private readonly Counter<long> _tokenReviewsRefused;
    private readonly Dictionary<string, int> _clientsByVersion = new(StringComparer.Ordinal);
    private ConfigError[] _configErrors = [];
    private Func<int>? _leaseCount;
    private CaExpiry? _caExpiry;

    public ControlPlaneMetrics(IMeterFactory meterFactory, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        ArgumentNullException.ThrowIfNull(time);
        _time = time;
        var meter = meterFactory.Create(MeterName);

        meter.CreateObservableGauge("istio_build", static () => new Measurement<int>(1, BuildTags), description: "Build information: the component and its version tag (istiod's metric).");
        meter.CreateObservableGauge("pilot_xds", ObserveClients, description: "ADS streams that identified their node, by the client's version.");
        _pushes = meter.CreateCounter<long>("pilot_xds_pushes", description: "DiscoveryResponses written, by xDS type (<type>_senderr when the write failed).");
        _pushTime = meter.CreateHistogram("pilot_xds_push_time", "s", "Time to select and write one DiscoveryResponse, by xDS type.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = PushTimeBuckets });
        _convergence = meter.CreateHistogram("pilot_proxy_convergence_time", "s", "From a config change to its push written to a client, per push and client (istiod's metric).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = ConvergenceBuckets });
        _ackConvergence = meter.CreateHistogram("mesh_proxy_ack_convergence_time", "s", "From a config change to the client having ACKed every response it caused (a NACK is not measured).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = ConvergenceBuckets });
        _rejects = meter.CreateCounter<long>("pilot_total_xds_rejects", description: "DiscoveryResponses a client rejected (NACK), by xDS type.");
        _writeTimeouts = meter.CreateCounter<long>("pilot_xds_write_timeout", description: "ADS streams closed because a response was not written within ControlPlane:AdsWriteTimeout (the client stopped reading), by xDS type.");

        _csrs = meter.CreateCounter<long>("citadel_server_csr_count", description: "CreateCertificate calls received.");
        _issued = meter.CreateCounter<long>("citadel_server_success_cert_issuance_count", description: "Certificates issued.");
        _authenticationFailures = meter.CreateCounter<long>("citadel_server_authentication_failure_count", description: "CreateCertificate calls refused: the caller was not authenticated.");
        _csrParsingErrors = meter.CreateCounter<long>("citadel_server_csr_parsing_err_count", description: "CreateCertificate calls refused: the CSR could not be used.");
        _csrSignErrors = meter.CreateCounter<long>("citadel_server_csr_sign_err_count", description: "CreateCertificate calls that failed while signing.");
        meter.CreateObservableGauge("citadel_server_root_cert_expiry_timestamp", () => Expiry(static e => e.RootNotAfter, relative: false), "s", "Unix time at which the signing root expires.");
        meter.CreateObservableGauge("citadel_server_cert_chain_expiry_timestamp", () => Expiry(static e => e.ChainNotAfter, relative: false), "s", "Unix time at which the first certificate of the signing chain expires.");
        meter.CreateObservableGauge("citadel_server_root_cert_expiry_seconds", () => Expiry(static e => e.RootNotAfter, relative: true), "s", "Seconds until the signing root expires.");
        meter.CreateObservableGauge("citadel_server_cert_chain_expiry_seconds", () => Expiry(static e => e.ChainNotAfter, relative: true), "s", "Seconds until the first certificate of the signing chain expires.");
        meter.CreateObservableGauge("mesh_ca_expiry_warning", ObserveExpiryWarnings, description: "1 while the certificate (cert=root or cert_chain) expires within ControlPlane:Ca:ExpiryWarningWindow, else 0.");

        meter.CreateObservableGauge("mesh_config_errors", ObserveConfigErrors, description: "Errors in the config folder's last load, by resource kind (file: unreadable file or invalid YAML).");
        _registrations = meter.CreateCounter<long>("mesh_registrations", description: "WorkloadRegistry calls that succeeded, by event: register, renew, deregister.");
        _leaseExpiries = meter.CreateCounter<long>("mesh_lease_expiries", description: "Registrations removed because their lease was not renewed in time.");
        _kubernetesRelists = meter.CreateCounter<long>("mesh_kubernetes_relists", description: "Lists of a Kubernetes kind after its first (a 410 Gone or a failed watch), by kind.");
        _kubernetesWatchRestarts = meter.CreateCounter<long>("mesh_kubernetes_watch_restarts", description: "Kubernetes watches started again, by kind and reason: closed (server timeout), expired (410), idle (watchdog), error.");
        _tokenReviewsRefused = meter.CreateCounter<long>("mesh_ca_tokenreview_refusals", description: "CSRs with a ServiceAccount token refused without a TokenReview because a bound was reached, by reason: address_in_flight, address_rate, reserved_slots, in_flight, addresses.");
        meter.CreateObservableGauge("mesh_leases", () => _leaseCount?.Invoke() ?? 0, description: "Registrations currently held (live leases).");
    }

    // ---- xDS (AdsConnection) ----

    /// <summary>A client identified itself; <paramref name="version"/> is the label it is counted under until it leaves.</summary>
    public string ClientConnected(string? version)
    {
        var label = string.IsNullOrEmpty(version) ? UnknownVersion : version;
        lock (_clientsByVersion)
        {
            // The cap counts versions with a client connected now: a version whose last client left frees its slot. It
            // stays reported at 0 (a series that vanished would keep its last value in the exporter) until versions at 0
            // outnumber the cap, when they are dropped, so cycling made-up versions cannot grow this table.
            if (!_clientsByVersion.ContainsKey(label) && _clientsByVersion.Count(static c => c.Value > 0) >= MaxClientVersions)
            {
                label = UnknownVersion;
            }

            if (_clientsByVersion.Count >= 2 * MaxClientVersions)
            {
                foreach (var idle in _clientsByVersion.Where(static c => c.Value <= 0).Select(static c => c.Key).ToList())
                {
                    _clientsByVersion.Remove(idle);
                }
            }

            _clientsByVersion[label] = _clientsByVersion.GetValueOrDefault(label) + 1;
        }

        return label;
    }

    public void ClientDisconnected(string label)
    {
        lock (_clientsByVersion)
        {
            _clientsByVersion[label] = Math.Max(0, _clientsByVersion.GetValueOrDefault(label) - 1);
        }
    }

    /// <summary>One response written to a client, and how long selecting and writing it took.</summary>
    public void Pushed(string typeUrl, TimeSpan elapsed)
    {
        if (!_pushes.Enabled && !_pushTime.Enabled)
        {
            return;
        }

        var tags = Types.For(typeUrl).Type;
        _pushes.Add(1, tags);
        _pushTime.Record(elapsed.TotalSeconds, tags);
    }

    /// <summary>A response could not be written (Istio counts these as <c>type="&lt;type&gt;_senderr"</c>).</summary>
    public void PushFailed(string typeUrl)
    {
        if (_pushes.Enabled)
        {
            _pushes.Add(1, Types.For(typeUrl).SendError);
        }
    }

    public void Rejected(string typeUrl)
    {
        if (_rejects.Enabled)
        {
            _rejects.Add(1, Types.For(typeUrl).Type);
        }
    }

    /// <summary>A response write exceeded the write timeout and its stream was closed.</summary>
    public void WriteTimedOut(string typeUrl)
    {
        if (_writeTimeouts.Enabled)
        {
            _writeTimeouts.Add(1, Types.For(typeUrl).Type);
        }
    }

    /// <summary>A push a config change caused was written to a client, <paramref name="sinceChange"/> after the change (istiod records it there).</summary>
    public void Pushed(TimeSpan sinceChange)
    {
        if (_convergence.Enabled)
        {
            _convergence.Record(sinceChange.TotalSeconds);
        }
    }

    /// <summary>A client ACKed every response a config change caused, <paramref name="sinceChange"/> after the change.</summary>
    public void Converged(TimeSpan sinceChange)
    {
        if (_ackConvergence.Enabled)
        {
            _ackConvergence.Record(sinceChange.TotalSeconds);
        }
    }

    // ---- CA (CertificateService, CaExpiryMonitor) ----

    public void CsrReceived() => _csrs.Add(1);

    public void CertificateIssued() => _issued.Add(1);

    public void AuthenticationFailed() => _authenticationFailures.Add(1);

    public void CsrParsingFailed() => _csrParsingErrors.Add(1);

    public void CsrSigningFailed(string error) => _csrSignErrors.Add(1, new KeyValuePair<string, object?>("error", error));

    /// <summary>Sets what the expiry gauges report: the signing root's and the signing chain's end of validity.</summary>
    public void SetCaExpiry(DateTimeOffset rootNotAfter, DateTimeOffset chainNotAfter, TimeSpan warningWindow) =>
        Volatile.Write(ref _caExpiry, new CaExpiry(rootNotAfter, chainNotAfter, warningWindow));

    // ---- Config folder and registry ----

    public void ConfigLoaded(ImmutableArray<ConfigError> errors) => Volatile.Write(ref _configErrors, errors.Where(e => !e.IsWarning).ToArray());

    public void Registered() => _registrations.Add(1, RegisterTags);

    public void Renewed() => _registrations.Add(1, RenewTags);

    public void Deregistered() => _registrations.Add(1, DeregisterTags);

    public void LeasesExpired(int count) => _leaseExpiries.Add(count);

    public void ObserveLeases(Func<int> count) => _leaseCount = count;

    // ---- Kubernetes source ----

    /// <summary>A kind was listed; only lists after the first count (a relist is what a healthy watch avoids).</summary>
    public void KubernetesListed(string kind, bool first)
    {
        if (!first)
        {
            _kubernetesRelists.Add(1, new KeyValuePair<string, object?>("kind", kind));
        }
    }

    /// <summary>A CSR refused before its TokenReview because <paramref name="reason"/>'s bound was reached (a value of <see cref="Security.ReviewRefusal"/>).</summary>
    public void TokenReviewRefused(string reason) => _tokenReviewsRefused.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void KubernetesWatchRestarted(string kind, string reason) =>
        _kubernetesWatchRestarts.Add(1, new KeyValuePair<string, object?>("kind", kind), new KeyValuePair<string, object?>("reason", reason));

    /// <summary>The <c>kind</c> label for a config error: a supported kind, "other" for any other resource, "file" for none.</summary>
    internal static string ConfigErrorKind(ConfigError error) => error.Kind switch
    {
        null => "file",
        var kind when Array.IndexOf(ConfigErrorKinds, kind) >= 0 => kind,
        _ => "other",
    };

    private List<Measurement<int>> ObserveClients()
    {
        lock (_clientsByVersion)
        {
            return [.. _clientsByVersion.Select(static c => new Measurement<int>(c.Value, new KeyValuePair<string, object?>("version", c.Key)))];
        }
    }

    private IEnumerable<Measurement<int>> ObserveConfigErrors()
    {
        // Every kind, 0 included, so an alert on mesh_config_errors > 0 resolves when the folder is fixed.
        var errors = Volatile.Read(ref _configErrors);
        foreach (var kind in ConfigErrorKinds)
        {
            yield return new Measurement<int>(errors.Count(e => ConfigErrorKind(e) == kind), new KeyValuePair<string, object?>("kind", kind));
        }
    }

    private IEnumerable<Measurement<double>> Expiry(Func<CaExpiry, DateTimeOffset> notAfter, bool relative)
    {
        if (Volatile.Read(ref _caExpiry) is not { } expiry)
        {
            yield break;
        }

        var at = notAfter(expiry);
        yield return new Measurement<double>(relative ? (at - _time.GetUtcNow()).TotalSeconds : at.ToUnixTimeMilliseconds() / 1000.0);
    }

    private IEnumerable<Measurement<int>> ObserveExpiryWarnings()
    {
        if (Volatile.Read(ref _caExpiry) is not { } expiry)
        {
            yield break;
        }

        var now = _time.GetUtcNow();
        yield return new Measurement<int>(expiry.RootNotAfter - now <= expiry.Window ? 1 : 0, new KeyValuePair<string, object?>("cert", "root"));
        yield return new Measurement<int>(expiry.ChainNotAfter - now <= expiry.Window ? 1 : 0, new KeyValuePair<string, object?>("cert", "cert_chain"));
    }

    private sealed record CaExpiry(DateTimeOffset RootNotAfter, DateTimeOffset ChainNotAfter, TimeSpan Window);

    /// <summary>Tag arrays made once per xDS type, so recording a push allocates nothing.</summary>
    private sealed class FrozenTypeTags
    {
        private readonly TypeTags _cds = new("cds");
        private readonly TypeTags _eds = new("eds");
        private readonly TypeTags _lds = new("lds");
        private readonly TypeTags _rds = new("rds");
        private readonly TypeTags _other = new("other");

        public TypeTags For(string typeUrl) => typeUrl switch
        {
            TypeUrls.Cluster => _cds,
            TypeUrls.ClusterLoadAssignment => _eds,
            TypeUrls.Listener => _lds,
            TypeUrls.RouteConfiguration => _rds,
            _ => _other,
        };
    }

    private sealed class TypeTags(string type)
    {
        public KeyValuePair<string, object?>[] Type { get; } = [new("type", type)];

        public KeyValuePair<string, object?>[] SendError { get; } = [new("type", type + "_senderr")];
    }
}
