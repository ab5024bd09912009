using System.Diagnostics;
using System.Globalization;

namespace Mesh.LoadTest;

internal sealed record LoadSettings(int Seconds, int Reps, int Concurrency, int WarmupSeconds, bool Mtls, bool Grpc, bool Telemetry, string? Only)
{
    public static LoadSettings Parse(string[] args)
    {
        int Get(string name, int fallback)
        {
            var index = Array.IndexOf(args, name);
            return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
        }

        var only = Array.IndexOf(args, "--only");
        return new LoadSettings(Get("--seconds", 10), Get("--reps", 5), Get("--concurrency", 64), Get("--warmup", 10), args.Contains("--mtls"), args.Contains("--grpc"), args.Contains("--telemetry"), only >= 0 && only + 1 < args.Length ? args[only + 1] : null);
    }
}

internal sealed record LoadResult(long Requests, long Failed, double RequestsPerSecond, double P50Ms, double P99Ms, double CpuMicrosecondsPerRequest, double BytesAllocatedPerRequest, long Handshakes)
{
    /// <summary>Gets the TLS handshakes per 10,000 requests during the run (0 for plaintext cases).</summary>
    public double HandshakesPer10k => Requests == 0 ? 0 : Handshakes * 10_000.0 / Requests;

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{RequestsPerSecond,8:0} req/s  p50 {P50Ms:0.000} ms  p99 {P99Ms:0.000} ms  CPU {CpuMicrosecondsPerRequest:0.0} µs/req  {BytesAllocatedPerRequest:0} B/req  handshakes {Handshakes}  failed {Failed}");
}

/// <summary>One client under closed-loop load: <c>concurrency</c> workers, each sending the next request when the last answered.</summary>
/// <param name="handshakes">Reads the client's running count of TLS handshakes, when it does TLS.</param>
/// <param name="call">One request: true when it succeeded; a thrown HttpRequestException or RpcException counts as a failure.</param>
internal sealed class LoadCase(string name, Func<Task<bool>> call, Func<long>? handshakes = null)
{
    public LoadCase(string name, HttpClient client, Func<long>? handshakes = null)
        : this(name, () => GetAsync(client), handshakes)
    {
    }

    private const int MaxSamplesPerWorker = 1 << 16;

    private long[][]? _samples;

    public string Name { get; } = name;

    public List<LoadResult> Results { get; } = [];

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

        var result = await RunAsync(call, concurrency, duration, handshakes, _samples).ConfigureAwait(false);
        TotalRequests += result.Requests;
        TotalHandshakes += result.Handshakes;
        return result;
    }

    public double Median(Func<LoadResult, double> selector)
    {
        var values = Results.Select(selector).Order().ToArray();
        return values.Length == 0 ? 0 : values[values.Length / 2];
    }

    private static async Task<bool> GetAsync(HttpClient client)
    {
        using var response = await client.GetAsync(string.Empty, HttpCompletionOption.ResponseContentRead).ConfigureAwait(false);
        return response.IsSuccessStatusCode;
    }

    private static async Task<LoadResult> RunAsync(Func<Task<bool>> call, int concurrency, TimeSpan duration, Func<long>? handshakes, long[][] samples)
    {
        var handshakesBefore = handshakes?.Invoke() ?? 0;
        var counts = new int[concurrency];
        long failed = 0;
        var process = Process.GetCurrentProcess();
        process.Refresh();
        var cpuBefore = process.TotalProcessorTime;
        var allocatedBefore = GC.GetTotalAllocatedBytes(precise: false);
        var clock = Stopwatch.StartNew();
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
                catch (Exception e) when (e is HttpRequestException or global::Grpc.Core.RpcException)
                {
                    Interlocked.Increment(ref failed);
                }

                latencies[count++] = Stopwatch.GetTimestamp() - start;
            }

            counts[worker] = count;
        })).ToArray();
        await Task.WhenAll(workers).ConfigureAwait(false);
        var elapsed = clock.Elapsed;
        process.Refresh();
        var cpu = process.TotalProcessorTime - cpuBefore;
        var allocated = GC.GetTotalAllocatedBytes(precise: false) - allocatedBefore;
        var handshakesDuring = (handshakes?.Invoke() ?? 0) - handshakesBefore;

        var all = new long[counts.Sum()];
        var offset = 0;
        for (var i = 0; i < concurrency; i++)
        {
            Array.Copy(samples[i], 0, all, offset, counts[i]);
            offset += counts[i];
        }

        Array.Sort(all);
        double Percentile(double p) => all.Length == 0 ? 0 : all[Math.Min(all.Length - 1, (int)(all.Length * p))] * 1000.0 / Stopwatch.Frequency;
        return new LoadResult(all.Length, failed, all.Length / elapsed.TotalSeconds, Percentile(0.50), Percentile(0.99), all.Length == 0 ? 0 : cpu.TotalMicroseconds / all.Length, all.Length == 0 ? 0 : (double)allocated / all.Length, handshakesDuring);
    }
}

