using System.Globalization;

namespace Mesh.LoadTest;

/// <summary>The tables of the <c>--sidecar</c> run: throughput, latency and CPU per request of each hop, the proxies' memory.</summary>
internal static class SidecarReport
{
    private const double Target = 1.5;
    private const double Megabyte = 1024 * 1024;

    public static void PrintRuns(LoadCase[] cases, LoadSettings settings)
    {
        Console.WriteLine();
        Console.WriteLine($"Closed loop, {settings.Concurrency} workers:");
        PrintTable(cases, c => c.Results);
        var closed = CpuRatio(cases, c => c.Results);
        double[]? open = null;
        if (settings.Rate > 0)
        {
            Console.WriteLine();
            Console.WriteLine($"Open loop at {settings.Rate} requests/s (latency from each request's intended send time):");
            PrintTable(cases, c => c.RateResults);
            open = CpuRatio(cases, c => c.RateResults);
        }

        if (closed is null)
        {
            return;
        }

        Console.WriteLine();
        var atRate = open is null ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"; at {settings.Rate} req/s {open[0]:0.00} (medians), {open[1]:0.00} (median of per-rep ratios)");
        var met = closed.Concat(open ?? []).All(r => r <= Target) ? "met" : "NOT met";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Sidecar CPU per request ÷ nginx's: closed loop {closed[0]:0.00} (medians), {closed[1]:0.00} (median of per-rep ratios){atRate}. Target ≤ {Target:0.0}×: {met}."));
    }

    /// <param name="idleCpu">Each proxy's CPU ms per second with no traffic, measured after the reps.</param>
    public static void PrintMemory(LoadCase[] cases, IReadOnlyDictionary<string, long> idleRss, IReadOnlyDictionary<string, double> idleCpu)
    {
        Console.WriteLine();
        Console.WriteLine("| proxy | RSS MB, started and idle | RSS MB under load, closed loop (largest sample) | RSS MB under load, open loop (largest sample) | CPU idle after the load, ms per s |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (var loadCase in cases.Where(c => c.Proxy is not null))
        {
            static string Largest(List<LoadResult> results) => results.Count == 0 ? "–" : (results.Max(r => r.ProxyRssBytes ?? 0) / Megabyte).ToString("0.0", CultureInfo.InvariantCulture);
            var name = loadCase.Proxy!.Name;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {idleRss[name] / Megabyte:0.0} | {Largest(loadCase.Results)} | {Largest(loadCase.RateResults)} | {idleCpu[name]:0.0} |"));
        }
    }

    /// <summary>
    /// Opens <paramref name="count"/> idle keep-alive connections to nginx, then to the sidecar's outbound port, then to
    /// its inbound port (mTLS, with <paramref name="createMtlsClient"/>), and prints each proxy's RSS and open files
    /// with them held.
    /// </summary>
    public static async Task MeasureIdleConnectionsAsync(int count, NginxProxy? nginx, SidecarProxy? sidecar, Func<HttpClient> createMtlsClient)
    {
        Console.WriteLine();
        Console.WriteLine($"{count} idle keep-alive connections (each made one request, then held):");
        Console.WriteLine("| proxy | connections held | failed | open files | RSS MB | RSS MB before | KB per connection |");
        Console.WriteLine("|---|---|---:|---:|---:|---:|---:|");

        async Task<IdleConnections> HoldAsync(ProcessProbe probe, string what, Uri address, string? host, Func<HttpClient> createClient)
        {
            var rssBefore = probe.RssBytes();
            var idle = await IdleConnections.OpenAsync(address, host, count, createClient).ConfigureAwait(false);
            var rss = probe.RssBytes();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {probe.Name} | {what} | {idle.Failed} | {probe.OpenFiles()} | {rss / Megabyte:0.0} | {rssBefore / Megabyte:0.0} | {(rss - rssBefore) / 1024.0 / count:0.0} |"));
            return idle;
        }

        if (nginx is not null)
        {
            using var toNginx = await HoldAsync(nginx.Probe, $"{count} to its port", nginx.Address, null, IdleConnections.PlainClient).ConfigureAwait(false);
        }

        if (sidecar is not null)
        {
            using var outbound = await HoldAsync(sidecar.Probe, $"{count} to the outbound port", sidecar.Outbound, "backend", IdleConnections.PlainClient).ConfigureAwait(false);
            using var inbound = await HoldAsync(sidecar.Probe, $"+ {count} to the inbound port (mTLS)", sidecar.Inbound, null, createMtlsClient).ConfigureAwait(false);
        }
    }

    private static void PrintTable(LoadCase[] cases, Func<LoadCase, List<LoadResult>> resultsOf)
    {
        double Median(LoadCase loadCase, Func<LoadResult, double> selector) => LoadCase.Median(resultsOf(loadCase), selector);
        string MedianOrDash(LoadCase loadCase, Func<LoadResult, double?> selector) =>
            resultsOf(loadCase).Any(r => selector(r) is null) ? "–" : Median(loadCase, r => selector(r)!.Value).ToString("0.0", CultureInfo.InvariantCulture);

        var openLoop = resultsOf(cases[0]).FirstOrDefault()?.SenderLag is not null;
        Console.WriteLine($"| path | requests/s (median) | × direct (median of per-rep ratios) | p50 ms | p99 ms | proxy CPU µs/req | client CPU µs/req | backend CPU µs/req | client + proxy + backend µs/req | proxy RSS MB (largest) | failed |{(openLoop ? " sender lag p50 / p99 ms |" : string.Empty)}");
        Console.WriteLine($"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{(openLoop ? "---:|" : string.Empty)}");
        foreach (var loadCase in cases)
        {
            var results = resultsOf(loadCase);
            var direct = resultsOf(cases[0]);
            var ratios = results.Select((r, i) => r.RequestsPerSecond / direct[i].RequestsPerSecond).Order().ToArray();
            var total = Median(loadCase, r => r.CpuMicrosecondsPerRequest + (r.ProxyCpuMicrosecondsPerRequest ?? 0) + (r.BackendCpuMicrosecondsPerRequest ?? 0));
            var rss = loadCase.Proxy is null ? "–" : (results.Max(r => r.ProxyRssBytes ?? 0) / Megabyte).ToString("0.0", CultureInfo.InvariantCulture);
            var lag = openLoop ? string.Create(CultureInfo.InvariantCulture, $" {Median(loadCase, r => r.SenderLag!.Value.P50Ms):0.000} / {Median(loadCase, r => r.SenderLag!.Value.P99Ms):0.000} |") : string.Empty;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {loadCase.Name} | {Median(loadCase, r => r.RequestsPerSecond):0} | {ratios[ratios.Length / 2]:0.00} | {Median(loadCase, r => r.P50Ms):0.000} | {Median(loadCase, r => r.P99Ms):0.000} | {MedianOrDash(loadCase, r => r.ProxyCpuMicrosecondsPerRequest)} | {Median(loadCase, r => r.CpuMicrosecondsPerRequest):0.0} | {MedianOrDash(loadCase, r => r.BackendCpuMicrosecondsPerRequest)} | {total:0.0} | {rss} | {results.Sum(r => r.Failed)} |{lag}"));
        }
    }

    /// <summary>The sidecar's proxy CPU per request over nginx's: [ratio of the medians, median of the per-rep ratios]; null without both.</summary>
    private static double[]? CpuRatio(LoadCase[] cases, Func<LoadCase, List<LoadResult>> resultsOf)
    {
        var nginx = cases.FirstOrDefault(c => c.Proxy?.Name == "nginx");
        var sidecar = cases.FirstOrDefault(c => c.Proxy?.Name == "sidecar");
        if (nginx is null || sidecar is null || resultsOf(nginx).Count == 0)
        {
            return null;
        }

        static double Cpu(LoadResult r) => r.ProxyCpuMicrosecondsPerRequest!.Value;
        var perRep = resultsOf(sidecar).Select((r, i) => Cpu(r) / Cpu(resultsOf(nginx)[i])).Order().ToArray();
        return [LoadCase.Median(resultsOf(sidecar), Cpu) / LoadCase.Median(resultsOf(nginx), Cpu), perRep[perRep.Length / 2]];
    }
}
