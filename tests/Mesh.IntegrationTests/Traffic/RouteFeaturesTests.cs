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
/// A VirtualService's fault, mirror, rewrite, header mutations, redirect and direct response, from the control plane's
/// YAML folder to a real Mesh client (HttpClient path) and real Kestrel backends.
/// </summary>
public sealed class RouteFeaturesTests(ITestOutputHelper output)
{
    private const int Requests = 2000;
    private static readonly TimeSpan FaultDelay = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task FaultAbortAndDelay_TenPercentEach_LandWithinThreePoints()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var main = await Backend.StartAsync("main");
        await using var shadow = await Backend.StartAsync("shadow");
        await WriteServicesAsync(mesh, main, shadow);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "features-vs.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: features}
            spec:
              hosts: [features]
              http:
              - name: faults
                fault:
                  delay: {fixedDelay: 1s, percentage: {value: 10}}
                  abort: {httpStatus: 503, percentage: {value: 10}}
                route:
                - destination: {host: features, subset: main}
            """);
        await mesh.WaitForEndpointsAsync("features", 2);
        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(
            async () => (await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => StatusAsync(client, "/items")))).Contains(HttpStatusCode.ServiceUnavailable),
            "the fault route to reach the client");

        var reachedBefore = main.Seen.Count;
        var aborted = 0;
        var delayed = 0;
        var served = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, Requests), new ParallelOptions { MaxDegreeOfParallelism = 40 }, async (_, cancellationToken) =>
        {
            var watch = Stopwatch.StartNew();
            using var response = await client.GetAsync(new Uri("http://features/items"), cancellationToken);
            var elapsed = watch.Elapsed;
            if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
            {
                Interlocked.Increment(ref aborted);
            }
            else
            {
                Assert.Equal("main", await response.Content.ReadAsStringAsync(cancellationToken));
                Interlocked.Increment(ref served);
            }

            // The delay comes first (Envoy's order), so an aborted request may be delayed too; the draws are independent.
            if (elapsed >= FaultDelay - TimeSpan.FromMilliseconds(10))
            {
                Interlocked.Increment(ref delayed);
            }
        });

        var abortRate = aborted / (double)Requests;
        var delayRate = delayed / (double)Requests;
        output.WriteLine($"fault over {Requests}: aborted {aborted} ({abortRate:P1}), delayed {delayed} ({delayRate:P1}), served {served}");
        Console.WriteLine($"[route-fault] abort 10 % over {Requests}: {abortRate:P2}; delay 10 % over {Requests}: {delayRate:P2}");
        Assert.Equal(Requests, aborted + served);
        Assert.InRange(abortRate, 0.07, 0.13);
        Assert.InRange(delayRate, 0.07, 0.13);

        // Aborted requests never reach the backend.
        Assert.Equal(served, main.Seen.Count - reachedBefore);
    }

    [Fact]
    public async Task MirrorRewriteHeadersRedirectAndDirectResponse_AsTheVirtualServiceSays()
    {
        await using var mesh = await LocalMesh.StartAsync(output);
        await using var main = await Backend.StartAsync("main");
        await using var shadow = await Backend.StartAsync("shadow");
        shadow.Hold();
        await WriteServicesAsync(mesh, main, shadow);
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "features-vs.yaml"), """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: features}
            spec:
              hosts: [features]
              http:
              - name: mirrored
                match: [{uri: {prefix: /orders}}]
                mirror: {host: features, subset: shadow}
                route:
                - destination: {host: features, subset: main}
              - name: rewritten
                match: [{uri: {prefix: /api}}]
                rewrite: {uri: /v2/api, authority: backend.internal}
                headers:
                  request: {set: {x-env: mesh}, add: {x-trace: added}, remove: [x-secret]}
                  response: {set: {x-served-by: mesh}, remove: [x-internal]}
                route:
                - destination: {host: features, subset: main}
              - name: moved
                match: [{uri: {prefix: /old}}]
                redirect: {uri: /new, authority: elsewhere.example, redirectCode: 308}
              - name: down
                match: [{uri: {prefix: /down}}]
                directResponse: {status: 503, body: {string: "down for maintenance"}}
              - route:
                - destination: {host: features, subset: main}
            """);
        await mesh.WaitForEndpointsAsync("features", 2);
        using var host = await StartClientAsync(mesh);
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("mesh");
        await Eventually.HoldsAsync(async () => await StatusAsync(client, "/down") == HttpStatusCode.ServiceUnavailable, "the VirtualService to reach the client");

        // Mirror: the shadow holds every request it gets; the caller's requests complete meanwhile, from the main backend.
        const int mirrored = 10;
        for (var i = 0; i < mirrored; i++)
        {
            using var post = await client.PostAsync(new Uri($"http://features/orders/{i}"), new StringContent($"order-{i}")).WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal("main", await post.Content.ReadAsStringAsync());
        }

        await Eventually.HoldsAsync(() => Task.FromResult(shadow.Seen.Count(s => s.Path.StartsWith("/orders/", StringComparison.Ordinal)) == mirrored), "every mirrored request to reach the shadow");
        Assert.Equal(mirrored, shadow.Waiting);
        var copies = shadow.Seen.Where(s => s.Path.StartsWith("/orders/", StringComparison.Ordinal)).ToList();
        output.WriteLine($"mirror: {mirrored} caller requests answered while the shadow held {shadow.Waiting}; shadow got {string.Join(", ", copies.Select(c => $"{c.Method} {c.Path} '{c.Body}' host {c.Host}"))}");
        Console.WriteLine($"[route-mirror] {mirrored}/{mirrored} caller requests completed while the mirror held {shadow.Waiting} copies");
        Assert.Equal(Enumerable.Range(0, mirrored).Select(i => $"order-{i}").Order(), copies.Select(c => c.Body).Order());
        Assert.All(copies, c => Assert.Equal(("POST", "features"), (c.Method, c.Host)));
        Assert.Equal(mirrored, main.Seen.Count(s => s.Path.StartsWith("/orders/", StringComparison.Ordinal)));
        shadow.Release();

        // Rewrite and header mutations, seen at the server; response mutations, seen by the caller.
        using (var request = new HttpRequestMessage(HttpMethod.Get, new Uri("http://features/api/items?q=1")))
        {
            request.Headers.Add("x-secret", "s3cret");
            request.Headers.Add("x-trace", "caller");
            request.Headers.Add("x-env", "caller");
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("mesh", Assert.Single(response.Headers.GetValues("x-served-by")));
            Assert.False(response.Headers.Contains("x-internal"));
        }

        var seen = main.Seen.Single(s => s.Path.StartsWith("/v2/api", StringComparison.Ordinal));
        output.WriteLine($"rewrite: server saw {seen.Path} host {seen.Host} headers {string.Join("; ", seen.Headers.Select(h => $"{h.Key}={h.Value}"))}");
        Assert.Equal("/v2/api/items?q=1", seen.Path);
        Assert.Equal("backend.internal", seen.Host);
        Assert.Equal("mesh", seen.Headers["x-env"]);
        Assert.Equal("caller,added", seen.Headers["x-trace"].Replace(", ", ",", StringComparison.Ordinal));
        Assert.False(seen.Headers.ContainsKey("x-secret"));

        // Redirect and direct response: answered by the client, the backend never sees them.
        var before = main.Seen.Count;
        using (var moved = await client.GetAsync(new Uri("http://features/old/x?y=1")))
        {
            Assert.Equal(HttpStatusCode.PermanentRedirect, moved.StatusCode);
            Assert.Equal(new Uri("http://elsewhere.example/new?y=1"), moved.Headers.Location);
        }

        using (var down = await client.GetAsync(new Uri("http://features/down/now")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, down.StatusCode);
            Assert.Equal("down for maintenance", await down.Content.ReadAsStringAsync());
        }

        Assert.Equal(before, main.Seen.Count);
        Console.WriteLine("[route-rewrite] /api/items?q=1 → /v2/api/items?q=1 at backend.internal; headers set/added/removed; redirect 308 and direct response 503 seen by the caller");
    }

    private static async Task WriteServicesAsync(LocalMesh mesh, Backend main, Backend shadow) =>
        await File.WriteAllTextAsync(Path.Combine(mesh.ConfigDirectory, "features.yaml"), $$$"""
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: features}
            spec:
              hosts: [features]
              ports: [{number: 80, name: http, protocol: HTTP}]
              resolution: STATIC
              endpoints:
              - {address: 127.0.0.1, ports: {http: {{{main.Port}}}}, labels: {version: main}}
              - {address: 127.0.0.1, ports: {http: {{{shadow.Port}}}}, labels: {version: shadow}}
            ---
            apiVersion: networking.istio.io/v1
            kind: DestinationRule
            metadata: {name: features}
            spec:
              host: features
              subsets:
              - {name: main, labels: {version: main}}
              - {name: shadow, labels: {version: shadow}}
            """);

    private static async Task<IHost> StartClientAsync(LocalMesh mesh)
    {
        var host = await mesh.CreateClientHostAsync();
        await host.StartAsync();
        var health = host.Services.GetRequiredService<HealthCheckService>();
        await Eventually.HoldsAsync(async () => (await health.CheckHealthAsync()).Status == HealthStatus.Healthy, "the test's mesh client to sync");
        return host;
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(new Uri("http://features" + path));
        return response.StatusCode;
    }

    private sealed record Seen(string Method, string Path, string Host, string Body, Dictionary<string, string> Headers);

    /// <summary>A Kestrel backend that records what it receives; held, it answers nothing until released.</summary>
    private sealed class Backend : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private TaskCompletionSource _gate = CompletedGate();
        private int _waiting;

        private Backend(WebApplication app) => _app = app;

        public int Port { get; private set; }

        public ConcurrentQueue<Seen> Seen { get; } = new();

        public int Waiting => Volatile.Read(ref _waiting);

        public static async Task<Backend> StartAsync(string name)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
            var app = builder.Build();
            var backend = new Backend(app);
            app.Run(async context =>
            {
                using var reader = new StreamReader(context.Request.Body);
                var body = await reader.ReadToEndAsync(context.RequestAborted);
                var headers = context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString(), StringComparer.Ordinal);
                backend.Seen.Enqueue(new Seen(context.Request.Method, context.Request.Path + context.Request.QueryString, context.Request.Host.Value ?? string.Empty, body, headers));
                var gate = Volatile.Read(ref backend._gate);
                if (!gate.Task.IsCompleted)
                {
                    Interlocked.Increment(ref backend._waiting);
                    await gate.Task.WaitAsync(context.RequestAborted);
                    Interlocked.Decrement(ref backend._waiting);
                }

                context.Response.Headers["x-internal"] = "1";
                await context.Response.WriteAsync(name, context.RequestAborted);
            });
            await app.StartAsync();
            backend.Port = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single()).Port;
            return backend;
        }

        public void Hold() => Volatile.Write(ref _gate, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));

        public void Release() => Volatile.Read(ref _gate).TrySetResult();

        public async ValueTask DisposeAsync()
        {
            Release();
            await _app.DisposeAsync();
        }

        private static TaskCompletionSource CompletedGate()
        {
            var gate = new TaskCompletionSource();
            gate.SetResult();
            return gate;
        }
    }
}
