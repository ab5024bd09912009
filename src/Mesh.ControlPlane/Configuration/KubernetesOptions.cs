using System.Collections.Immutable;
using k8s;

namespace Mesh.ControlPlane.Configuration;

/// <summary>
/// Settings of <c>ControlPlane:Kubernetes</c>: the Kubernetes API as a second source behind the same model as the config
/// folder, and what the control plane asks of the API server besides (TokenReview, Leases).
/// </summary>
internal sealed class KubernetesOptions
{
    private static readonly string[] KnownKeys =
        [nameof(Enabled), nameof(Kubeconfig), nameof(Context), nameof(Namespaces), nameof(SystemNamespace), nameof(TokenAudiences),
         nameof(TokenReviewTimeout), nameof(TokenReviewBurstPerAddress), nameof(TokenReviewsPerAddressPerSecond), nameof(WebhookAddress), nameof(WebhookServiceName), nameof(WatchIdleTimeout), nameof(ClusterDomain),
         nameof(LeaseDuration), nameof(RenewDeadline), nameof(RetryPeriod)];

    /// <summary>Whether the control plane reads the Kubernetes API (off by default: the folder and registry alone).</summary>
    public bool Enabled { get; set; }

    /// <summary>A kubeconfig file for running outside the cluster; unset: the in-cluster config (service-account token, CA, <c>KUBERNETES_SERVICE_HOST</c>).</summary>
    public string? Kubeconfig { get; set; }

    /// <summary>The kubeconfig context to use; unset: its current context.</summary>
    public string? Context { get; set; }

    /// <summary>The namespaces watched; empty: all namespaces.</summary>
    public ImmutableArray<string> Namespaces { get; set; } = [];

    /// <summary>The control plane's own namespace (its Lease and the <c>cacerts</c> Secret live there): <c>POD_NAMESPACE</c> when set, else <c>mesh-system</c>.</summary>
    public string SystemNamespace { get; set; } = Environment.GetEnvironmentVariable("POD_NAMESPACE") is { Length: > 0 } ns ? ns : "mesh-system";

    /// <summary>The audiences a workload's projected ServiceAccount token must carry for the CA (Istio's default: <c>istio-ca</c>).</summary>
    public ImmutableArray<string> TokenAudiences { get; set; } = ["istio-ca"];

    /// <summary>
    /// How long a watch may deliver nothing, not even a BOOKMARK, before the source cancels it and watches again from the last
    /// resourceVersion (no relist). Default 2 minutes: every watch asks for bookmarks, but the API does not promise any
    /// interval, so a quiet kind costs one cheap rewatch per period; a connection that died without a FIN (the
    /// KubernetesClient watch has no read timeout) is noticed within it. YARP's 9.5 minutes outlives the 5–10 minute watch
    /// timeout itself, so there a dead stream would only be noticed when the watch would have ended anyway.
    /// </summary>
    public TimeSpan WatchIdleTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>The cluster's DNS domain, used to name a Service <c>&lt;name&gt;.&lt;namespace&gt;.svc.&lt;domain&gt;</c> (default <c>cluster.local</c>).</summary>
    public string ClusterDomain { get; set; } = "cluster.local";

    /// <summary>How long the CA waits for the API server's answer to one TokenReview before refusing the CSR (5 s).</summary>
    public TimeSpan TokenReviewTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// TokenReviews one caller address may ask for back to back (32): a node's pods restarting at once behind one address
    /// (hostNetwork, or SNAT in front of an out-of-cluster control plane) each need one. Raise it, and
    /// <see cref="TokenReviewsPerAddressPerSecond"/>, when a whole cluster reaches the CA through one address.
    /// </summary>
    public int TokenReviewBurstPerAddress { get; set; } = 32;

    /// <summary>TokenReviews per second one caller address earns back (8).</summary>
    public int TokenReviewsPerAddressPerSecond { get; set; } = 8;

    /// <summary>
    /// The validating admission webhook's HTTPS listener (<c>POST /validate</c>, HTTP/1.1 and HTTP/2), e.g. https://0.0.0.0:15017;
    /// unset (the default): no webhook. Its certificate is issued by the mesh CA for <see cref="WebhookDnsName"/>.
    /// </summary>
    public Uri? WebhookAddress { get; set; }

    /// <summary>The Service the API server calls the webhook through; its certificate names <c>&lt;service&gt;.&lt;SystemNamespace&gt;.svc</c>.</summary>
    public string WebhookServiceName { get; set; } = "mesh-control-plane";

    /// <summary>The DNS name the webhook's serving certificate is issued for: <c>&lt;WebhookServiceName&gt;.&lt;SystemNamespace&gt;.svc</c>.</summary>
    public string WebhookDnsName => $"{WebhookServiceName}.{SystemNamespace}.svc";

    /// <summary>
    /// How long replicas that do not hold the <c>mesh-control-plane</c> Lease wait before taking it over (client-go's
    /// default, 15 s). Only work one replica may do (creating the shared CA Secret) waits for the Lease.
    /// </summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>How long the holder keeps retrying to renew the Lease before it gives up leading (client-go's default, 10 s).</summary>
    public TimeSpan RenewDeadline { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>The pause between attempts to take or renew the Lease (client-go's default, 2 s).</summary>
    public TimeSpan RetryPeriod { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>The client configuration: the kubeconfig when one is set, otherwise the in-cluster config.</summary>
    public KubernetesClientConfiguration ClientConfiguration()
    {
        if (Kubeconfig is not null)
        {
            try
            {
                return KubernetesClientConfiguration.BuildConfigFromConfigFile(Kubeconfig, Context);
            }
            catch (Exception ex) when (ex is k8s.Exceptions.KubeConfigException or IOException or YamlDotNet.Core.YamlException)
            {
                throw new InvalidOperationException($"{ControlPlaneOptions.SectionName}:Kubernetes:{nameof(Kubeconfig)} '{Kubeconfig}' is not a usable kubeconfig{(Context is null ? "" : $" with context '{Context}'")}: {ex.Message}", ex);
            }
        }

        if (!KubernetesClientConfiguration.IsInCluster())
        {
            throw new InvalidOperationException(
                $"{ControlPlaneOptions.SectionName}:Kubernetes:{nameof(Enabled)} is true but the control plane runs outside a cluster (no KUBERNETES_SERVICE_HOST or service-account token) and {ControlPlaneOptions.SectionName}:Kubernetes:{nameof(Kubeconfig)} is not set: set it to a kubeconfig file");
        }

        return KubernetesClientConfiguration.InClusterConfig();
    }

    internal static void Read(IConfigurationSection section, KubernetesOptions options, string prefix, List<string> errors)
    {
        foreach (var child in section.GetChildren())
        {
            if (!KnownKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{prefix}:{child.Key} is not a known setting; known settings are {string.Join(", ", KnownKeys)}");
            }
        }

        if (section[nameof(Enabled)] is { } enabled)
        {
            if (bool.TryParse(enabled, out var value))
            {
                options.Enabled = value;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(Enabled)} must be true or false (got '{enabled}')");
            }
        }

        options.Kubeconfig = ControlPlaneOptions.ReadFile(section, nameof(Kubeconfig), prefix, errors);
        if (options.Kubeconfig is not null && !File.Exists(options.Kubeconfig))
        {
            errors.Add($"{prefix}:{nameof(Kubeconfig)} '{options.Kubeconfig}' does not exist");
        }

        options.Context = string.IsNullOrEmpty(section[nameof(Context)]) ? null : section[nameof(Context)];
        options.Namespaces = ReadLabels(section, nameof(Namespaces), prefix, errors, options.Namespaces);
        if (section[nameof(SystemNamespace)] is { } systemNamespace)
        {
            if (SpiffeId.IsDnsLabel(systemNamespace))
            {
                options.SystemNamespace = systemNamespace;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(SystemNamespace)} must be a namespace name (a DNS label, got '{systemNamespace}')");
            }
        }

        options.WatchIdleTimeout = ControlPlaneOptions.ReadDuration(section, nameof(WatchIdleTimeout), options.WatchIdleTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromHours(1), errors, prefix);
        if (section[nameof(ClusterDomain)] is { } clusterDomain)
        {
            var domain = clusterDomain.TrimEnd('.').ToLowerInvariant();
            if (domain.Length > 0 && domain.Split('.').All(SpiffeId.IsDnsLabel))
            {
                options.ClusterDomain = domain;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(ClusterDomain)} must be a DNS name like cluster.local (got '{clusterDomain}')");
            }
        }

        var audiences = ReadList(section, nameof(TokenAudiences), prefix);
        if (audiences is not null)
        {
            if (audiences.Count == 0 || audiences.Any(a => string.IsNullOrWhiteSpace(a.Value)))
            {
                errors.Add($"{prefix}:{nameof(TokenAudiences)} must name at least one audience, none empty (Istio's default is istio-ca)");
            }
            else
            {
                options.TokenAudiences = [.. audiences.Select(a => a.Value!)];
            }
        }

        options.TokenReviewTimeout = ControlPlaneOptions.ReadDuration(section, nameof(TokenReviewTimeout), options.TokenReviewTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1), errors, prefix);
        options.TokenReviewBurstPerAddress = ControlPlaneOptions.ReadInt(section, nameof(TokenReviewBurstPerAddress), options.TokenReviewBurstPerAddress, 1, 100_000, errors, prefix);
        options.TokenReviewsPerAddressPerSecond = ControlPlaneOptions.ReadInt(section, nameof(TokenReviewsPerAddressPerSecond), options.TokenReviewsPerAddressPerSecond, 1, 10_000, errors, prefix);
        if (!string.IsNullOrEmpty(section[nameof(WebhookAddress)]))
        {
            var address = section[nameof(WebhookAddress)]!;
            if (Uri.TryCreate(address, UriKind.Absolute, out var uri) && uri.Scheme == Uri.UriSchemeHttps && uri.AbsolutePath == "/"
                && string.IsNullOrEmpty(uri.Query) && string.IsNullOrEmpty(uri.UserInfo) && !address.EndsWith(':')
                && (uri.IsLoopback || System.Net.IPAddress.TryParse(uri.Host, out _)))
            {
                options.WebhookAddress = uri;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(WebhookAddress)} must be an absolute https URI like https://0.0.0.0:15017 whose host is an IP address or localhost (got '{address}')");
            }
        }

        if (section[nameof(WebhookServiceName)] is { } serviceName)
        {
            if (SpiffeId.IsDnsLabel(serviceName))
            {
                options.WebhookServiceName = serviceName;
            }
            else
            {
                errors.Add($"{prefix}:{nameof(WebhookServiceName)} must be a Service name (a DNS label, got '{serviceName}')");
            }
        }

        // client-go's rule: LeaseDuration > RenewDeadline > 1.2 × RetryPeriod, or a slow renewal lets a second leader in.
        options.LeaseDuration = ControlPlaneOptions.ReadDuration(section, nameof(LeaseDuration), options.LeaseDuration, TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(5), errors, prefix);
        options.RenewDeadline = ControlPlaneOptions.ReadDuration(section, nameof(RenewDeadline), options.RenewDeadline, TimeSpan.FromMilliseconds(500), TimeSpan.FromMinutes(5), errors, prefix);
        options.RetryPeriod = ControlPlaneOptions.ReadDuration(section, nameof(RetryPeriod), options.RetryPeriod, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(1), errors, prefix);
        if (options.LeaseDuration <= options.RenewDeadline)
        {
            errors.Add($"{prefix}:{nameof(LeaseDuration)} ({options.LeaseDuration:c}) must be longer than {prefix}:{nameof(RenewDeadline)} ({options.RenewDeadline:c})");
        }

        if (options.RenewDeadline <= options.RetryPeriod * 1.2)
        {
            errors.Add($"{prefix}:{nameof(RenewDeadline)} ({options.RenewDeadline:c}) must be longer than 1.2 × {prefix}:{nameof(RetryPeriod)} ({options.RetryPeriod:c})");
        }
    }

    private static ImmutableArray<string> ReadLabels(IConfigurationSection section, string key, string prefix, List<string> errors, ImmutableArray<string> fallback)
    {
        var entries = ReadList(section, key, prefix);
        if (entries is null)
        {
            return fallback;
        }

        var result = ImmutableArray.CreateBuilder<string>();
        foreach (var (entryKey, value) in entries)
        {
            if (value is null || !SpiffeId.IsDnsLabel(value))
            {
                errors.Add($"{entryKey} must be a namespace name (a DNS label, got '{value}')");
            }
            else if (!result.Contains(value))
            {
                result.Add(value);
            }
        }

        return result.ToImmutable();
    }

    /// <summary>A list (<c>Key:0=…</c>) or one comma-separated value (handy in an environment variable); null when unset.</summary>
    private static List<(string Key, string? Value)>? ReadList(IConfigurationSection section, string key, string prefix)
    {
        var listSection = section.GetSection(key);
        var fullKey = $"{prefix}:{key}";
        if (listSection.Value is { } csv)
        {
            return [.. csv.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(v => (fullKey, (string?)v))];
        }

        var children = listSection.GetChildren().ToList();
        return children.Count == 0 ? null : [.. children.Select(c => ($"{fullKey}:{c.Key}", c.Value))];
    }
}
