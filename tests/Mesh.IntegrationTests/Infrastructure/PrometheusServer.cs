using System.Globalization;
using System.Text;
using System.Text.Json;
using Mesh.Samples.Processes;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>One job Prometheus scrapes: a single target at <see cref="Address"/> (scheme, host and port) on <see cref="MetricsPath"/>.</summary>
/// <param name="Tls">Client certificate and CA for an https target (a mesh workload under STRICT mTLS); null for plain http.</param>
internal sealed record ScrapeTarget(string Job, Uri Address, PrometheusTls? Tls = null, string MetricsPath = "/metrics");

/// <summary>
/// The files Prometheus presents and trusts when it scrapes over mTLS. A mesh workload's certificate carries only its
/// SPIFFE URI SAN, which Go's name check cannot match, so, as Istio's docs configure Prometheus with its workload
/// certificate, <c>insecure_skip_verify</c> is set: Prometheus still presents its own certificate (the workload's
/// STRICT policy checks it), but it does not check the workload's.
/// </summary>
internal sealed record PrometheusTls(string CaFile, string CertFile, string KeyFile);

/// <summary>
/// The real <c>prometheus</c> binary (Debian package <c>prometheus</c>) run by a test: 127.0.0.1 on an ephemeral port,
/// a temp data folder, a generated scrape config (every target every 1 s). Stopped by its PID on dispose.
/// </summary>
internal sealed class PrometheusServer : IAsyncDisposable
{
    public const string Binary = "prometheus";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly ChildProcess _process;
    private readonly string _root;
    private readonly HttpClient _http;

    private PrometheusServer(ChildProcess process, string root, Uri address)
    {
        _process = process;
        _root = root;
        Address = address;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false }) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Gets Prometheus's own address (web UI and HTTP API).</summary>
    public Uri Address { get; }

    /// <summary>Gets everything Prometheus logged so far.</summary>
    public string Output => _process.Output;

    /// <summary>Starts Prometheus scraping <paramref name="targets"/> and waits until it answers <c>/-/ready</c>.</summary>
    /// <exception cref="InvalidOperationException">The <c>prometheus</c> binary is not installed; the message says how to get it.</exception>
    public static async Task<PrometheusServer> StartAsync(IReadOnlyCollection<ScrapeTarget> targets)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var binary = RequireBinary();

        var root = Directory.CreateTempSubdirectory("mesh-prometheus-").FullName;
        var config = Path.Combine(root, "prometheus.yml");
        await File.WriteAllTextAsync(config, ScrapeConfig(targets));

        // Port 0: the kernel picks a free port and Prometheus logs the one it got ("Listening on" address=127.0.0.1:N),
        // so there is no window in which another process can take a port picked in advance.
        var process = ChildProcess.Start(
            "prometheus",
            binary,
            [
                $"--config.file={config}",
                $"--storage.tsdb.path={Path.Combine(root, "data")}",
                "--web.listen-address=127.0.0.1:0",
                "--storage.tsdb.retention.time=1h",
                "--log.level=info",
            ],
            workingDirectory: root);
        try
        {
            var listening = await process.WaitForLineAsync(@"msg=""Listening on"" address=127\.0\.0\.1:(\d+)", StartTimeout);
            var address = new Uri($"http://127.0.0.1:{listening.Groups[1].Value}/");
            var server = new PrometheusServer(process, root, address);
            await Eventually.HoldsAsync(
                async () =>
                {
                    using var response = await server._http.GetAsync("-/ready");
                    return response.IsSuccessStatusCode;
                },
                $"Prometheus at {address} to answer /-/ready",
                StartTimeout);
            return server;
        }
        catch
        {
            await process.DisposeAsync();
            Directory.Delete(root, recursive: true);
            throw;
        }
    }

    /// <summary>Runs an instant PromQL query (<c>/api/v1/query</c>) and returns its samples (labels and value).</summary>
    /// <exception cref="InvalidOperationException">Prometheus rejected the query; the message has its error.</exception>
    public async Task<IReadOnlyList<PromSample>> QueryAsync(string promql)
    {
        using var content = new FormUrlEncodedContent([new KeyValuePair<string, string>("query", promql)]);
        using var response = await _http.PostAsync("api/v1/query", content);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var root = json.RootElement;
        if (root.GetProperty("status").GetString() != "success")
        {
            throw new InvalidOperationException($"Prometheus rejected '{promql}': {root.GetProperty("errorType").GetString()}: {root.GetProperty("error").GetString()}");
        }

        var data = root.GetProperty("data");
        var samples = new List<PromSample>();
        switch (data.GetProperty("resultType").GetString())
        {
            case "vector":
                foreach (var item in data.GetProperty("result").EnumerateArray())
                {
                    var labels = item.GetProperty("metric").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? string.Empty, StringComparer.Ordinal);
                    samples.Add(new PromSample(labels, ParseValue(item.GetProperty("value")[1].GetString())));
                }

                break;
            case "scalar":
                samples.Add(new PromSample(new Dictionary<string, string>(), ParseValue(data.GetProperty("result")[1].GetString())));
                break;
            default:
                throw new InvalidOperationException($"'{promql}' returned a {data.GetProperty("resultType").GetString()}; QueryAsync takes instant vector or scalar queries.");
        }

        return samples;
    }

    /// <summary>Runs a query that must return at most one sample and returns its value, or null when it returns none.</summary>
    public async Task<double?> QueryScalarAsync(string promql)
    {
        var samples = await QueryAsync(promql);
        return samples.Count switch
        {
            0 => null,
            1 => samples[0].Value,
            _ => throw new InvalidOperationException($"'{promql}' returned {samples.Count} series; expected one: {string.Join("; ", samples)}"),
        };
    }

    /// <summary>
    /// Waits until every job in <paramref name="jobs"/> has an active target that is up and has been scraped
    /// (<c>/api/v1/targets</c>). The timeout message lists each target's health and last error.
    /// </summary>
    public async Task WaitForScrapeAsync(IEnumerable<string> jobs, TimeSpan? timeout = null)
    {
        var wanted = jobs.ToHashSet(StringComparer.Ordinal);
        var last = string.Empty;
        try
        {
            await Eventually.HoldsAsync(
                async () =>
                {
                    using var json = JsonDocument.Parse(await _http.GetStringAsync("api/v1/targets?state=active"));
                    var up = new HashSet<string>(StringComparer.Ordinal);
                    var report = new StringBuilder();
                    foreach (var target in json.RootElement.GetProperty("data").GetProperty("activeTargets").EnumerateArray())
                    {
                        var job = target.GetProperty("labels").GetProperty("job").GetString()!;
                        var health = target.GetProperty("health").GetString();
                        report.Append(CultureInfo.InvariantCulture, $"{job} {target.GetProperty("scrapeUrl").GetString()}: {health} {target.GetProperty("lastError").GetString()}; ");
                        if (health == "up")
                        {
                            up.Add(job);
                        }
                    }

                    last = report.ToString();
                    return wanted.IsSubsetOf(up);
                },
                $"Prometheus to scrape {string.Join(", ", wanted)}",
                timeout);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message} Targets: {last}", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _process.DisposeAsync();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static double ParseValue(string? text) => text switch
    {
        "NaN" => double.NaN,
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        _ => double.Parse(text!, NumberStyles.Float, CultureInfo.InvariantCulture),
    };

    /// <summary>Gets the path of the <c>prometheus</c> binary; a test calls it first to fail before starting anything else.</summary>
    /// <exception cref="InvalidOperationException">It is not on PATH; the message says how to get it (tests never skip for it).</exception>
    public static string RequireBinary() => FindBinary() ?? throw new InvalidOperationException(
        "The integration tests need a real Prometheus: the 'prometheus' binary is not on PATH. Install it with "
        + "'apt-get install -y prometheus' (Debian/Ubuntu; .ci/run does this) or put a Prometheus 2.x binary on PATH. "
        + "Do not start its system service: the tests run their own process.");

    private static string? FindBinary()
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, Binary);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }

    /// <summary>The scrape config: one job per target, scraped every second. Values are YAML-quoted (JSON strings are valid YAML).</summary>
    private static string ScrapeConfig(IEnumerable<ScrapeTarget> targets)
    {
        var yaml = new StringBuilder();
        yaml.AppendLine("global:");
        yaml.AppendLine("  scrape_interval: 1s");
        yaml.AppendLine("  scrape_timeout: 1s");
        yaml.AppendLine("scrape_configs:");
        foreach (var target in targets)
        {
            yaml.AppendLine(CultureInfo.InvariantCulture, $"  - job_name: {Quote(target.Job)}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"    scheme: {target.Address.Scheme}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"    metrics_path: {Quote(target.MetricsPath)}");
            if (target.Tls is { } tls)
            {
                // Inventory speaks HTTP/2 only; Prometheus offers h2 in ALPN when enable_http2 is on.
                yaml.AppendLine("    enable_http2: true");
                yaml.AppendLine("    tls_config:");
                yaml.AppendLine(CultureInfo.InvariantCulture, $"      ca_file: {Quote(tls.CaFile)}");
                yaml.AppendLine(CultureInfo.InvariantCulture, $"      cert_file: {Quote(tls.CertFile)}");
                yaml.AppendLine(CultureInfo.InvariantCulture, $"      key_file: {Quote(tls.KeyFile)}");
                yaml.AppendLine("      insecure_skip_verify: true");
            }

            yaml.AppendLine("    static_configs:");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      - targets: [{Quote(target.Address.Authority)}]");
        }

        return yaml.ToString();
    }

    private static string Quote(string value) => JsonSerializer.Serialize(value);
}

/// <summary>One sample of a PromQL instant query.</summary>
internal sealed record PromSample(IReadOnlyDictionary<string, string> Labels, double Value)
{
    public override string ToString() => $"{{{string.Join(",", Labels.Select(l => $"{l.Key}=\"{l.Value}\""))}}} {Value.ToString(CultureInfo.InvariantCulture)}";
}
