using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace Mesh.LoadTest;

/// <param name="Rate">Requests per second of the open-loop pass run after each rep's closed-loop pass; 0: none.</param>
/// <param name="Sidecar">The proxy comparison: nginx hop vs Mesh.Sidecar hop vs the proxyless mesh client.</param>
/// <param name="NginxWorkers">nginx's worker_processes in the proxy comparison.</param>
/// <param name="IdleConnections">Idle keep-alive connections opened to each proxy port after the reps (0: skip).</param>
/// <param name="SidecarEnvironment">
/// <c>--sidecar-env KEY=VALUE</c> (repeatable): environment of the sidecar process only, for experiments and profiling
/// (<c>DOTNET_gcServer=0</c>, <c>DOTNET_PerfMapEnabled=1</c>, <c>Logging__LogLevel__Default=Information</c>).
/// </param>
internal sealed record LoadSettings(int Seconds, int Reps, int Concurrency, int WarmupSeconds, bool Mtls, bool Grpc, bool Telemetry, string? Only, int Rate, bool Sidecar, int NginxWorkers, int IdleConnections, IReadOnlyDictionary<string, string> SidecarEnvironment)
{
    public static LoadSettings Parse(string[] args)
    {
        int Get(string name, int fallback)
        {
            var index = Array.IndexOf(args, name);
            return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
        }

        var only = Array.IndexOf(args, "--only");
        var sidecar = args.Contains("--sidecar");
        var settings = new LoadSettings(
            Get("--seconds", 10), Get("--reps", 5), Get("--concurrency", 64), Get("--warmup", 10), args.Contains("--mtls"), args.Contains("--grpc"), args.Contains("--telemetry"), only >= 0 && only + 1 < args.Length ? args[only + 1] : null,
            Get("--rate", sidecar ? 1000 : 0), sidecar, Get("--nginx-workers", 2), Get("--idle-connections", 1000), SidecarEnvironmentOf(args));
        if (sidecar && (settings.Mtls || settings.Grpc))
        {
            throw new ArgumentException("--sidecar compares HTTP/1.1 hops to a plaintext backend; it does not combine with --mtls or --grpc.");
        }

        if (settings.Rate < 0 || settings.NginxWorkers is < 1 or > 64 || settings.IdleConnections is < 0 or > 10_000)
        {
            throw new ArgumentException("--rate must be ≥ 0, --nginx-workers 1–64 and --idle-connections 0–10000.");
        }

        return settings;
    }

    private static Dictionary<string, string> SidecarEnvironmentOf(string[] args)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < args.Length; i++)
        {
            if (args[i] != "--sidecar-env")
            {
                continue;
            }

            var separator = args[i + 1].IndexOf('=', StringComparison.Ordinal);
            if (separator <= 0)
            {
                throw new ArgumentException($"--sidecar-env takes KEY=VALUE, not '{args[i + 1]}'.");
            }

            environment[args[i + 1][..separator]] = args[i + 1][(separator + 1)..];
        }

        return environment;
    }

    /// <summary>Gets whether <c>--only</c> keeps the case of this name (any case, without <c>--only</c>).</summary>
    public bool Selects(string caseName) => Only is null || Only.Split('|').Any(o => caseName.Contains(o, StringComparison.OrdinalIgnoreCase));
}

internal sealed record LoadResult(long Requests, long Failed, double RequestsPerSecond, double P50Ms, double P99Ms, double CpuMicrosecondsPerRequest, double BytesAllocatedPerRequest, long Handshakes)
{
    /// <summary>Gets the proxy's CPU µs per request (its process, or nginx's master and workers), when the case has a proxy.</summary>
    public double? ProxyCpuMicrosecondsPerRequest { get; init; }

    /// <summary>Gets the backend process's CPU µs per request, when the run watches it.</summary>
    public double? BackendCpuMicrosecondsPerRequest { get; init; }

    /// <summary>Gets the proxy's largest resident set size sampled during the run (every 250 ms).</summary>
    public long? ProxyRssBytes { get; init; }

    /// <summary>
    /// Gets the open loop's sender lag (actual send time − intended send time), median and 99th percentile in ms: the part
    /// of the latency the sender's own timer added (it sleeps about a millisecond between sends).
    /// </summary>
    public (double P50Ms, double P99Ms)? SenderLag { get; init; }

    /// <summary>Gets the TLS handshakes per 10,000 requests during the run (0 for plaintext cases).</summary>
    public double HandshakesPer10k => Requests == 0 ? 0 : Handshakes * 10_000.0 / Requests;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{RequestsPerSecond,8:0} req/s  p50 {P50Ms:0.000} ms  p99 {P99Ms:0.000} ms  CPU {CpuMicrosecondsPerRequest:0.0} µs/req  {BytesAllocatedPerRequest:0} B/req  handshakes {Handshakes}  failed {Failed}")
        + (ProxyCpuMicrosecondsPerRequest is { } proxy ? string.Create(CultureInfo.InvariantCulture, $"  proxy CPU {proxy:0.0} µs/req  proxy RSS {ProxyRssBytes / 1048576.0:0.0} MB") : string.Empty)
        + (BackendCpuMicrosecondsPerRequest is { } backend ? string.Create(CultureInfo.InvariantCulture, $"  backend CPU {backend:0.0} µs/req") : string.Empty)
        + (SenderLag is { } lag ? string.Create(CultureInfo.InvariantCulture, $"  sender lag p50 {lag.P50Ms:0.000} p99 {lag.P99Ms:0.000} ms") : string.Empty);
}

/// <summary>
/// One client under load, closed loop (<c>concurrency</c> workers, each sending the next request when the last answered)
/// or open loop (<see cref="RunAtRateAsync"/>: requests sent at a fixed rate whatever the answers).
/// </summary>
/// <param name="handshakes">Reads the client's running count of TLS handshakes, when it does TLS.</param>
/// <param name="call">One request: true when it succeeded; a thrown HttpRequestException, RpcException or timeout counts as a failure.</param>
internal sealed partial class LoadCase(string name, Func<Task<bool>> call, Func<long>? handshakes = null)
{
    public LoadCase(string name, HttpClient client, Func<long>? handshakes = null)
        : this(name, () => GetAsync(client), handshakes)
    {
    }

    private const int MaxSamplesPerWorker = 1 << 16;

    private long[][]? _samples;
    private long[]? _rateSamples;
    private long[]? _senderLags;

    public string Name { get; } = name;

    /// <summary>Gets the process between the client and the backend (nginx, the sidecar), whose CPU and RSS each run reads.</summary>
    public ProcessProbe? Proxy { get; init; }

    /// <summary>Gets the backend process, whose CPU each run reads.</summary>
    public ProcessProbe? Backend { get; init; }

    public List<LoadResult> Results { get; } = [];

    /// <summary>Gets the results of the open-loop runs (<see cref="RunAtRateAsync"/>).</summary>
    public List<LoadResult> RateResults { get; } = [];

    /// <summary>Gets the requests of every run of this case, warm-up included.</summary>
    public long TotalRequests { get; private set; }

    /// <summary>Gets the TLS handshakes of every run of this case, warm-up included.</summary>
    public long TotalHandshakes { get; private set; }

    public async Task<LoadResult> RunAsync(int concurrency, TimeSpan duration)
    {
        // Latency buffers are made once per case, before any measurement: a run allocates none (a fresh 32 MB of them per
        // run would be collected during the next runs and bill the case measured then).
        if (_samples is null || _samples.Length != concurrency)
        {
            _samples = Enumerable.Range(0, concurrency).Select(_ => new long[MaxSamplesPerWorker]).ToArray();
        }

        var samples = _samples;
        var result = await MeasureAsync(() => ClosedLoopAsync(call, concurrency, duration, samples)).ConfigureAwait(false);
        TotalRequests += result.Requests;
        TotalHandshakes += result.Handshakes;
        return result;
    }

    /// <summary>
    /// Open loop: <paramref name="rate"/> requests per second for <paramref name="duration"/>, request <c>i</c> due at
    /// <c>i / rate</c> s whether or not earlier ones answered. Latency counts from that intended send time, so a stall
    /// (of the proxy, or of the sender) is charged to every request it delayed (no coordinated omission).
    /// </summary>
    public async Task<LoadResult> RunAtRateAsync(int rate, TimeSpan duration)
    {
        var count = (int)Math.Ceiling(rate * duration.TotalSeconds);
        if (_rateSamples is null || _rateSamples.Length < count)
        {
            _rateSamples = new long[count];
            _senderLags = new long[count];
        }

        var (samples, lags) = (_rateSamples, _senderLags!);
        var result = await MeasureAsync(() => OpenLoopAsync(call, rate, count, samples, lags)).ConfigureAwait(false);
        var sorted = lags[..count];
        Array.Sort(sorted);
        result = result with { SenderLag = (Percentile(sorted, 0.50), Percentile(sorted, 0.99)) };
        TotalRequests += result.Requests;
        TotalHandshakes += result.Handshakes;
        return result;
    }

    public double Median(Func<LoadResult, double> selector) => Median(Results, selector);

    public static double Median(IEnumerable<LoadResult> results, Func<LoadResult, double> selector)
    {
        var values = results.Select(selector).Order().ToArray();
        return values.Length == 0 ? 0 : values[values.Length / 2];
    }

    private static async Task<bool> GetAsync(HttpClient client)
    {
        using var response = await client.GetAsync(string.Empty, HttpCompletionOption.ResponseContentRead).ConfigureAwait(false);
        return response.IsSuccessStatusCode;
    }

    private static bool IsFailure(Exception e) => e is HttpRequestException or global::Grpc.Core.RpcException or TaskCanceledException;

    /// <summary>Runs the load and reads the client's, proxy's and backend's CPU and memory around it.</summary>
    private async Task<LoadResult> MeasureAsync(Func<Task<(long[] Latencies, long Failed)>> load)
    {
        var handshakesBefore = handshakes?.Invoke() ?? 0;
        var process = Process.GetCurrentProcess();
        process.Refresh();
        var cpuBefore = process.TotalProcessorTime;
        var proxyCpuBefore = Proxy?.CpuTime() ?? TimeSpan.Zero;
        var backendCpuBefore = Backend?.CpuTime() ?? TimeSpan.Zero;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);

        // The proxy's RSS under load: the largest of samples taken every 250 ms while the load runs.
        var loading = true;
        long proxyRss = 0;
        var proxy = Proxy;
        var rssSampler = proxy is null ? Task.CompletedTask : Task.Run(async () =>
        {
            while (Volatile.Read(ref loading))
            {
                proxyRss = Math.Max(proxyRss, proxy.RssBytes());
                await Task.Delay(250).ConfigureAwait(false);
            }
        });

        var clock = Stopwatch.StartNew();
        var (all, failed) = await load().ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        process.Refresh();
        var cpu = process.TotalProcessorTime - cpuBefore;
        var proxyCpu = (Proxy?.CpuTime() ?? TimeSpan.Zero) - proxyCpuBefore;
        var backendCpu = (Backend?.CpuTime() ?? TimeSpan.Zero) - backendCpuBefore;
        var allocated = GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore;
        var handshakesDuring = (handshakes?.Invoke() ?? 0) - handshakesBefore;
        Volatile.Write(ref loading, false);
        await rssSampler.ConfigureAwait(false);

        Array.Sort(all);
        double PerRequest(TimeSpan time) => all.Length == 0 ? 0 : time.TotalMicroseconds / all.Length;
        return new LoadResult(all.Length, failed, all.Length / elapsed.TotalSeconds, Percentile(all, 0.50), Percentile(all, 0.99), PerRequest(cpu), all.Length == 0 ? 0 : (double)allocated / all.Length, handshakesDuring)
        {
            ProxyCpuMicrosecondsPerRequest = Proxy is null ? null : PerRequest(proxyCpu),
            ProxyRssBytes = Proxy is null ? null : proxyRss,
            BackendCpuMicrosecondsPerRequest = Backend is null ? null : PerRequest(backendCpu),
        };
    }

    private static void SleepFor(long stopwatchTicks)
    {
        var microseconds = (uint)Math.Clamp(stopwatchTicks * 1_000_000 / Stopwatch.Frequency, 1, 1_000);
        if (!OperatingSystem.IsLinux() || Usleep(microseconds) != 0)
        {
            Thread.Sleep(1);
        }
    }

    [LibraryImport("libc", EntryPoint = "usleep")]
    private static partial int Usleep(uint microseconds);

    /// <summary>Gets the <paramref name="p"/> percentile of sorted Stopwatch durations, in ms.</summary>
    private static double Percentile(long[] sorted, double p) =>
        sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(sorted.Length * p))] * 1000.0 / Stopwatch.Frequency;

    private static async Task<(long[] Latencies, long Failed)> ClosedLoopAsync(Func<Task<bool>> call, int concurrency, TimeSpan duration, long[][] samples)
    {
        var counts = new int[concurrency];
        long failed = 0;
        var stopAt = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var workers = Enumerable.Range(0, concurrency).Select(worker => Task.Run(async () =>
        {
            var latencies = samples[worker];
            var count = 0;
            while (count < MaxSamplesPerWorker)
            {
                var start = Stopwatch.GetTimestamp();
                if (start >= stopAt)
                {
                    break;
                }

                try
                {
                    if (!await call().ConfigureAwait(false))
                    {
                        Interlocked.Increment(ref failed);
                    }
                }
                catch (Exception e) when (IsFailure(e))
                {
                    Interlocked.Increment(ref failed);
                }

                latencies[count++] = Stopwatch.GetTimestamp() - start;
            }

            counts[worker] = count;
        })).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);

        var all = new long[counts.Sum()];
        var offset = 0;
        for (var i = 0; i < concurrency; i++)
        {
            Array.Copy(samples[i], 0, all, offset, counts[i]);
            offset += counts[i];
        }

        return (all, failed);
    }

    private static async Task<(long[] Latencies, long Failed)> OpenLoopAsync(Func<Task<bool>> call, int rate, int count, long[] latencies, long[] lags)
    {
        long failed = 0;
        var calls = new Task[count];
        var interval = (double)Stopwatch.Frequency / rate;

        // The sender is a thread of its own, not a pool thread: it sends every request whose time has come, then sleeps
        // until the next one is due (usleep on Linux: late by the kernel's timer slack, ~50 µs; elsewhere Thread.Sleep's
        // whole milliseconds). A late wake-up delays those requests; their latency shows it, and the sender lag reports
        // how much of it was the sender's.
        await Task.Factory.StartNew(
            () =>
            {
                var start = Stopwatch.GetTimestamp();
                var sent = 0;
                while (sent < count)
                {
                    var due = Math.Min(count, (int)((Stopwatch.GetTimestamp() - start) / interval) + 1);
                    for (; sent < due; sent++)
                    {
                        var intended = start + (long)(sent * interval);
                        lags[sent] = Stopwatch.GetTimestamp() - intended;
                        calls[sent] = SendAsync(sent, intended);
                    }

                    var wait = start + (long)(sent * interval) - Stopwatch.GetTimestamp();
                    if (sent < count && wait > 0)
                    {
                        SleepFor(wait);
                    }
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).ConfigureAwait(false);

        await Task.WhenAll(calls).ConfigureAwait(false);
        return (latencies[..count], failed);

        async Task SendAsync(int index, long intended)
        {
            try
            {
                if (!await call().ConfigureAwait(false))
                {
                    Interlocked.Increment(ref failed);
                }
            }
            catch (Exception e) when (IsFailure(e))
            {
                Interlocked.Increment(ref failed);
            }

            latencies[index] = Stopwatch.GetTimestamp() - intended;
        }
    }
}
