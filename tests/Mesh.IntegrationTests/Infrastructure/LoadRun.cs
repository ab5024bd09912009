using System.Collections.Concurrent;
using System.Diagnostics;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>
/// Steady load from a fixed number of workers, bounded by both a request count and a duration.
/// Records every failure with its message so a failing test says what went wrong.
/// </summary>
internal sealed class LoadRun
{
    private readonly ConcurrentQueue<string> _failures = new();
    private readonly ConcurrentDictionary<string, int> _bodies = new();
    private long _sent;
    private long _succeeded;

    public long Sent => Interlocked.Read(ref _sent);

    public long Succeeded => Interlocked.Read(ref _succeeded);

    public IReadOnlyCollection<string> Failures => _failures;

    /// <summary>Gets how many successful responses carried each body marker (see the selector given to RunAsync).</summary>
    public IReadOnlyDictionary<string, int> Markers => _bodies;

    /// <summary>Starts a load run; <see cref="Succeeded"/> and <see cref="Failures"/> can be watched while it runs.</summary>
    public static LoadRun Start(
        HttpClient client,
        string path,
        int workers,
        TimeSpan duration,
        long maxRequests,
        Func<string, string?>? marker,
        out Task<LoadRun> completion,
        CancellationToken stop = default)
    {
        var run = new LoadRun();
        completion = run.RunCoreAsync(client, path, workers, duration, maxRequests, marker, stop);
        return run;
    }

    public static Task<LoadRun> RunAsync(
        HttpClient client,
        string path,
        int workers,
        TimeSpan duration,
        long maxRequests,
        Func<string, string?>? marker = null,
        CancellationToken stop = default) =>
        new LoadRun().RunCoreAsync(client, path, workers, duration, maxRequests, marker, stop);

    private async Task<LoadRun> RunCoreAsync(
        HttpClient client,
        string path,
        int workers,
        TimeSpan duration,
        long maxRequests,
        Func<string, string?>? marker = null,
        CancellationToken stop = default)
    {
        var run = this;
        var clock = Stopwatch.StartNew();
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(stop);
        limit.CancelAfter(duration);
        var tasks = Enumerable.Range(0, workers).Select(_ => Task.Run(async () =>
        {
            while (!limit.IsCancellationRequested && Interlocked.Increment(ref run._sent) <= maxRequests)
            {
                try
                {
                    using var response = await client.GetAsync(path, CancellationToken.None);
                    var body = await response.Content.ReadAsStringAsync(CancellationToken.None);
                    if (response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref run._succeeded);
                        if (marker?.Invoke(body) is { } key)
                        {
                            run._bodies.AddOrUpdate(key, 1, static (_, n) => n + 1);
                        }
                    }
                    else
                    {
                        run._failures.Enqueue($"{clock.Elapsed.TotalSeconds:0.00}s: HTTP {(int)response.StatusCode}: {body}");
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    run._failures.Enqueue($"{clock.Elapsed.TotalSeconds:0.00}s: {e.GetType().Name}: {e.Message}");
                }
            }
        })).ToArray();
        await Task.WhenAll(tasks);

        // A worker that incremented past the limit did not send: count what was really sent.
        Interlocked.Exchange(ref run._sent, run.Succeeded + run._failures.Count);
        return run;
    }

    public override string ToString() =>
        $"{Sent} sent, {Succeeded} succeeded, {Failures.Count} failed{(Failures.Count > 0 ? ":\n  " + string.Join("\n  ", Failures.Take(10)) : string.Empty)}";
}
