using System.Globalization;
using System.Net;

namespace Mesh.ControlPlane.Configuration;

/// <summary>Settings of the <c>ControlPlane</c> configuration section.</summary>
internal sealed class ControlPlaneOptions
{
    public const string SectionName = "ControlPlane";

    public string ConfigDirectory { get; set; } = "./mesh-config";
    public string StateDirectory { get; set; } = "./.mesh-state";
    public Uri XdsAddress { get; set; } = new("http://127.0.0.1:15010");
    public Uri AdminAddress { get; set; } = new("http://127.0.0.1:15014");
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(10);
    public TimeSpan DebounceInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Istio root namespace: PeerAuthentication/AuthorizationPolicy here without a selector are mesh-wide.</summary>
    public string RootNamespace { get; set; } = Model.SecurityScopes.DefaultRootNamespace;

    private static readonly string[] KnownKeys =
        [nameof(ConfigDirectory), nameof(StateDirectory), nameof(XdsAddress), nameof(AdminAddress), nameof(LeaseTtl), nameof(DebounceInterval), nameof(RootNamespace)];

    /// <summary>Reads and validates the section; every problem is reported, each naming its key.</summary>
    public static ControlPlaneOptions Load(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var section = configuration.GetSection(SectionName);
        var options = new ControlPlaneOptions();
        var errors = new List<string>();

        foreach (var child in section.GetChildren())
        {
            if (!KnownKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{SectionName}:{child.Key} is not a known setting; known settings are {string.Join(", ", KnownKeys)}");
            }
        }

        options.ConfigDirectory = ReadDirectory(section, nameof(ConfigDirectory), options.ConfigDirectory, errors);
        options.StateDirectory = ReadDirectory(section, nameof(StateDirectory), options.StateDirectory, errors);
        options.XdsAddress = ReadAddress(section, nameof(XdsAddress), options.XdsAddress, "http://127.0.0.1:15010", errors);
        options.AdminAddress = ReadAddress(section, nameof(AdminAddress), options.AdminAddress, "http://127.0.0.1:15014", errors);
        options.LeaseTtl = ReadDuration(section, nameof(LeaseTtl), options.LeaseTtl, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5), errors);
        options.DebounceInterval = ReadDuration(section, nameof(DebounceInterval), options.DebounceInterval, TimeSpan.Zero, TimeSpan.FromSeconds(10), errors);
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

        if (errors.Count == 0 && options.XdsAddress.Port != 0 && options.XdsAddress.Port == options.AdminAddress.Port
            && string.Equals(options.XdsAddress.Host, options.AdminAddress.Host, StringComparison.OrdinalIgnoreCase))
        {
            errors.Add($"{SectionName}:AdminAddress must use a different port than {SectionName}:XdsAddress");
        }

        if (errors.Count > 0)
        {
            throw new InvalidOperationException("Invalid control plane configuration:" + Environment.NewLine + string.Join(Environment.NewLine, errors));
        }

        return options;
    }

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

    private static Uri ReadAddress(IConfigurationSection section, string key, Uri fallback, string example, List<string> errors)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp
            || uri.AbsolutePath != "/" || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.UserInfo)
            || !(uri.IsLoopback || IPAddress.TryParse(uri.Host, out _)) || value.EndsWith(':'))
        {
            errors.Add($"{SectionName}:{key} must be an absolute http URI like {example} whose host is an IP address or localhost (got '{value}')");
            return fallback;
        }

        return uri;
    }

    private static TimeSpan ReadDuration(IConfigurationSection section, string key, TimeSpan fallback, TimeSpan min, TimeSpan max, List<string> errors)
    {
        var value = section[key];
        if (value is null)
        {
            return fallback;
        }

        if (!TimeSpan.TryParse(value, CultureInfo.InvariantCulture, out var duration) || duration < min || duration > max)
        {
            errors.Add($"{SectionName}:{key} must be a TimeSpan like {fallback.ToString("c", CultureInfo.InvariantCulture)} between {min.ToString("c", CultureInfo.InvariantCulture)} and {max.ToString("c", CultureInfo.InvariantCulture)} (got '{value}')");
            return fallback;
        }

        return duration;
    }
}
