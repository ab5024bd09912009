using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Hosting;

/// <summary>
/// Validates <see cref="ServiceMeshOptions"/> at startup and reports every problem at once, each naming
/// its configuration key. When the options are bound from the <c>Mesh</c> section (<c>AddServiceMesh()</c>),
/// unknown keys in it are errors: a typo must not silently fall back to a default.
/// </summary>
/// <param name="boundSection">The section the options are bound from; absent with <c>AddServiceMeshCore()</c> alone.</param>
internal sealed partial class ServiceMeshOptionsValidator(ServiceMeshConfigurationSection? boundSection = null) : IValidateOptions<ServiceMeshOptions>
{
    private const string Root = ServiceMeshOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, ServiceMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        if (boundSection is not null)
        {
            FindUnknownKeys(boundSection.Section, typeof(ServiceMeshOptions), errors);
        }

        ValidateAddresses(options.ControlPlane, errors);

        DnsLabel($"{Root}:Namespace", options.Namespace, required: true, errors);
        DnsLabel($"{Root}:Service", options.Service, required: false, errors);

        // A DNS label, not Kubernetes' DNS subdomain: the control plane certifies only spiffe://<td>/ns/<label>/sa/<label>.
        DnsLabel($"{Root}:ServiceAccount", options.ServiceAccount, required: false, errors);

        if (string.IsNullOrEmpty(options.ClusterDomain) || !DnsSubdomain().IsMatch(options.ClusterDomain))
        {
            errors.Add($"{Root}:ClusterDomain '{options.ClusterDomain}' must be a DNS name such as cluster.local");
        }

        var controlPlane = options.ControlPlane;
        Positive($"{Root}:ControlPlane:InitialReconnectDelay", controlPlane.InitialReconnectDelay, errors);
        Positive($"{Root}:ControlPlane:MaxReconnectDelay", controlPlane.MaxReconnectDelay, errors);
        if (controlPlane.MaxReconnectDelay < controlPlane.InitialReconnectDelay)
        {
            errors.Add($"{Root}:ControlPlane:MaxReconnectDelay ({controlPlane.MaxReconnectDelay}) must not be less than {Root}:ControlPlane:InitialReconnectDelay ({controlPlane.InitialReconnectDelay})");
        }

        ValidateSubscriptions(controlPlane, errors);

        var registration = options.Registration;
        if (registration.LeaseTtl < TimeSpan.FromSeconds(1) || registration.LeaseTtl > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{Root}:Registration:LeaseTtl ({registration.LeaseTtl}) must be between 00:00:01 and 00:05:00");
        }

        if (registration.Address is { Length: > 0 } advertised && Uri.CheckHostName(advertised) == UriHostNameType.Unknown)
        {
            errors.Add($"{Root}:Registration:Address '{advertised}' must be an IP address or host name");
        }

        if (!Mesh.Xds.Wire.LocalityNames.TryValidate(options.Locality, out var localityReason))
        {
            errors.Add($"{Root}:Locality {localityReason}, e.g. us-east-1/us-east-1a");
        }

        if (!Telemetry.LabelRules.IsLabelValue(options.Telemetry.ClusterId))
        {
            errors.Add($"{Root}:Telemetry:ClusterId '{options.Telemetry.ClusterId}' must be a label value: 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (Istio's default is Kubernetes)");
        }

        if (options.Telemetry.Workload is { } workload && !Telemetry.LabelRules.IsLabelValue(workload))
        {
            errors.Add($"{Root}:Telemetry:Workload '{workload}' must be a label value: 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }

        foreach (var label in (ReadOnlySpan<string>)["app", "version", "service.istio.io/canonical-name", "service.istio.io/canonical-revision", "app.kubernetes.io/name", "app.kubernetes.io/version"])
        {
            if (options.Labels.TryGetValue(label, out var labelValue) && labelValue is not null && !Telemetry.LabelRules.IsLabelValue(labelValue))
            {
                errors.Add($"{Root}:Labels:{label} '{labelValue}' must be a label value: 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (it is a metric label)");
            }
        }

        var accessLog = options.Telemetry.AccessLog;
        if (accessLog.SampleRate is < 0 or > 1 || double.IsNaN(accessLog.SampleRate))
        {
            errors.Add($"{Root}:Telemetry:AccessLog:SampleRate ({accessLog.SampleRate}) must be between 0 and 1 (the share of requests logged)");
        }
        else if (accessLog.Enabled && accessLog.SampleRate == 0 && !accessLog.AlwaysLogErrors)
        {
            errors.Add($"{Root}:Telemetry:AccessLog:SampleRate is 0 and {Root}:Telemetry:AccessLog:AlwaysLogErrors is false: the enabled access log would log nothing; raise SampleRate, set AlwaysLogErrors, or set Enabled to false");
        }

        foreach (var (key, value) in options.Labels)
        {
            if (string.IsNullOrEmpty(key) || key.Length > 63 || value is null || value.Length > 63)
            {
                errors.Add($"{Root}:Labels:{key} must have a key and a value of at most 63 characters");
            }
        }

        var resilience = options.Resilience;
        const string r = $"{Root}:Resilience";
        Positive($"{r}:TotalTimeout", resilience.TotalTimeout, errors);
        Positive($"{r}:AttemptTimeout", resilience.AttemptTimeout, errors);
        if (resilience.AttemptTimeout > resilience.TotalTimeout)
        {
            errors.Add($"{r}:AttemptTimeout ({resilience.AttemptTimeout}) must not exceed {r}:TotalTimeout ({resilience.TotalTimeout})");
        }

        if (resilience.MaxRetryAttempts is < 0 or > 10)
        {
            errors.Add($"{r}:MaxRetryAttempts ({resilience.MaxRetryAttempts}) must be between 0 and 10");
        }

        Positive($"{r}:RetryDelay", resilience.RetryDelay, errors);
        if (resilience.CircuitBreakerFailureRatio is < 0.01 or > 1.0 || double.IsNaN(resilience.CircuitBreakerFailureRatio))
        {
            errors.Add($"{r}:CircuitBreakerFailureRatio ({resilience.CircuitBreakerFailureRatio}) must be between 0.01 and 1");
        }

        if (resilience.CircuitBreakerMinimumThroughput < 2)
        {
            errors.Add($"{r}:CircuitBreakerMinimumThroughput ({resilience.CircuitBreakerMinimumThroughput}) must be at least 2");
        }

        Positive($"{r}:CircuitBreakerSamplingDuration", resilience.CircuitBreakerSamplingDuration, errors);
        Positive($"{r}:CircuitBreakerBreakDuration", resilience.CircuitBreakerBreakDuration, errors);

        ValidateSecurity(options, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void ValidateSecurity(ServiceMeshOptions options, List<string> errors)
    {
        var identity = options.Identity;
        var trustDomainValid = SpiffeId.IsTrustDomain(identity.TrustDomain);
        if (!trustDomainValid)
        {
            errors.Add($"{Root}:Identity:TrustDomain '{identity.TrustDomain}' must be a SPIFFE trust domain: lowercase letters, digits, '.', '-' and '_'");
        }

        if (identity.CertificateTtl < TimeSpan.FromMinutes(1) || identity.CertificateTtl > TimeSpan.FromDays(90))
        {
            errors.Add($"{Root}:Identity:CertificateTtl ({identity.CertificateTtl}) must be between 00:01:00 and 90.00:00:00");
        }

        if (!Security.PeerAuthenticationModes.TryParse(options.Inbound.Mode, out _))
        {
            errors.Add($"{Root}:Inbound:Mode '{options.Inbound.Mode}' must be Strict, Permissive or Disable");
        }

        var controlPlane = options.ControlPlane;
        // Peers are accepted only with workload IDs, so any other expected identity could never match.
        if (controlPlane.Identity is { } expected && !SpiffeId.TryParseWorkload(expected, out SpiffeId? _, out var reason))
        {
            errors.Add($"{Root}:ControlPlane:Identity '{expected}' is not a workload SPIFFE ID: {reason}");
        }

        if (controlPlane.EffectiveAddresses.Count == 0 || !controlPlane.EffectiveAddresses.All(a => a.IsAbsoluteUri && a.Scheme == Uri.UriSchemeHttps))
        {
            return;
        }

        if (string.IsNullOrEmpty(controlPlane.RootCertificate))
        {
            errors.Add($"{Root}:ControlPlane:RootCertificate is required with an https:// control plane: the PEM file of the mesh root trusted on first contact");
        }
        else if (!File.Exists(controlPlane.RootCertificate))
        {
            errors.Add($"{Root}:ControlPlane:RootCertificate '{controlPlane.RootCertificate}' does not exist");
        }

        if (string.IsNullOrEmpty(identity.Token) && string.IsNullOrEmpty(identity.TokenFile))
        {
            errors.Add($"{Root}:Identity:Token or {Root}:Identity:TokenFile is required with an https:// control plane: the bootstrap token for the first certificate");
        }
        else if (!string.IsNullOrEmpty(identity.Token) && !string.IsNullOrEmpty(identity.TokenFile))
        {
            errors.Add($"{Root}:Identity:Token and {Root}:Identity:TokenFile are both set; set one");
        }
        else if (!string.IsNullOrEmpty(identity.TokenFile) && !File.Exists(identity.TokenFile))
        {
            errors.Add($"{Root}:Identity:TokenFile '{identity.TokenFile}' does not exist");
        }

        if (identity.CredentialFile is { } credentialFile)
        {
            var directory = string.IsNullOrWhiteSpace(credentialFile) || credentialFile.IndexOfAny(Path.GetInvalidPathChars()) >= 0 || Directory.Exists(credentialFile)
                ? null
                : Path.GetDirectoryName(Path.GetFullPath(credentialFile));
            if (directory is null)
            {
                errors.Add($"{Root}:Identity:CredentialFile '{credentialFile}' must be a file path (the file is created on the first certificate)");
            }
            else if (!Directory.Exists(directory))
            {
                errors.Add($"{Root}:Identity:CredentialFile '{credentialFile}': its directory '{directory}' does not exist; create it (readable by this workload's user only)");
            }
        }
    }

    /// <summary>Walks a configuration section against the properties of <paramref name="type"/>.</summary>
    internal static void FindUnknownKeys(IConfigurationSection section, Type type, List<string> errors)
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance);
        foreach (var child in section.GetChildren())
        {
            var property = properties.FirstOrDefault(p => string.Equals(p.Name, child.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                var suggestion = properties.Select(p => p.Name)
                    .Select(n => (Name: n, Distance: Distance(n.ToUpperInvariant(), child.Key.ToUpperInvariant())))
                    .Where(c => c.Distance <= Math.Max(2, c.Name.Length / 3))
                    .OrderBy(c => c.Distance)
                    .Select(c => c.Name)
                    .FirstOrDefault();
                var parent = section.Path;
                errors.Add(suggestion is null
                    ? $"{child.Path} is not a known option; known keys under {parent} are {string.Join(", ", properties.Select(p => p.Name))}"
                    : $"{child.Path} is not a known option; did you mean {parent}:{suggestion}?");
                continue;
            }

            var propertyType = property.PropertyType;
            var isLeaf = propertyType.IsPrimitive || propertyType.IsEnum || propertyType == typeof(string) || propertyType == typeof(Uri)
                || propertyType == typeof(TimeSpan) || Nullable.GetUnderlyingType(propertyType) is not null;
            var isDictionary = propertyType.IsGenericType && propertyType.GetGenericTypeDefinition() == typeof(IDictionary<,>);
            if (propertyType.IsGenericType && propertyType.GetGenericTypeDefinition() == typeof(IList<>))
            {
                // A list binds from keys 0, 1, …: a value on the list's own key (say, comma-separated) or any other key
                // would be dropped without a word.
                if (!string.IsNullOrEmpty(child.Value))
                {
                    errors.Add($"{child.Path} is a list, not one value; set {child.Path}:0, {child.Path}:1, … (environment: {child.Path.Replace(":", "__", StringComparison.Ordinal)}__0, …)");
                }

                foreach (var item in child.GetChildren().Where(c => !int.TryParse(c.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)))
                {
                    errors.Add($"{item.Path} is not a list index; list the values as {child.Path}:0, {child.Path}:1, …");
                }

                continue;
            }

            if (!isLeaf && !isDictionary)
            {
                FindUnknownKeys(child, propertyType, errors);
            }
        }
    }

    private static void DnsLabel(string key, string? value, bool required, List<string> errors)
    {
        if (string.IsNullOrEmpty(value))
        {
            if (required)
            {
                errors.Add($"{key} is required");
            }

            return;
        }

        if (!SpiffeId.IsDnsLabel(value))
        {
            errors.Add($"{key} '{value}' must be a DNS label: at most 63 lowercase letters, digits or '-', starting and ending with a letter or digit");
        }
    }

    /// <summary>
    /// <c>Address</c> (one, possibly a Service name) or <c>Addresses</c> (replicas in priority order), never both: which
    /// one wins would be a guess. Replicas share one scheme, since TLS to the control plane decides the workload's identity.
    /// </summary>
    private void ValidateAddresses(ControlPlaneOptions controlPlane, List<string> errors)
    {
        if (controlPlane.Address is not null && controlPlane.Addresses.Count > 0)
        {
            errors.Add($"{Root}:ControlPlane:Address and {Root}:ControlPlane:Addresses are both set; set only one (Addresses lists every replica, Address is one address such as a Kubernetes Service name)");
            return;
        }

        if (controlPlane.Addresses.Count == 0)
        {
            var address = controlPlane.Address;
            if (address is null)
            {
                errors.Add(boundSection is null
                    ? $"{Root}:ControlPlane:Address is required (e.g. http://127.0.0.1:15010); AddServiceMeshCore() reads no configuration, so set ServiceMeshOptions.ControlPlane.Address with services.Configure<ServiceMeshOptions>(…), or call AddServiceMesh() to bind the {Root} section"
                    : $"{Root}:ControlPlane:Address is required (e.g. http://127.0.0.1:15010); set it in configuration or the environment variable Mesh__ControlPlane__Address (or list replicas in {Root}:ControlPlane:Addresses:0, :1, …)");
            }
            else if (!IsHttpUri(address))
            {
                errors.Add($"{Root}:ControlPlane:Address must be an absolute http(s) URI, not '{address.OriginalString}'");
            }

            return;
        }

        var seen = new Dictionary<string, int>(StringComparer.OrdinalIgnoreCase);
        string? scheme = null;
        for (var i = 0; i < controlPlane.Addresses.Count; i++)
        {
            var address = controlPlane.Addresses[i];
            var key = $"{Root}:ControlPlane:Addresses:{i}";
            if (address is null || !IsHttpUri(address))
            {
                errors.Add($"{key} must be an absolute http(s) URI, not '{address?.OriginalString}'");
                continue;
            }

            var authority = $"{address.Scheme}://{address.Authority}";
            if (seen.TryGetValue(authority, out var first))
            {
                errors.Add($"{key} '{address.OriginalString}' repeats {Root}:ControlPlane:Addresses:{first}; list each replica once");
                continue;
            }

            seen[authority] = i;
            if (scheme is null)
            {
                scheme = address.Scheme;
            }
            else if (!string.Equals(scheme, address.Scheme, StringComparison.Ordinal))
            {
                errors.Add($"{key} '{address.OriginalString}' is {address.Scheme}:// but {Root}:ControlPlane:Addresses:0 is {scheme}://; every replica must use the same scheme (https:// for mTLS to the control plane)");
            }
        }
    }

    private static bool IsHttpUri(Uri address) =>
        address.IsAbsoluteUri && (address.Scheme == Uri.UriSchemeHttp || address.Scheme == Uri.UriSchemeHttps);

    private static void ValidateSubscriptions(ControlPlaneOptions controlPlane, List<string> errors)
    {
        const string key = $"{Root}:ControlPlane";
        if (!string.Equals(controlPlane.Subscriptions, ControlPlaneSubscriptions.Wildcard, StringComparison.OrdinalIgnoreCase)
            && !string.Equals(controlPlane.Subscriptions, ControlPlaneSubscriptions.OnDemand, StringComparison.OrdinalIgnoreCase))
        {
            errors.Add($"{key}:Subscriptions '{controlPlane.Subscriptions}' must be {ControlPlaneSubscriptions.Wildcard} or {ControlPlaneSubscriptions.OnDemand}");
        }

        if (!string.Equals(controlPlane.Protocol, ControlPlaneProtocols.StateOfTheWorld, StringComparison.OrdinalIgnoreCase)
            && !string.Equals(controlPlane.Protocol, ControlPlaneProtocols.Delta, StringComparison.OrdinalIgnoreCase))
        {
            errors.Add($"{key}:Protocol '{controlPlane.Protocol}' must be {ControlPlaneProtocols.StateOfTheWorld} or {ControlPlaneProtocols.Delta}");
        }

        Positive($"{key}:SubscriptionTimeout", controlPlane.SubscriptionTimeout, errors);
        if (controlPlane.UnusedServiceTimeout < TimeSpan.FromSeconds(1))
        {
            errors.Add($"{key}:UnusedServiceTimeout ({controlPlane.UnusedServiceTimeout}) must be at least one second");
        }

        if (controlPlane.MaxOnDemandServices < 1)
        {
            errors.Add($"{key}:MaxOnDemandServices ({controlPlane.MaxOnDemandServices}) must be at least 1");
        }

        for (var i = 0; i < controlPlane.Warm.Count; i++)
        {
            if (!Xds.OnDemandSubscriptions.TryListenerName(controlPlane.Warm[i], out _, out var reason))
            {
                errors.Add($"{key}:Warm:{i} '{controlPlane.Warm[i]}' {reason}");
            }
        }

        if (controlPlane.Warm.Count > controlPlane.MaxOnDemandServices)
        {
            errors.Add($"{key}:Warm lists {controlPlane.Warm.Count} hosts, more than {key}:MaxOnDemandServices ({controlPlane.MaxOnDemandServices})");
        }
    }

    private static void Positive(string key, TimeSpan value, List<string> errors)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{key} ({value}) must be positive");
        }
    }

    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var cost = a[i - 1] == b[j - 1] ? 0 : 1;
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + cost);
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    [GeneratedRegex("^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")]
    private static partial Regex DnsSubdomain();
}
