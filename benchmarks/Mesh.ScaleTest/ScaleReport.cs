using System.Globalization;

namespace Mesh.ScaleTest;

/// <summary>The markdown table docs/performance.md records ("Control-plane scale"): one row per size.</summary>
internal static class ScaleReport
{
    public const string Header = """
        | mode | services × endpoints | clients | cold sync p50 / p99 / max (s) | not synced | change → client p50 / p99 / max (ms) | missed / subscribers | bytes per change: total / per client | changed assignment × subscribers | ratio | control-plane RSS synced / peak (MB) | control-plane CPU sync / changes (s) | restart: resynced after the kill p50 / p99 / max (s), not resynced |
        |---|---|---:|---|---:|---|---:|---|---:|---:|---|---|---|
        """;

    public static string Row(ScaleResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var latencies = result.Changes.SelectMany(c => c.LatenciesMs).ToList();
        var subscribers = result.Changes.Sum(c => c.Subscribers);
        var missed = subscribers - latencies.Count;
        var changes = Math.Max(1, result.Changes.Count);
        var bytes = result.Changes.Sum(c => c.Bytes) / (double)changes;
        var ideal = result.Changes.Sum(c => (double)c.ResourceBytes * c.Subscribers) / changes;
        var mode = ScaleSettings.ModeName(result.Mode) + (result.Mode is ClientMode.SotwOnDemand or ClientMode.DeltaOnDemand ? $" (S={result.Subscribe})" : string.Empty);
        var restart = result.ResyncSeconds is null ? "not run" : $"{Triple(result.ResyncSeconds, "0.0")}, {result.NotResynced}";
        return string.Create(CultureInfo.InvariantCulture,
            $"| {mode} | {result.Size.Services:N0} × {result.Size.Endpoints} | {result.Size.Clients:N0} | {Triple(result.SyncSeconds, "0.0")} | {result.NotSynced} | "
            + $"{(result.Changes.Count == 0 ? "–" : Triple(latencies, "0"))} | {(result.Changes.Count == 0 ? "–" : $"{missed} / {subscribers}")} | "
            + $"{(result.Changes.Count == 0 ? "–" : $"{Size(bytes)} / {Size(bytes / result.Size.Clients)}")} | {(result.Changes.Count == 0 ? "–" : Size(ideal))} | {(ideal > 0 ? (bytes / ideal).ToString("0.0×", CultureInfo.InvariantCulture) : "–")} | "
            + $"{Mb(result.RssSynced)} / {Mb(Math.Max(result.RssPeakSync, Math.Max(result.RssPeakChanges, result.RssPeakRestart)))} | {result.CpuSync.TotalSeconds:0.0} / {result.CpuChanges.TotalSeconds:0.0} | {restart} |");
    }

    /// <summary>Nearest-rank percentile of <paramref name="values"/> (0–100).</summary>
    public static double Percentile(IReadOnlyCollection<double> values, double percentile)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(percentile / 100 * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }

    private static string Triple(IReadOnlyCollection<double> values, string format) => values.Count == 0
        ? "none"
        : string.Join(" / ", new[] { Percentile(values, 50), Percentile(values, 99), values.Max() }.Select(v => v.ToString(format, CultureInfo.InvariantCulture)));

    private static string Size(double bytes) => bytes switch
    {
        >= 1024 * 1024 => (bytes / (1024 * 1024)).ToString("0.0 'MB'", CultureInfo.InvariantCulture),
        >= 1024 => (bytes / 1024).ToString("0.0 'kB'", CultureInfo.InvariantCulture),
        _ => bytes.ToString("0 'B'", CultureInfo.InvariantCulture),
    };

    private static long Mb(long bytes) => bytes / (1024 * 1024);
}
