using System.Globalization;
using System.Net;

namespace Mesh.ControlPlane.Configuration;

/// <summary>Settings of the <c>ControlPlane</c> configuration section.</summary>
internal sealed class ControlPlaneOptions
{
    public const string SectionName = "ControlPlane";

    public string ConfigDirectory { get; set; } = "./mesh-config";
    public string StateDirectory { get; set; } = "./.mesh-state";

    /// <summary>Plaintext ADS listener for xDS clients that cannot do TLS to the control plane (grpc-js-xds); null (the default) binds none.</summary>
    public Uri? XdsAddress { get; set; }

    public Uri AdminAddress { get; set; } = new("http://127.0.0.1:15014");
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan DebounceInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest a change waits for the debounce's quiet period (istiod's PILOT_DEBOUNCE_MAX, 10 s).</summary>
    public TimeSpan DebounceMax { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long one DiscoveryResponse may take to be written before its ADS stream is ended (istiod's PILOT_XDS_SEND_TIMEOUT).
    /// 30 s: twice the 15 s a gRPC client waits for a resource before it gives up on it, and ample for megabytes on a slow
    /// link; a client that has not taken a response in that time has stopped reading.
    /// </summary>
    public TimeSpan AdsWriteTimeout { get; set; } = TimeSpan.FromSeconds(30);
    public Uri SecureAddress { get; set; } = new("https://127.0.0.1:15012");
    public string TrustDomain { get; set; } = SpiffeId.DefaultTrustDomain;

    /// <summary>Serve WorkloadRegistry on the plaintext XdsAddress too (unauthenticated, for meshes without identity); off by default.</summary>
    public bool PlaintextRegistration { get; set; }

    public CaOptions Ca { get; set; } = new();

    /// <summary>Bootstrap tokens: who may never be minted, how long a token-bought certificate lives.</summary>
    public BootstrapOptions Bootstrap { get; set; } = new();

    /// <summary>How the control plane fetches RequestAuthentication <c>jwksUri</c> keys (section <c>ControlPlane:Jwks</c>).</summary>
    public JwksOptions Jwks { get; set; } = new();

    /// <summary>Settings of <c>ControlPlane:Kubernetes</c> (off by default).</summary>
    public KubernetesOptions Kubernetes { get; set; } = new();

    /// <summary>Istio root namespace: PeerAuthentication/AuthorizationPolicy here without a selector are mesh-wide.</summary>
    public string RootNamespace { get; set; } = Model.SecurityScopes.DefaultRootNamespace;

    /// <summary>
    /// How inbound paths are normalized and matched before AuthorizationPolicy, mesh-wide (keys PathNormalization,
    /// PathEscapedSlashes, PathIgnoreCase, PathIgnoreTrailingSlash); defaults follow the ASP.NET Core router.
    /// </summary>
    public Xds.InboundPathSettings InboundPaths { get; set; } = Xds.InboundPathSettings.Default;

    private static readonly string[] KnownKeys =
        [nameof(ConfigDirectory), nameof(StateDirectory), nameof(XdsAddress), nameof(AdminAddress), nameof(LeaseTtl), nameof(DebounceInterval), nameof(DebounceMax), nameof(AdsWriteTimeout),
         nameof(SecureAddress), nameof(TrustDomain), nameof(PlaintextRegistration), nameof(Ca), nameof(RootNamespace),
         nameof(Bootstrap), nameof(Jwks), nameof(Kubernetes), PathNormalizationKey, PathEscapedSlashesKey, PathIgnoreCaseKey, PathIgnoreTrailingSlashKey];

    private const string PathNormalizationKey = "PathNormalization";
    private const string PathEscapedSlashesKey = "PathEscapedSlashes";
    private const string PathIgnoreCaseKey = "PathIgnoreCase";
    private const string PathIgnoreTrailingSlashKey = "PathIgnoreTrailingSlash";

    private static readonly string[] KnownCaKeys =
        [nameof(CaOptions.CertificateFile), nameof(CaOptions.KeyFile), nameof(CaOptions.ChainFile), nameof(CaOptions.ExtraRootsFile), nameof(CaOptions.DefaultTtl), nameof(CaOptions.MaxTtl), nameof(CaOptions.ExpiryWarningWindow), nameof(CaOptions.CaCertsDirectory)];

    /// <summary>Reads and validates the section; every problem is reported, each naming its key.</summary>
    public static ControlPlaneOptions Load(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(SectionName);
        var options = new ControlPlaneOptions();
        var errors = new List<string>();

        foreach (var child in section.GetChildren())
        {
            if (!KnownKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase) && !LimitKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{SectionName}:{child.Key} is not a known setting; known settings are {string.Join(", ", KnownKeys.Concat(LimitKeys))}");
            }
        }

        options.ConfigDirectory = ReadDirectory(section, nameof(ConfigDirectory), options.ConfigDirectory, errors);
        options.StateDirectory = ReadDirectory(section, nameof(StateDirectory), options.StateDirectory, errors);
        // Empty counts as unset, so an environment variable or argument can switch off a port set in appsettings.json.
        options.XdsAddress = string.IsNullOrEmpty(section[nameof(XdsAddress)]) ? null : ReadAddress(section, nameof(XdsAddress), "http://127.0.0.1:15010", errors);
        options.AdminAddress = ReadAddress(section, nameof(AdminAddress), "http://127.0.0.1:15014", errors) ?? options.AdminAddress;
        options.SecureAddress = ReadAddress(section, nameof(SecureAddress), "https://127.0.0.1:15012", errors, Uri.UriSchemeHttps) ?? options.SecureAddress;
        options.LeaseTtl = ReadDuration(section, nameof(LeaseTtl), options.LeaseTtl, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5), errors);
        options.DebounceInterval = ReadDuration(section, nameof(DebounceInterval), options.DebounceInterval, TimeSpan.Zero, TimeSpan.FromSeconds(10), errors);
        options.DebounceMax = ReadDuration(section, nameof(DebounceMax), options.DebounceMax, TimeSpan.Zero, TimeSpan.FromMinutes(5), errors);
        if (options.DebounceMax < options.DebounceInterval)
        {
            errors.Add($"{SectionName}:{nameof(DebounceMax)} ({options.DebounceMax.ToString("c", CultureInfo.InvariantCulture)}) must not be shorter than {SectionName}:{nameof(DebounceInterval)} ({options.DebounceInterval.ToString("c", CultureInfo.InvariantCulture)}): it caps how long the quiet period may keep a change waiting");
        }

        options.AdsWriteTimeout = ReadDuration(section, nameof(AdsWriteTimeout), options.AdsWriteTimeout, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(10), errors);
        if (section[nameof(RootNamespace)] is { } rootNamespace)
        {
            if (rootNamespace.Length is 0 or > 63 || !rootNamespace.All(c => c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-'))
            {
                errors.Add($"{SectionName}:{nameof(RootNamespace)} must be a lowercase RFC 1123 label (got '{rootNamespace}')");
            }
            else
            {
                options.RootNamespace = rootNamespace;
            }
        }

        options.PlaintextRegistration = ReadBool(section, nameof(PlaintextRegistration), options.PlaintextRegistration, errors);
        if (options.PlaintextRegistration && string.IsNullOrEmpty(section[nameof(XdsAddress)]))
        {
            errors.Add($"{SectionName}:{nameof(PlaintextRegistration)} is true but {SectionName}:{nameof(XdsAddress)} is not set: there is no plaintext port to register on; set {SectionName}:{nameof(XdsAddress)} (e.g. http://127.0.0.1:15010) or remove {SectionName}:{nameof(PlaintextRegistration)}");
        }

        var trustDomain = section[nameof(TrustDomain)];
        if (trustDomain is not null)
        {
            if (SpiffeId.IsTrustDomain(trustDomain))
            {
                options.TrustDomain = trustDomain;
            }
            else
            {
                errors.Add($"{SectionName}:{nameof(TrustDomain)} must be a SPIFFE trust domain like cluster.local: lowercase letters, digits, '.', '-', '_' (got '{trustDomain}')");
            }
        }

        ReadCa(section.GetSection(nameof(Ca)), options.Ca, errors);
        BootstrapOptions.Read(section.GetSection(nameof(Bootstrap)), options.Bootstrap, $"{SectionName}:{nameof(Bootstrap)}", errors);
        ReadLimits(section, options, errors);
        options.InboundPaths = ReadInboundPaths(section, errors);
        ReadJwks(section.GetSection(nameof(Jwks)), options.Jwks, errors);
        KubernetesOptions.Read(section.GetSection(nameof(Kubernetes)), options.Kubernetes, $"{SectionName}:{nameof(Kubernetes)}", errors);

        var addresses = new List<(string Key, Uri Uri)> { (nameof(AdminAddress), options.AdminAddress), (nameof(SecureAddress), options.SecureAddress) };
        if (options.XdsAddress is not null)
        {
            addresses.Insert(0, (nameof(XdsAddress), options.XdsAddress));
        }

        if (options.Kubernetes.WebhookAddress is { } webhook)
        {
            addresses.Add(($"{nameof(Kubernetes)}:{nameof(KubernetesOptions.WebhookAddress)}", webhook));
        }

        for (var i = 0; i < addresses.Count && errors.Count == 0; i++)
        {
            for (var j = i + 1; j < addresses.Count; j++)
            {
                if (addresses[i].Uri.Port != 0 && addresses[i].Uri.Port == addresses[j].Uri.Port
                    && string.Equals(addresses[i].Uri.Host, addresses[j].Uri.Host, StringComparison.OrdinalIgnoreCase))
                {
                    errors.Add($"{SectionName}:{addresses[j].Key} must use a different port than {SectionName}:{addresses[i].Key}");
                }
            }
        }

        if (errors.Count > 0)
        {
            throw new InvalidOperationException("Invalid control plane configuration:" + Environment.NewLine + string.Join(Environment.NewLine, errors));
        }

        return options;
    }

    // ---- Registration and ADS limits (issue 7: registration bound to identity, ADS on the secure port) ----

    /// <summary>Leases one identity may hold at once (a registering workload cannot fill the registry); ControlPlane:MaxLeasesPerIdentity.</summary>
    public int MaxLeasesPerIdentity { get; set; } = 128;

    /// <summary>DiscoveryRequests one ADS stream may have waiting to be handled; more ends the stream with RESOURCE_EXHAUSTED.</summary>
    public int AdsMaxPendingRequests { get; set; } = 64;

    /// <summary>Resource names one ADS stream may subscribe to per type; more ends the stream with RESOURCE_EXHAUSTED.</summary>
    public int AdsMaxResourceNamesPerType { get; set; } = 10_000;

    private static readonly string[] LimitKeys = [nameof(MaxLeasesPerIdentity), nameof(AdsMaxPendingRequests), nameof(AdsMaxResourceNamesPerType)];

    private static void ReadLimits(IConfigurationSection section, ControlPlaneOptions options, List<string> errors)
    {
        options.MaxLeasesPerIdentity = ReadInt(section, nameof(MaxLeasesPerIdentity), options.MaxLeasesPerIdentity, 1, 100_000, errors);
        options.AdsMaxPendingRequests = ReadInt(section, nameof(AdsMaxPendingRequests), options.AdsMaxPendingRequests, 1, 10_000, errors);
        options.AdsMaxResourceNamesPerType = ReadInt(section, nameof(AdsMaxResourceNamesPerType), options.AdsMaxResourceNamesPerType, 1, 1_000_000, errors);
    }

    internal static int ReadInt(IConfigurationSection section, string key, int fallback, int min, int max, List<string> errors, string prefix = SectionName)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var result) || result < min || result > max)
        {
            errors.Add($"{prefix}:{key} must be a whole number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)} (got '{value}')");
            return fallback;
        }

        return result;
    }

    // ---- end of registration and ADS limits ----

    /// <summary>The IP address Kestrel binds for an address setting (validated by <see cref="Load"/>).</summary>
    public static IPAddress BindAddress(Uri address) =>
        string.Equals(address.Host, "localhost", StringComparison.OrdinalIgnoreCase) ? IPAddress.Loopback : IPAddress.Parse(address.Host);

    private static string ReadDirectory(IConfigurationSection section, string key, string fallback, List<string> errors)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (string.IsNullOrWhiteSpace(value) || value.IndexOfAny(Path.GetInvalidPathChars()) >= 0)
        {
            errors.Add($"{SectionName}:{key} must be a directory path");
            return fallback;
        }

        return value;
    }

    private static void ReadCa(IConfigurationSection section, CaOptions ca, List<string> errors)
    {
        var prefix = $"{SectionName}:{nameof(Ca)}";
        foreach (var child in section.GetChildren())
        {
            if (!KnownCaKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{prefix}:{child.Key} is not a known setting; known settings are {string.Join(", ", KnownCaKeys)}");
            }
        }

        ca.CertificateFile = ReadFile(section, nameof(CaOptions.CertificateFile), prefix, errors);
        ca.KeyFile = ReadFile(section, nameof(CaOptions.KeyFile), prefix, errors);
        ca.ChainFile = ReadFile(section, nameof(CaOptions.ChainFile), prefix, errors);
        ca.ExtraRootsFile = ReadFile(section, nameof(CaOptions.ExtraRootsFile), prefix, errors);
        ca.DefaultTtl = ReadDuration(section, nameof(CaOptions.DefaultTtl), ca.DefaultTtl, TimeSpan.FromMinutes(1), TimeSpan.FromDays(365), errors, prefix);
        ca.MaxTtl = ReadDuration(section, nameof(CaOptions.MaxTtl), ca.MaxTtl, TimeSpan.FromMinutes(1), TimeSpan.FromDays(365), errors, prefix);
        ca.ExpiryWarningWindow = ReadDuration(section, nameof(CaOptions.ExpiryWarningWindow), ca.ExpiryWarningWindow, TimeSpan.Zero, TimeSpan.FromDays(3650), errors, prefix);
        if (section[nameof(CaOptions.CaCertsDirectory)] is { } caCerts)
        {
            ReadCaCertsDirectory(caCerts, ca, prefix, errors);
        }

        if ((ca.CertificateFile is null) != (ca.KeyFile is null))
        {
            errors.Add($"{prefix}:{nameof(CaOptions.CertificateFile)} and {prefix}:{nameof(CaOptions.KeyFile)} must be set together (a supplied signing CA needs both its certificate and its private key)");
        }

        if (ca.ChainFile is not null && ca.CertificateFile is null)
        {
            errors.Add($"{prefix}:{nameof(CaOptions.ChainFile)} needs {prefix}:{nameof(CaOptions.CertificateFile)} and {prefix}:{nameof(CaOptions.KeyFile)}");
        }

        if (ca.DefaultTtl > ca.MaxTtl)
        {
            errors.Add($"{prefix}:{nameof(CaOptions.DefaultTtl)} ({ca.DefaultTtl.ToString("c", CultureInfo.InvariantCulture)}) must not exceed {prefix}:{nameof(CaOptions.MaxTtl)} ({ca.MaxTtl.ToString("c", CultureInfo.InvariantCulture)})");
        }
    }

    /// <summary>
    /// Istio's <c>cacerts</c> Secret mounted as a directory: ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem, or the
    /// tls.crt, tls.key, ca.crt layout, mapped onto CertificateFile, KeyFile, ChainFile and ExtraRootsFile. Without a key
    /// file in it (the Secret is optional, as istiod's) the self-signed root is used.
    /// </summary>
    private static void ReadCaCertsDirectory(string directory, CaOptions ca, string prefix, List<string> errors)
    {
        var key = $"{prefix}:{nameof(CaOptions.CaCertsDirectory)}";
        if (string.IsNullOrWhiteSpace(directory) || directory.IndexOfAny(Path.GetInvalidPathChars()) >= 0)
        {
            errors.Add($"{key} must be a directory path (where the cacerts Secret is mounted)");
            return;
        }

        if (ca.CertificateFile is not null || ca.KeyFile is not null || ca.ChainFile is not null || ca.ExtraRootsFile is not null)
        {
            errors.Add($"{key} cannot be combined with {prefix}:{nameof(CaOptions.CertificateFile)}, {nameof(CaOptions.KeyFile)}, {nameof(CaOptions.ChainFile)} or {nameof(CaOptions.ExtraRootsFile)}: it sets them from the Secret's files; use one or the other");
            return;
        }

        ca.CaCertsDirectory = directory;
        string File(string name) => Path.Combine(directory, name);
        (string Key, string Certificate, string Chain, string Roots)? layout =
            System.IO.File.Exists(File("ca-key.pem")) ? ("ca-key.pem", "ca-cert.pem", "cert-chain.pem", "root-cert.pem")
            : System.IO.File.Exists(File("tls.key")) ? ("tls.key", "tls.crt", "ca.crt", "ca.crt")
            : null;
        if (layout is not { } files)
        {
            return;
        }

        if (!System.IO.File.Exists(File(files.Certificate)))
        {
            errors.Add($"{key} {Path.GetFullPath(directory)} has {files.Key} but no {files.Certificate}: the cacerts Secret needs both the signing certificate and its key");
            return;
        }

        ca.CertificateFile = File(files.Certificate);
        ca.KeyFile = File(files.Key);
        var roots = System.IO.File.Exists(File(files.Roots)) ? File(files.Roots) : null;
        ca.ChainFile = System.IO.File.Exists(File(files.Chain)) ? File(files.Chain) : roots;
        ca.ExtraRootsFile = roots;
    }

    private static Xds.InboundPathSettings ReadInboundPaths(IConfigurationSection section, List<string> errors)
    {
        var defaults = Xds.InboundPathSettings.Default;
        var mode = defaults.Normalization;
        if (section[PathNormalizationKey] is { } modeText && !Xds.InboundPathSettings.TryParseMode(modeText, out mode))
        {
            errors.Add($"{SectionName}:{PathNormalizationKey} must be one of NONE, BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES (Istio's pathNormalization; got '{modeText}')");
            mode = defaults.Normalization;
        }

        var reject = defaults.RejectEscapedSlashes;
        switch (section[PathEscapedSlashesKey])
        {
            case null:
                break;
            case var text when mode == Xds.PathNormalizationMode.DecodeAndMergeSlashes:
                errors.Add($"{SectionName}:{PathEscapedSlashesKey} ('{text}') cannot be set with {SectionName}:{PathNormalizationKey} DECODE_AND_MERGE_SLASHES, which decodes escaped slashes; remove one of them");
                break;
            case "REJECT_REQUEST":
                reject = true;
                break;
            case "KEEP_UNCHANGED":
                reject = false;
                break;
            case var text:
                errors.Add($"{SectionName}:{PathEscapedSlashesKey} must be REJECT_REQUEST (400 for %2F and %5C, the default) or KEEP_UNCHANGED (Istio's behaviour; got '{text}')");
                break;
        }

        return new Xds.InboundPathSettings(
            mode,
            reject,
            ReadBool(section, PathIgnoreCaseKey, defaults.IgnoreCase, errors),
            ReadBool(section, PathIgnoreTrailingSlashKey, defaults.IgnoreTrailingSlash, errors));
    }

    private static void ReadJwks(IConfigurationSection section, JwksOptions jwks, List<string> errors)
    {
        var prefix = $"{SectionName}:{nameof(Jwks)}";
        string[] known = [nameof(JwksOptions.RefreshInterval), nameof(JwksOptions.RetryInterval), nameof(JwksOptions.FetchTimeout), nameof(JwksOptions.MaxResponseBytes)];
        foreach (var child in section.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{prefix}:{child.Key} is not a known setting; known settings are {string.Join(", ", known)}");
            }
        }

        jwks.RefreshInterval = ReadDuration(section, nameof(JwksOptions.RefreshInterval), jwks.RefreshInterval, TimeSpan.FromSeconds(1), TimeSpan.FromDays(1), errors, prefix);
        jwks.RetryInterval = ReadDuration(section, nameof(JwksOptions.RetryInterval), jwks.RetryInterval, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1), errors, prefix);
        jwks.FetchTimeout = ReadDuration(section, nameof(JwksOptions.FetchTimeout), jwks.FetchTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1), errors, prefix);
        if (section[nameof(JwksOptions.MaxResponseBytes)] is { } size)
        {
            if (int.TryParse(size, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) && bytes is >= 1024 and <= 16 * 1024 * 1024)
            {
                jwks.MaxResponseBytes = bytes;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(JwksOptions.MaxResponseBytes)} must be a whole number of bytes between 1024 and 16777216 (got '{size}')");
            }
        }
    }

    internal static string? ReadFile(IConfigurationSection section, string key, string prefix, List<string> errors)
    {
        var value = section[key];
        if (value is null)
        {
            return null;
        }

        if (string.IsNullOrWhiteSpace(value) || value.IndexOfAny(Path.GetInvalidPathChars()) >= 0)
        {
            errors.Add($"{prefix}:{key} must be a file path");
            return null;
        }

        return value;
    }

    private static bool ReadBool(IConfigurationSection section, string key, bool fallback, List<string> errors)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (!bool.TryParse(value, out var result))
        {
            errors.Add($"{SectionName}:{key} must be true or false (got '{value}')");
            return fallback;
        }

        return result;
    }

    /// <summary>Reads an address setting; null when it is unset or invalid (then an error is added).</summary>
    private static Uri? ReadAddress(IConfigurationSection section, string key, string example, List<string> errors, string scheme = "http")
    {
        var value = section[key];
        if (value is null)
        {
            return null;
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme != scheme
            || uri.AbsolutePath != "/" || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.UserInfo)
            || !(uri.IsLoopback || IPAddress.TryParse(uri.Host, out _)) || value.EndsWith(':'))
        {
            errors.Add($"{SectionName}:{key} must be an absolute {scheme} URI like {example} whose host is an IP address or localhost (got '{value}')");
            return null;
        }

        return uri;
    }

    internal static TimeSpan ReadDuration(IConfigurationSection section, string key, TimeSpan fallback, TimeSpan min, TimeSpan max, List<string> errors, string prefix = SectionName)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (!TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out var duration) || duration < min || duration > max)
        {
            errors.Add($"{prefix}:{key} must be a TimeSpan like {fallback.ToString("c", CultureInfo.InvariantCulture)} between {min.ToString("c", CultureInfo.InvariantCulture)} and {max.ToString("c", CultureInfo.InvariantCulture)} (got '{value}')");
            return fallback;
        }

        return duration;
    }
}

/// <summary>Settings of <c>ControlPlane:Ca</c>. Without CertificateFile/KeyFile a self-signed root is made in StateDirectory/ca.</summary>
internal sealed class CaOptions
{
    public string? CertificateFile { get; set; }
    public string? KeyFile { get; set; }
    public string? ChainFile { get; set; }
    public string? ExtraRootsFile { get; set; }
    public TimeSpan DefaultTtl { get; set; } = TimeSpan.FromHours(24);
    public TimeSpan MaxTtl { get; set; } = TimeSpan.FromDays(90);

    /// <summary>
    /// How long before the root or a signing-chain certificate expires the control plane starts warning: a log line,
    /// <c>mesh_ca_expiry_warning</c> and the readiness body. 0 warns only once it expired.
    /// </summary>
    public TimeSpan ExpiryWarningWindow { get; set; } = TimeSpan.FromDays(30);

    /// <summary>
    /// Where Istio's <c>cacerts</c> Secret is mounted (e.g. /etc/cacerts); when it holds a key file, the four files above
    /// come from it (see <c>ControlPlaneOptions.ReadCaCertsDirectory</c>), otherwise the self-signed root is used.
    /// </summary>
    public string? CaCertsDirectory { get; set; }

    /// <summary>Whether the signing CA came from <see cref="CaCertsDirectory"/>.</summary>
    public bool FromCaCerts => CaCertsDirectory is not null && CertificateFile is not null;

    /// <summary>The setting a file came from, for errors: <c>ControlPlane:Ca:KeyFile</c>, or the Secret's file in CaCertsDirectory.</summary>
    public string Setting(string key, string? file) =>
        FromCaCerts && file is not null ? $"ControlPlane:Ca:CaCertsDirectory ({Path.GetFileName(file)} for {key})" : $"ControlPlane:Ca:{key}";
}

/// <summary>
/// Settings of <c>ControlPlane:Jwks</c>: the control plane fetches each RequestAuthentication <c>jwksUri</c> and inlines the
/// keys, as istiod does (refresh every 20 min, retry every minute after a failure, keep the last good keys).
/// </summary>
internal sealed class JwksOptions
{
    public TimeSpan RefreshInterval { get; set; } = TimeSpan.FromMinutes(20);
    public TimeSpan RetryInterval { get; set; } = TimeSpan.FromMinutes(1);
    public TimeSpan FetchTimeout { get; set; } = TimeSpan.FromSeconds(5);
    public int MaxResponseBytes { get; set; } = 1024 * 1024;
}
