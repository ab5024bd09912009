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
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Traffic;

/// <summary>
/// Microsoft.Extensions.Http.Resilience's standard hedging handler on a mesh client: the control plane process serves a
/// service of three real Kestrel backends (one slow) balanced at random, and every hedged attempt of one logical request
/// lands on another backend, so the fast ones bound the latency.
/// </summary>
public sealed class HedgingTests(ITestOutputHelper output)
{
    private const string RequestId = "x-test-request-id";
    private static readonly TimeSpan SlowDelay = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan HedgingDelay = TimeSpan.FromMilliseconds(150);

    [Fact]
    public async Task StandardHedgingHandler_OneSlowBackend_AttemptsOfEachRequestHitDistinctBackends_AndFastOnesBoundTheLatency()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        var seen = new ConcurrentDictionary<string, ConcurrentQueue<string>>();
        await using var slow = await Backend.StartAsync("slow", SlowDelay, seen);
        await using var fast1 = await Backend.StartAsync("fast1", TimeSpan.Zero, seen);
        await using var fast2 = await Backend.StartAsync("fast2", TimeSpan.Zero, seen);
        Backend[] backends = [slow, fast1, fast2];

        // RANDOM: two attempts of one request land on the same backend a third of the time unless the mesh spreads them.
        await StaticServiceConfig.WriteAsync(mesh, "hedged", [.. backends.Select(b => $"{{address: 127.0.0.1, ports: {{http: {b.Port}}}}}")], "loadBalancer: {simple: RANDOM}");

        using var host = await mesh.CreateClientHostAsync(configureHost: builder =>
            builder.Services.AddHttpClient("hedged").AddStandardHedgingHandler().Configure(options =>
            {
                options.Hedging.Delay = HedgingDelay;
                options.Hedging.MaxHedgedAttempts = 2;
            }));
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("hedged");

        // The client applies the DestinationRule once its CDS arrives: wait until requests reach the backends.
        await Eventually.HoldsAsync(
            async () =>
            {
                using var probe = new HttpRequestMessage(HttpMethod.Get, "http://hedged/warmup");
                probe.Headers.Add(RequestId, $"warmup-{Guid.NewGuid():N}");
                using var response = await client.SendAsync(probe);
                return response.IsSuccessStatusCode;
            },
            "the mesh client to route to hedged");
        seen.Clear();

        const int Requests = 90;
        const int Workers = 3;
        var latencies = new ConcurrentBag<TimeSpan>();
        var failed = 0;
        var budget = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Workers).Select(async worker =>
        {
            for (var i = 0; i < Requests / Workers && budget.Elapsed < TimeSpan.FromMinutes(2); i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "http://hedged/items");
                request.Headers.Add(RequestId, $"{worker}-{i}");
                var started = Stopwatch.GetTimestamp();
                using var response = await client.SendAsync(request);
                latencies.Add(Stopwatch.GetElapsedTime(started));
                if (!response.IsSuccessStatusCode || (await response.Content.ReadAsStringAsync()) == "slow")
                {
                    Interlocked.Increment(ref failed);
                }
            }
        }));

        var sorted = latencies.Order().ToArray();
        var hedged = seen.Values.Count(attempts => attempts.Count > 1);
        var repeats = seen.Where(p => p.Value.Distinct().Count() != p.Value.Count).Select(p => $"{p.Key}: {string.Join(", ", p.Value)}").ToList();
        var p50 = sorted[sorted.Length / 2];
        var p99 = sorted[(int)Math.Ceiling(sorted.Length * 0.99) - 1];
        output.WriteLine($"{sorted.Length} requests, {hedged} hedged, {repeats.Count} with two attempts on one backend; attempts per backend: {string.Join(", ", backends.Select(b => $"{b.Name} {b.Hits}"))}; latency p50 {p50.TotalMilliseconds:0} ms, p99 {p99.TotalMilliseconds:0} ms, max {sorted[^1].TotalMilliseconds:0} ms (slow backend {SlowDelay.TotalMilliseconds:0} ms, hedging delay {HedgingDelay.TotalMilliseconds:0} ms)");
        Console.WriteLine($"[hedging] {sorted.Length} requests over 3 backends (1 slow, RANDOM): {hedged} hedged, {repeats.Count} attempts repeated a backend; p50 {p50.TotalMilliseconds:0} ms, max {sorted[^1].TotalMilliseconds:0} ms vs slow {SlowDelay.TotalMilliseconds:0} ms");

        Assert.Equal(Requests, sorted.Length);
        Assert.Equal(0, failed);
        Assert.Empty(repeats);
        Assert.True(hedged >= Requests / 6, $"only {hedged} of {Requests} requests were hedged: the slow backend did not get its share of first attempts");

        // Every request is answered by a fast backend, the slow one's answer never waited for: well under its delay.
        Assert.True(sorted[^1] < SlowDelay / 2, $"the slowest request took {sorted[^1].TotalMilliseconds:0} ms: it waited for the slow backend ({SlowDelay.TotalMilliseconds:0} ms)");
    }

    private sealed class Backend : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _hits;

        private Backend(WebApplication app, string name)
        {
            _app = app;
            Name = name;
        }

        public string Name { get; }

        public int Port { get; private set; }

        public int Hits => Volatile.Read(ref _hits);

        /// <summary>A backend that records which requests (by <see cref="RequestId"/>) reached it and answers its name after <paramref name="delay"/>.</summary>
        public static async Task<Backend> StartAsync(string name, TimeSpan delay, ConcurrentDictionary<string, ConcurrentQueue<string>> seen)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
            var app = builder.Build();
            var backend = new Backend(app, name);
            app.Run(async context =>
            {
                Interlocked.Increment(ref backend._hits);
                seen.GetOrAdd(context.Request.Headers[RequestId].ToString(), _ => new()).Enqueue(name);
                if (delay > TimeSpan.Zero)
                {
                    // Until the delay passes or the client gives up on this attempt (hedging cancels the losers).
                    await Task.Delay(delay, context.RequestAborted).ContinueWith(static _ => { }, TaskScheduler.Default);
                }

                if (!context.RequestAborted.IsCancellationRequested)
                {
                    await context.Response.WriteAsync(name, context.RequestAborted);
                }
            });
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
            backend.Port = new Uri(address).Port;
            return backend;
        }

        public async ValueTask DisposeAsync()
        {
            // Requests the slow backend still holds are aborted at once rather than after the graceful-shutdown timeout.
            using (var abortHeld = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
            {
                await _app.StopAsync(abortHeld.Token);
            }

            await _app.DisposeAsync();
        }
    }
}
