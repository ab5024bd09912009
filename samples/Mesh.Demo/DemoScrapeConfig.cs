using System.Globalization;
using System.Text;
using System.Text.Json;
using Mesh.Samples;
using Mesh.Samples.Processes;

namespace Mesh.Demo;

/// <summary>
/// Where to scrape the demo: each service's <c>/metrics</c> (over mTLS, as the mesh is STRICT) and the control plane's
/// admin <c>/metrics</c>, plus a ready-made Prometheus config that presents a mesh identity of its own.
/// </summary>
internal static class DemoScrapeConfig
{
    public const string FileName = "prometheus.yml";

    /// <summary>Gets the https scrape URL of a workload (its one port, over mTLS).</summary>
    public static Uri MetricsUrl(WorkloadProcess workload) =>
        new UriBuilder(workload.Address) { Scheme = Uri.UriSchemeHttps, Path = DemoTelemetryExtensions.ScrapePath }.Uri;

    /// <summary>Gets a mesh-sidecar's scrape URL: its admin port, plain HTTP and outside the mesh, as Envoy's.</summary>
    public static Uri SidecarMetricsUrl(SidecarProcess sidecar) => new(sidecar.Admin, SidecarScrapePath);

    private const string SidecarScrapePath = "/stats/prometheus";

    /// <summary>
    /// Writes a Prometheus config scraping every service (one job per service) and the control plane every 5 s, presenting
    /// <paramref name="identity"/>. A workload's certificate names only its SPIFFE ID, which Prometheus's host-name check
    /// cannot match, so, as Istio's docs set up Prometheus with a workload certificate, the server is not verified
    /// (<c>insecure_skip_verify</c>) while Prometheus still presents its own certificate to the STRICT policy. A service
    /// behind mesh-sidecars (by instance in <paramref name="sidecars"/>) is scraped on the sidecars' admin ports.
    /// </summary>
    public static string Write(
        string directory,
        WorkloadCertificates.Files identity,
        Uri controlPlaneAdmin,
        IEnumerable<WorkloadProcess> workloads,
        IReadOnlyDictionary<string, SidecarProcess> sidecars)
    {
        var yaml = new StringBuilder();
        yaml.AppendLine("# Written by the demo (Mesh.Demo); valid while it runs (it renews the one-hour certificate below every 30 minutes).");
        yaml.AppendLine("global:");
        yaml.AppendLine("  scrape_interval: 5s");
        yaml.AppendLine("scrape_configs:");
        yaml.AppendLine("  - job_name: control-plane");
        yaml.AppendLine(CultureInfo.InvariantCulture, $"    metrics_path: {DemoTelemetryExtensions.ScrapePath}");
        yaml.AppendLine("    static_configs:");
        yaml.AppendLine(CultureInfo.InvariantCulture, $"      - targets: [{Quote(controlPlaneAdmin.Authority)}]");
        foreach (var service in workloads.GroupBy(w => w.Service, StringComparer.Ordinal))
        {
            if (service.All(w => sidecars.ContainsKey(w.Instance)))
            {
                yaml.AppendLine(CultureInfo.InvariantCulture, $"  - job_name: {Quote(service.Key)}");
                yaml.AppendLine(CultureInfo.InvariantCulture, $"    metrics_path: {SidecarScrapePath}");
                yaml.AppendLine("    static_configs:");
                yaml.AppendLine(CultureInfo.InvariantCulture, $"      - targets: [{string.Join(", ", service.Select(w => Quote(sidecars[w.Instance].Admin.Authority)))}]");
                continue;
            }

            yaml.AppendLine(CultureInfo.InvariantCulture, $"  - job_name: {Quote(service.Key)}");
            yaml.AppendLine("    scheme: https");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"    metrics_path: {DemoTelemetryExtensions.ScrapePath}");
            yaml.AppendLine("    enable_http2: true");
            yaml.AppendLine("    tls_config:");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      ca_file: {Quote(identity.RootCertificate)}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      cert_file: {Quote(identity.CertificateChain)}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      key_file: {Quote(identity.PrivateKey)}");
            yaml.AppendLine("      insecure_skip_verify: true");
            yaml.AppendLine("    static_configs:");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      - targets: [{string.Join(", ", service.Select(w => Quote(w.Address.Authority)))}]");
        }

        var path = Path.Combine(directory, FileName);
        File.WriteAllText(path, yaml.ToString());
        return path;
    }

    // JSON strings are valid YAML double-quoted scalars.
    private static string Quote(string value) => JsonSerializer.Serialize(value);
}
