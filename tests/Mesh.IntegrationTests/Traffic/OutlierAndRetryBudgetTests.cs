using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Mesh.IntegrationTests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// DestinationRule outlierDetection and the retry budget, from the control plane's YAML folder to a real Mesh client
/// (HttpClient path) against three real Kestrel backends whose failures the test switches on and off.
/// </summary>
public sealed class OutlierAndRetryBudgetTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan BaseEjection = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task OneInstanceAlways500_IdempotentCallsSucceed_ItIsEjectedWithinTheInterval_AndReadmittedAfterItRecovers()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var bad = await Backend.StartAsync("bad");
        await using var good1 = await Backend.StartAsync("good1");
        await using var good2 = await Backend.StartAsync("good2");
        await WriteConfigAsync(mesh, [bad, good1, good2], """
            outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 50}
            """);
        using var host = await StartClientAsync(mesh, configure: null);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await WaitForPolicyAsync(client, bad);

        // Phase 1: the bad instance answers 500 to everything, for several ejection periods (each re-admission costs it
        // another streak of failures, retried on another instance, and a longer ejection).
        var phase = TimeSpan.FromSeconds(8);
        bad.Status = 500;
        bad.ResetCounts();
        var started = Stopwatch.StartNew();
        int ok = 0, Requests = 0;
        // It ends with the instance ejected (each streak is 3 failures, one request at a time), so phase 2 measures a
        // re-admission rather than an instance that happened to be back in rotation.
        while (Requests < 3000 || started.Elapsed < phase || bad.Hits % 3 != 0)
        {
            using var response = await client.GetAsync(new Uri("http://flaky/items"));
            ok += response.IsSuccessStatusCode ? 1 : 0;
            Requests++;
        }

        var elapsed = started.Elapsed;
        var success = ok / (double)Requests;
        var firstEjection = bad.FirstHitToEjection();
        output.WriteLine($"phase 1: {ok}/{Requests} succeeded ({success:P2}) in {elapsed.TotalSeconds:0.0} s; the failing instance got {bad.Hits} attempts (streaks at {bad.FailureStreaks()}), the first ejection came {firstEjection.TotalMilliseconds:0} ms after its first 500");
        Assert.True(success >= 0.999, $"success {success:P2} < 99.9 %");
        Assert.True(firstEjection < Interval, $"ejected {firstEjection.TotalMilliseconds:0} ms after the first failure, not within interval {Interval.TotalSeconds} s");

        // At most a few re-admissions in the run (each ejection lasts longer): far fewer attempts than its third of the load.
        Assert.True(bad.Hits < Requests / 10, $"the failing instance still got {bad.Hits} of {Requests} attempts");

        // Phase 2: it recovers; the next sweep after its ejection ends lets it back in.
        bad.Status = 200;
        var recovered = Stopwatch.StartNew();
        var hitsBefore = bad.Hits;
        await Eventually.HoldsAsync(
            async () =>
            {
                using var response = await client.GetAsync(new Uri("http://flaky/items"));
                return bad.Hits > hitsBefore;
            },
            "the recovered instance to be re-admitted",
            TimeSpan.FromSeconds(120));
        output.WriteLine($"phase 2: the recovered instance was re-admitted {recovered.Elapsed.TotalSeconds:0.0} s after it recovered");
        Console.WriteLine($"[outlier] one of three answers 500: {success:P2} of {Requests} GETs succeeded; ejected {firstEjection.TotalMilliseconds:0} ms after its first 500 (interval {Interval.TotalSeconds:0} s); re-admitted {recovered.Elapsed.TotalSeconds:0.0} s after recovering");

        // Once back, it takes its share again (round robin over three).
        bad.ResetCounts();
        for (var i = 0; i < 300; i++)
        {
            using var response = await client.GetAsync(new Uri("http://flaky/items"));
            Assert.True(response.IsSuccessStatusCode);
        }

        Assert.InRange(bad.Hits, 60, 140);
    }

    [Fact]
    public async Task TotalOutage_AttemptsStayWithinTheRetryBudget_AndPostWithoutIdempotencyKeyIsNeverRetried()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var backends = new[] { await Backend.StartAsync("a"), await Backend.StartAsync("b"), await Backend.StartAsync("c") };
        try
        {
            // Outlier detection off, so that every request reaches a server and the budget alone bounds the retries.
            await WriteConfigAsync(mesh, backends, """
                outlierDetection: {consecutive5xxErrors: 0}
                retryBudget: {percent: 20, minRetryConcurrency: 3}
                """, attempts: 3);

            // The app's circuit breaker would stop the load on its own; keep it out of this measurement.
            using var host = await StartClientAsync(mesh, options => options.Resilience.CircuitBreakerMinimumThroughput = int.MaxValue);
            var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
            await WaitForPolicyAsync(client, backends[0]);
            foreach (var backend in backends)
            {
                backend.Status = 503;
                backend.ResetCounts();
            }

            const int Workers = 32;
            const int PerWorker = 50;
            var failed = 0;
            await Task.WhenAll(Enumerable.Range(0, Workers).Select(async _ =>
            {
                for (var i = 0; i < PerWorker; i++)
                {
                    using var response = await client.GetAsync(new Uri("http://flaky/items"));
                    if (!response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref failed);
                    }
                }
            }));

            var requests = Workers * PerWorker;
            var attempts = backends.Sum(b => b.Hits);
            // Each attempt earns 20 % of a retry and the credit starts at min_retry_concurrency: at most 1.2 × requests + 3
            // attempts, whatever the concurrency (Envoy's in-flight budget alone measured 1.07–1.28× here).
            var bound = (1.2 * requests) + 3;
            output.WriteLine($"total outage: {requests} GETs ({Workers} concurrent, retries: attempts 3), {attempts} attempts at the servers = {attempts / (double)requests:0.000}× (bound {bound:0}; without a budget it would be {4 * requests})");
            Console.WriteLine($"[retry-budget] total outage: {requests} requests → {attempts} attempts ({attempts / (double)requests:0.000}×; bound 1.2× + 3 = {bound:0})");
            Assert.Equal(requests, failed);
            Assert.True(attempts >= requests, "every request reached a server at least once");
            Assert.True(attempts <= bound, $"{attempts} attempts for {requests} requests exceeds 1.2 × requests + min_retry_concurrency");

            foreach (var backend in backends)
            {
                backend.ResetCounts();
            }

            const int Posts = 50;
            for (var i = 0; i < Posts; i++)
            {
                using var response = await client.PostAsync(new Uri("http://flaky/orders"), new StringContent("order"));
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            }

            var postAttempts = backends.Sum(b => b.Posts);
            output.WriteLine($"{Posts} POSTs without Idempotency-Key → {postAttempts} attempts");
            Assert.Equal(Posts, postAttempts);
        }
        finally
        {
            foreach (var backend in backends)
            {
                await backend.DisposeAsync();
            }
        }
    }

    private static Task WriteConfigAsync(LocalMesh mesh, Backend[] backends, string trafficPolicy, int attempts = 2) =>
        StaticServiceConfig.WriteAsync(mesh, "flaky", [.. backends.Select(b => $"{{address: 127.0.0.1, ports: {{http: {b.Port}}}}}")], trafficPolicy, attempts);

    private static async Task<IHost> StartClientAsync(LocalMesh mesh, Action<Mesh.Client.ServiceMeshOptions>? configure)
    {
        var host = await mesh.CreateClientHostAsync(configure);
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        return host;
    }

    // The client applies the DestinationRule once its CDS arrives; until then the service may not even be known.
    private static Task WaitForPolicyAsync(HttpClient client, Backend any) =>
        Eventually.HoldsAsync(
            async () =>
            {
                var before = any.Hits;
                for (var i = 0; i < 6; i++)
                {
                    using var response = await client.GetAsync(new Uri("http://flaky/items"));
                }

                return any.Hits > before;
            },
            "the mesh client to route to flaky");

    private sealed class Backend : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentQueue<(long Timestamp, int Status)> _log = new();
        private int _hits;
        private int _posts;

        private Backend(WebApplication app)
        {
            _app = app;
        }

        public int Port { get; private set; }

        /// <summary>Gets or sets the status every request gets from now on.</summary>
        public int Status { get; set; } = 200;

        public int Hits => Volatile.Read(ref _hits);

        public int Posts => Volatile.Read(ref _posts);

        public static async Task<Backend> StartAsync(string name)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
            var app = builder.Build();
            var backend = new Backend(app);
            app.Run(context =>
            {
                var status = backend.Status;
                Interlocked.Increment(ref backend._hits);
                if (HttpMethods.IsPost(context.Request.Method))
                {
                    Interlocked.Increment(ref backend._posts);
                }

                backend._log.Enqueue((Stopwatch.GetTimestamp(), status));
                context.Response.StatusCode = status;
                return status == 200 ? context.Response.WriteAsync(name, context.RequestAborted) : Task.CompletedTask;
            });
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
            backend.Port = new Uri(address).Port;
            return backend;
        }

        public void ResetCounts()
        {
            Volatile.Write(ref _hits, 0);
            Volatile.Write(ref _posts, 0);
            _log.Clear();
        }

        /// <summary>
        /// The time from the first failed answer to the last failed answer of the first streak: the streak ends where the
        /// instance stopped getting requests (ejected), seen as the first gap of over half a second between its hits.
        /// </summary>
        public TimeSpan FirstHitToEjection()
        {
            var hits = _log.Where(e => e.Status >= 500).Select(e => e.Timestamp).ToArray();
            if (hits.Length == 0)
            {
                return TimeSpan.MaxValue;
            }

            var last = hits[0];
            foreach (var hit in hits.Skip(1))
            {
                if (Stopwatch.GetElapsedTime(last, hit) > TimeSpan.FromMilliseconds(500))
                {
                    break;
                }

                last = hit;
            }

            return Stopwatch.GetElapsedTime(hits[0], last);
        }

        /// <summary>When (seconds after the first) each streak of failed answers began: the instance's re-admissions.</summary>
        public string FailureStreaks()
        {
            var hits = _log.Where(e => e.Status >= 500).Select(e => e.Timestamp).ToArray();
            var starts = new List<string>();
            for (var i = 0; i < hits.Length; i++)
            {
                if (i == 0 || Stopwatch.GetElapsedTime(hits[i - 1], hits[i]) > TimeSpan.FromMilliseconds(500))
                {
                    starts.Add($"{Stopwatch.GetElapsedTime(hits[0], hits[i]).TotalSeconds:0.0} s");
                }
            }

            return string.Join(", ", starts);
        }

        public ValueTask DisposeAsync() => _app.DisposeAsync();
    }
}
