using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Mesh.Samples;
using Mesh.Samples.Processes;

namespace Mesh.Demo;

/// <summary>
/// Runs the demo mesh: control plane, frontend → orders (v1 and v2) → inventory (×N, over gRPC), frontend → ratings (a
/// Python app behind its mesh-sidecar) → orders, a traffic driver and the live table, which shows how orders'
/// VirtualService splits the traffic between its versions.
/// </summary>
internal sealed class DemoMesh(DemoOptions options) : IAsyncDisposable
{
    private static readonly string[] ServiceOrder = ["frontend", "ratings", "orders", "inventory"];
    private readonly List<ChildProcess> _processes = [];
    private readonly List<WorkloadProcess> _workloads = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, SidecarProcess> _sidecars = new(StringComparer.Ordinal);
    private string? _ratingsLeftOut;
    private readonly string _stateDirectory = Directory.CreateTempSubdirectory("mesh-demo-").FullName;
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
    private readonly Dictionary<string, HttpClient> _mtls = new(StringComparer.Ordinal);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _identities = new(StringComparer.Ordinal);
    private WorkloadCertificates.Files? _demoIdentity;
    private string? _scrapeConfig;
    private readonly Stopwatch _uptime = Stopwatch.StartNew();
    private ControlPlaneProcess? _controlPlane;
    private string _configDirectory = string.Empty;

    public TrafficSummary Summary { get; } = new();

    public VersionWindow Versions { get; } = new(TimeSpan.FromSeconds(10));

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _configDirectory = options.ConfigDirectory;
        Console.WriteLine($"Starting the control plane (config: {_configDirectory})...");
        _controlPlane = await MeshProcesses.StartControlPlaneAsync(App("Mesh.ControlPlane"), _configDirectory, _stateDirectory).ConfigureAwait(false);
        _processes.Add(_controlPlane.Process);
        Console.WriteLine($"  secure (ADS + CA) {_controlPlane.SecureAddress}  admin {_controlPlane.AdminAddress}");

        // The demo itself calls into the mesh (traffic, stats, readiness) as a mesh workload: STRICT lets nothing else in.
        _demoIdentity = await WorkloadCertificates.IssueAsync(_controlPlane, "mesh-demo", Path.Combine(_stateDirectory, "demo-identity")).ConfigureAwait(false);
        Console.WriteLine($"  the demo calls in as {WorkloadCertificates.SpiffeIdOf(_demoIdentity.Leaf)}");

        var starts = new List<Task<WorkloadProcess>>();
        for (var i = 1; i <= options.InventoryInstances; i++)
        {
            starts.Add(StartWorkloadAsync("Mesh.Samples.Inventory", "inventory", $"inventory-{i}"));
        }

        // Two versions of orders, told apart by their version label: the DestinationRule's subsets select on it.
        starts.Add(StartWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-v1", ("Mesh__Labels__version", "v1")));
        starts.Add(StartWorkloadAsync("Mesh.Samples.Orders", "orders", "orders-v2", ("Mesh__Labels__version", "v2")));
        starts.Add(StartWorkloadAsync("Mesh.Samples.Frontend", "frontend", "frontend-1"));
        starts.AddRange(StartRatings());
        foreach (var start in starts)
        {
            var workload = await start.ConfigureAwait(false);
            Console.WriteLine(_sidecars.TryGetValue(workload.Instance, out var sidecar)
                ? $"  {workload.Instance,-12} {workload.Address}  (mesh-sidecar; admin {sidecar.Admin})"
                : $"  {workload.Instance,-12} {workload.Address}");
        }

        Console.WriteLine("Waiting until every service is ready (synced with the control plane)...");
        foreach (var workload in _workloads)
        {
            await WaitReadyAsync(workload, cancellationToken).ConfigureAwait(false);
        }

        await PrintScrapeTargetsAsync().ConfigureAwait(false);
    }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var frontend = _workloads.First(w => w.Service == "frontend");
        var driver = Task.Run(() => DriveTrafficAsync(frontend, cancellationToken), cancellationToken);
        var scraperIdentity = Task.Run(() => RenewScraperIdentityAsync(cancellationToken), cancellationToken);
        var interactive = !Console.IsOutputRedirected;
        var printEvery = interactive ? TimeSpan.FromSeconds(1) : TimeSpan.FromSeconds(5);
        using var timer = new PeriodicTimer(printEvery);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                var table = await RenderAsync(cancellationToken).ConfigureAwait(false);
                Console.Write(interactive ? "\u001b[H\u001b[J" + table : table + Environment.NewLine);
            }
        }
        finally
        {
            await driver.ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            await scraperIdentity.ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            if (!cancellationToken.IsCancellationRequested || !interactive)
            {
                Console.WriteLine(await RenderAsync(CancellationToken.None).ConfigureAwait(false));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Services first (they deregister), the control plane last.
        for (var i = _processes.Count - 1; i >= 0; i--)
        {
            await _processes[i].DisposeAsync().ConfigureAwait(false);
        }

        _http.Dispose();
        foreach (var client in _mtls.Values)
        {
            client.Dispose();
        }

        try
        {
            Directory.Delete(_stateDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    /// <summary>Prints every /metrics endpoint and writes a Prometheus config that scrapes them all with a mesh identity.</summary>
    private async Task PrintScrapeTargetsAsync()
    {
        var identity = await WorkloadCertificates.IssueAsync(_controlPlane!, "prometheus", ScraperIdentityDirectory).ConfigureAwait(false);
        _scrapeConfig = DemoScrapeConfig.Write(_stateDirectory, identity, _controlPlane!.AdminAddress, _workloads, _sidecars);
        Console.WriteLine("Metrics (Prometheus text format):");
        Console.WriteLine($"  {"control plane",-13} {new Uri(_controlPlane.AdminAddress, DemoTelemetryExtensions.ScrapePath)}  (admin port, plain HTTP)");
        foreach (var workload in _workloads.OrderBy(w => Array.IndexOf(ServiceOrder, w.Service)).ThenBy(w => w.Instance, StringComparer.Ordinal))
        {
            Console.WriteLine(_sidecars.TryGetValue(workload.Instance, out var sidecar)
                ? $"  {workload.Instance,-13} {DemoScrapeConfig.SidecarMetricsUrl(sidecar)}  (its mesh-sidecar's admin port, plain HTTP)"
                : $"  {workload.Instance,-13} {DemoScrapeConfig.MetricsUrl(workload)}  (mTLS: present a mesh certificate; the mesh is STRICT)");
        }

        Console.WriteLine($"  Prometheus config scraping all of them as {WorkloadCertificates.SpiffeIdOf(identity.Leaf)}:");
        Console.WriteLine($"    prometheus --config.file={_scrapeConfig} --storage.tsdb.path={Path.Combine(_stateDirectory, "prometheus-data")} --web.listen-address=127.0.0.1:9090");
        Console.WriteLine(Environment.GetEnvironmentVariable(DemoTelemetryExtensions.OtlpEndpointKey) is { Length: > 0 } otlp
            ? $"  OTLP: every service exports traces, metrics and logs to {otlp} ({Environment.GetEnvironmentVariable(DemoTelemetryExtensions.OtlpProtocolKey) ?? "grpc"})"
            : $"  OTLP: off; set {DemoTelemetryExtensions.OtlpEndpointKey} (and {DemoTelemetryExtensions.OtlpProtocolKey}=grpc|http/protobuf) before starting the demo to export traces, metrics and logs");
    }

    private string ScraperIdentityDirectory => Path.Combine(_stateDirectory, "prometheus-identity");

    /// <summary>
    /// Re-issues the Prometheus identity at half its one-hour life, in place: Prometheus re-reads <c>cert_file</c> and
    /// <c>key_file</c> when they change, so a demo left running keeps being scraped. A failed renewal is said and retried
    /// at the next turn; the current certificate still has half its life.
    /// </summary>
    private async Task RenewScraperIdentityAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(30));
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            try
            {
                await WorkloadCertificates.IssueAsync(_controlPlane!, "prometheus", ScraperIdentityDirectory).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or Grpc.Core.RpcException or HttpRequestException)
            {
                Console.Error.WriteLine($"Renewing the Prometheus scrape certificate failed ({ex.Message}); retrying in 30 minutes.");
            }
        }
    }

    private static string App(string name) =>
        LaunchableApps.Paths.TryGetValue(name, out var path)
            ? path
            : throw new InvalidOperationException($"{name} is not among the demo's launchable apps.");

    private async Task<WorkloadProcess> StartWorkloadAsync(string app, string service, string instance, params (string Key, string Value)[] environment)
    {
        var env = environment.ToDictionary(e => e.Key, e => (string?)e.Value, StringComparer.Ordinal);
        return AddWorkload(await MeshProcesses.StartWorkloadAsync(App(app), service, instance, _controlPlane!, env).ConfigureAwait(false));
    }

    private WorkloadProcess AddWorkload(WorkloadProcess workload)
    {
        lock (_workloads)
        {
            _workloads.Add(workload);
            _processes.Add(workload.Process);
            _mtls[workload.Instance] = WorkloadCertificates.CreateMtlsClient(
                _demoIdentity!,
                certificate => _identities[workload.Instance] = WorkloadCertificates.SpiffeIdOf(certificate) ?? "?");
        }

        return workload;
    }

    /// <summary>
    /// Starts ratings: python3 ratings.py behind a mesh-sidecar that joins the mesh as sa/ratings. Without python3 the
    /// demo runs without ratings and says why (frontend shows each order without a rating).
    /// </summary>
    private IEnumerable<Task<WorkloadProcess>> StartRatings()
    {
        if (options.RatingsInstances == 0)
        {
            _ratingsLeftOut = "left out (--ratings 0)";
            return [];
        }

        try
        {
            PythonRuntime.Find();
        }
        catch (InvalidOperationException e)
        {
            _ratingsLeftOut = $"left out: {e.Message}";
            Console.WriteLine($"  ratings      {_ratingsLeftOut}");
            return [];
        }

        return Enumerable.Range(1, options.RatingsInstances).Select(async i =>
        {
            var ratings = await SidecarProcesses.StartPythonWorkloadAsync(
                App("mesh-sidecar"),
                Path.Combine(AppContext.BaseDirectory, "python", "ratings.py"),
                "ratings",
                $"ratings-{i}",
                _controlPlane!).ConfigureAwait(false);
            lock (_workloads)
            {
                // Disposed in reverse: the sidecar stops first (it deregisters and drains), then the app.
                _processes.Add(ratings.App);
                _sidecars[ratings.Workload.Instance] = ratings.Sidecar;
            }

            return AddWorkload(ratings.Workload);
        });
    }

    private async Task WaitReadyAsync(WorkloadProcess workload, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                // A sidecar says on its admin port (outside the mesh) when it is synced, certified and its app answers.
                using var request = _sidecars.TryGetValue(workload.Instance, out var sidecar)
                    ? new HttpRequestMessage(HttpMethod.Get, new Uri(sidecar.Admin, "/healthz/ready"))
                    : StatsRequest(workload, "/healthz/ready");
                using var response = await (sidecar is null ? _mtls[workload.Instance] : _http).SendAsync(request, cancellationToken).ConfigureAwait(false);
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (deadline.Elapsed > MeshProcesses.StartTimeout || workload.Process.HasExited)
            {
                throw new TimeoutException($"{workload.Instance} did not become ready. Its output:\n{workload.Process.Output}");
            }

            await Task.Delay(200, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task DriveTrafficAsync(WorkloadProcess frontend, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1.0 / options.RequestsPerSecond));
        var inFlight = new List<Task>();
        var sent = 0L;
        while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
        {
            inFlight.RemoveAll(t => t.IsCompleted);
            if (inFlight.Count < 64)
            {
                // One user in ten is a beta user: the A/B route sends them to orders v2 whatever the split.
                inFlight.Add(CallFrontendAsync(frontend, beta: sent++ % 10 == 9, cancellationToken));
            }
        }
    }

    private async Task CallFrontendAsync(WorkloadProcess frontend, bool beta, CancellationToken cancellationToken)
    {
        try
        {
            using var request = StatsRequest(frontend, "/");
            if (beta)
            {
                request.Headers.Add("x-demo-user", "beta");
            }

            using var response = await _mtls[frontend.Instance].SendAsync(request, cancellationToken).ConfigureAwait(false);
            var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            Summary.Record(response.IsSuccessStatusCode, response.IsSuccessStatusCode ? null : $"{(int)response.StatusCode}: {body}");
            if (response.IsSuccessStatusCode && OrdersInstance(body) is { } orders)
            {
                Versions.Record(beta, orders);
            }
        }
        catch (HttpRequestException e)
        {
            Summary.Record(false, e.Message);
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            Summary.Record(false, "frontend did not answer within 10 s");
        }
    }

    private async Task<string> RenderAsync(CancellationToken cancellationToken)
    {
        var registered = await ReadRegisteredEndpointsAsync(cancellationToken).ConfigureAwait(false);
        var stats = new List<(WorkloadProcess Workload, StatsSnapshot? Stats)>();
        foreach (var workload in _workloads)
        {
            stats.Add((workload, await ReadStatsAsync(workload, cancellationToken).ConfigureAwait(false)));
        }

        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"Mesh demo  ·  up {_uptime.Elapsed:mm\\:ss}  ·  control plane {_controlPlane!.SecureAddress}  admin {_controlPlane.AdminAddress}debug/config_dump");
        text.AppendLine("frontend --HTTP/mTLS--> orders v1|v2 --gRPC/mTLS--> inventory   STRICT mTLS mesh-wide · DENY DELETE frontend→orders   (Ctrl+C stops)");
        text.AppendLine(_ratingsLeftOut is null
            ? "frontend --HTTP/mTLS--> ratings (python3 + mesh-sidecar) --HTTP/mTLS--> orders   ALLOW only frontend→ratings"
            : $"ratings (python3 + mesh-sidecar): {_ratingsLeftOut}");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"{"service",-10} {"identity (presented over mTLS)",-45} {"inst.",5} {"requests",9} {"errors",7} {"denied",7}  split across instances");
        foreach (var service in ServiceOrder)
        {
            var rows = stats.Where(s => s.Workload.Service == service).ToList();
            var requests = rows.Sum(r => r.Stats?.Requests ?? 0);
            var errors = rows.Sum(r => r.Stats?.Errors ?? 0);
            var denied = rows.Sum(r => r.Stats?.Denied ?? 0);
            var identity = rows.Select(r => _identities.GetValueOrDefault(r.Workload.Instance)).FirstOrDefault(i => i is not null) ?? "?";
            var instances = registered.TryGetValue(service, out var count) ? count.ToString(CultureInfo.InvariantCulture) : "?";
            var split = string.Join("  ", rows.Select(r =>
                r.Stats is null
                    ? $"{r.Workload.Instance} (down)"
                    : $"{r.Workload.Instance} {r.Stats.Requests,6} ({Percent(r.Stats.Requests, requests)})"));
            text.AppendLine(CultureInfo.InvariantCulture, $"{service,-10} {identity,-45} {instances,5} {requests,9} {errors,7} {denied,7}  {split}");
        }

        text.AppendLine();
        var window = Versions.Read();
        text.AppendLine(CultureInfo.InvariantCulture, $"orders by version, last {Versions.Length.TotalSeconds:0} s:  everyone {VersionShares(window.Everyone)}  ·  beta users (x-demo-user: beta) {VersionShares(window.Beta)}");
        var configFlag = _configDirectory == OrdersRoutes.ConfigDirectory() ? string.Empty : $" --config {_configDirectory}";
        text.AppendLine(CultureInfo.InvariantCulture, $"routes: {Path.Combine(_configDirectory, OrdersRoutes.FileName)}  ·  change the split live: dotnet run --project samples/Mesh.Demo -- split <v2 %>{configFlag}");
        text.AppendLine();
        text.AppendLine(CultureInfo.InvariantCulture, $"metrics: https://<instance>/metrics over mTLS, sidecars' admin /stats/prometheus, control plane {_controlPlane.AdminAddress}metrics  ·  Prometheus config: {_scrapeConfig}");
        text.AppendLine(CultureInfo.InvariantCulture, $"traffic driver: {Summary.Sent} sent, {Summary.Succeeded} ok, {Summary.Failed} failed, target {options.RequestsPerSecond} rps");
        if (Summary.LastError is { } error)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"last error: {error}");
        }

        return text.ToString();
    }

    private static string VersionShares(IReadOnlyDictionary<string, long> counts)
    {
        var total = counts.Values.Sum();
        return total == 0
            ? "-"
            : string.Join("  ", counts.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key} {c.Value,5} ({Percent(c.Value, total),4})"));
    }

    private static string? OrdersInstance(string body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            return json.RootElement.TryGetProperty("orders", out var orders) ? orders.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string Percent(long part, long total) =>
        total == 0 ? "-" : (100.0 * part / total).ToString("0", CultureInfo.InvariantCulture) + "%";

    private async Task<Dictionary<string, int>> ReadRegisteredEndpointsAsync(CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        try
        {
            using var dump = JsonDocument.Parse(await _http.GetStringAsync(new Uri(_controlPlane!.AdminAddress, "/debug/config_dump"), cancellationToken).ConfigureAwait(false));
            foreach (var service in dump.RootElement.GetProperty("services").EnumerateArray())
            {
                var host = service.GetProperty("host").GetString() ?? string.Empty;
                var shortName = host.Split('.')[0];
                result[shortName] = service.GetProperty("endpoints").GetArrayLength();
            }
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
        {
            // The table shows "?" for instances while the control plane is away.
        }

        return result;
    }

    private async Task<StatsSnapshot?> ReadStatsAsync(WorkloadProcess workload, CancellationToken cancellationToken)
    {
        if (workload.Process.HasExited)
        {
            return null;
        }

        try
        {
            using var request = StatsRequest(workload, "/_stats");
            using var response = await _mtls[workload.Instance].SendAsync(request, cancellationToken).ConfigureAwait(false);
            return await response.Content.ReadFromJsonAsync<StatsSnapshot>(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or JsonException or TaskCanceledException)
        {
            return null;
        }
    }

    private static HttpRequestMessage StatsRequest(WorkloadProcess workload, string path) =>
        new(HttpMethod.Get, new UriBuilder(workload.Address) { Scheme = "https", Path = path }.Uri)
        {
            // Over mTLS (the mesh is STRICT); inventory speaks HTTP/2 only.
            Version = workload.Service == "inventory" ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
}

internal sealed class TrafficSummary
{
    private long _sent;
    private long _succeeded;
    private long _failed;

    public long Sent => Interlocked.Read(ref _sent);

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public long Failed => Interlocked.Read(ref _failed);

    public string? LastError { get; private set; }

    public void Record(bool success, string? error)
    {
        Interlocked.Increment(ref _sent);
        if (success)
        {
            Interlocked.Increment(ref _succeeded);
        }
        else
        {
            Interlocked.Increment(ref _failed);
            LastError = error;
        }
    }
}

/// <summary>Which orders version answered, per kind of user, over a sliding window (so a split change shows within seconds).</summary>
internal sealed class VersionWindow(TimeSpan length)
{
    private readonly Queue<(long Timestamp, bool Beta, string Version)> _answers = new();
    private readonly long _length = (long)(length.TotalSeconds * Stopwatch.Frequency);

    public TimeSpan Length => length;

    public void Record(bool beta, string ordersInstance)
    {
        // Instances are named orders-<version>.
        var version = ordersInstance.StartsWith("orders-", StringComparison.Ordinal) ? ordersInstance["orders-".Length..] : ordersInstance;
        lock (_answers)
        {
            _answers.Enqueue((Stopwatch.GetTimestamp(), beta, version));
            Trim();
        }
    }

    public (Dictionary<string, long> Everyone, Dictionary<string, long> Beta) Read()
    {
        var everyone = new Dictionary<string, long>(StringComparer.Ordinal);
        var beta = new Dictionary<string, long>(StringComparer.Ordinal);
        lock (_answers)
        {
            Trim();
            foreach (var answer in _answers)
            {
                var counts = answer.Beta ? beta : everyone;
                counts[answer.Version] = counts.GetValueOrDefault(answer.Version) + 1;
            }
        }

        return (everyone, beta);
    }

    private void Trim()
    {
        var oldest = Stopwatch.GetTimestamp() - _length;
        while (_answers.Count > 0 && _answers.Peek().Timestamp < oldest)
        {
            _answers.Dequeue();
        }
    }
}
