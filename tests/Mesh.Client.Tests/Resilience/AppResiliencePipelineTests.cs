using System.Net;
using Mesh.Client.Discovery;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Resilience;

namespace Mesh.Client.Tests.Resilience;

/// <summary>
/// A client the app also gives Microsoft.Extensions.Http.Resilience's standard handler: the app's pipeline owns the
/// retries, the mesh sends each of its attempts once and routes each to another endpoint than the one that failed.
/// </summary>
public sealed class AppResiliencePipelineTests : IAsyncLifetime
{
    private readonly List<TestBackend> _backends = [];

    public async Task InitializeAsync()
    {
        for (var i = 0; i < 3; i++)
        {
            _backends.Add(await TestBackend.StartAsync($"orders-{i}"));
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var backend in _backends)
        {
            await backend.DisposeAsync();
        }
    }

    [Fact]
    public async Task StandardResilienceHandler_RetriesAreNotMultiplied()
    {
        var services = MeshServices.Create(new FixedSnapshotSource(Orders()));
        services.AddHttpClient("app").AddStandardResilienceHandler(options =>
        {
            options.Retry.MaxRetryAttempts = 3;
            options.Retry.Delay = TimeSpan.FromMilliseconds(1);
            options.CircuitBreaker.MinimumThroughput = 1000;
        });
        services.AddHttpClient("plain");
        await using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<IHttpClientFactory>();

        using var withPipeline = await factory.CreateClient("app").GetAsync(new Uri("http://orders/fail"));
        var appHits = _backends.Sum(b => b.Hits);
        foreach (var backend in _backends)
        {
            backend.Hosts.Clear();
        }

        using var meshOnly = await factory.CreateClient("plain").GetAsync(new Uri("http://orders/fail"));
        var meshHits = _backends.Sum(b => b.Hits);

        Assert.Equal(HttpStatusCode.InternalServerError, withPipeline.StatusCode);
        Assert.Equal(4, appHits); // the app's 1 + 3, not (1 + 3) × (1 + Mesh:Resilience:MaxRetryAttempts 2) = 12
        Assert.Equal(3, meshHits); // a client without its own pipeline keeps the mesh's retries
    }

    [Fact]
    public async Task StandardResilienceHandler_RetriesCountAgainstTheClustersRetryBudget()
    {
        // The app owns its retries, but they are retries to the cluster: with a budget whose credit is one retry, the
        // second of the app's three retries is refused at once (UO) and never reaches a server.
        var endpoints = _backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray();
        var cluster = new MeshCluster(
            "outbound|80||orders.default.svc.cluster.local",
            "orders.default.svc.cluster.local",
            LoadBalancingPolicy.RoundRobin,
            [.. endpoints],
            OutlierDetectionSettings.Default with { Consecutive5xx = 100 },
            limits: ClusterLimits.Default with { HasRetryBudget = true, RetryBudgetPercent = 20, MinRetryConcurrency = 1 });
        var services = MeshServices.Create(new FixedSnapshotSource(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster])));
        services.AddHttpClient("app").AddStandardResilienceHandler(options =>
        {
            options.Retry.MaxRetryAttempts = 3;
            options.Retry.Delay = TimeSpan.FromMilliseconds(1);
            options.CircuitBreaker.MinimumThroughput = 1000;
        });
        await using var provider = services.BuildServiceProvider();

        var error = await Assert.ThrowsAsync<UpstreamOverflowException>(
            () => provider.GetRequiredService<IHttpClientFactory>().CreateClient("app").GetAsync(new Uri("http://orders/fail")));

        Assert.Equal(2, _backends.Sum(b => b.Hits));
        Assert.StartsWith("retry_budget", error.Limit, StringComparison.Ordinal);
        Assert.Equal((0, 0), (cluster.Traffic.ActiveRetries, cluster.Traffic.ActiveRequests));
    }

    [Fact]
    public async Task StandardResilienceHandler_EachRetryGoesToAnotherEndpoint()
    {
        var services = MeshServices.Create(new FixedSnapshotSource(Orders()));
        services.AddHttpClient("app").AddStandardResilienceHandler(options =>
        {
            options.Retry.MaxRetryAttempts = 2;
            options.Retry.Delay = TimeSpan.FromMilliseconds(1);
        });
        await using var provider = services.BuildServiceProvider();

        using var response = await provider.GetRequiredService<IHttpClientFactory>().CreateClient("app").GetAsync(new Uri("http://orders/fail"));

        Assert.All(_backends, backend => Assert.Equal(1, backend.Hits));
    }

    [Fact]
    public async Task StandardHedgingHandler_HedgedAttemptsOfOneRequest_GoToDistinctEndpoints()
    {
        // A balancer that always draws the first endpoint: only the attempt group spreads the hedged clones.
        var services = MeshServices.Create(new FixedSnapshotSource(Orders(random: _ => 0)));
        services.AddHttpClient("app").AddStandardHedgingHandler().Configure(options =>
        {
            options.Hedging.MaxHedgedAttempts = 2;
            options.Hedging.Delay = TimeSpan.FromSeconds(10); // each 500 starts the next attempt at once
        });
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("app");

        const int Requests = 5;
        for (var i = 0; i < Requests; i++)
        {
            using var response = await client.GetAsync(new Uri("http://orders/fail"));
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        // 1 + 2 attempts per request, one on each endpoint, never two on the same one.
        Assert.All(_backends, backend => Assert.Equal(Requests, backend.Hits));
    }

    [Fact]
    public async Task StandardHedgingHandler_MoreAttemptsThanEndpoints_TheExtraAttemptStillGoesOut()
    {
        var services = MeshServices.Create(new FixedSnapshotSource(Orders(random: _ => 0)));
        services.AddHttpClient("app").AddStandardHedgingHandler().Configure(options =>
        {
            options.Hedging.MaxHedgedAttempts = 3;
            options.Hedging.Delay = TimeSpan.FromSeconds(10);
        });
        await using var provider = services.BuildServiceProvider();

        using var response = await provider.GetRequiredService<IHttpClientFactory>().CreateClient("app").GetAsync(new Uri("http://orders/fail"));

        // Four attempts on three endpoints: each endpoint once, then any endpoint for the fourth.
        Assert.Equal(4, _backends.Sum(b => b.Hits));
        Assert.All(_backends, backend => Assert.InRange(backend.Hits, 1, 2));
    }

    [Fact]
    public async Task HandlerChain_AttemptGroupOnlyForClientsWithAnAppPipeline_RightOutsideIt()
    {
        var services = MeshServices.Create(new FixedSnapshotSource(Orders()));
        services.AddHttpClient("hedged").AddStandardHedgingHandler();
        services.AddHttpClient("plain");
        await using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<IHttpMessageHandlerFactory>();

        var hedged = Chain(factory.CreateHandler("hedged"));
        var plain = Chain(factory.CreateHandler("plain"));

        // The group starts before the app's outer (hedging) pipeline, so the snapshot it takes carries the group.
        var group = hedged.FindIndex(h => h is Mesh.Client.Http.MeshAttemptGroupHandler);
        Assert.True(group >= 0);
        Assert.Equal("Microsoft.Extensions.Http.Resilience.ResilienceHandler", hedged[group + 1].GetType().FullName);
        Assert.True(hedged.OfType<Mesh.Client.Http.MeshHttpHandler>().Single().SpreadsAttempts);

        // A client without an app pipeline never reads a request's Options for it (no allocation on the plain path).
        Assert.DoesNotContain(plain, h => h is Mesh.Client.Http.MeshAttemptGroupHandler);
        Assert.False(plain.OfType<Mesh.Client.Http.MeshHttpHandler>().Single().SpreadsAttempts);
    }

    private static List<HttpMessageHandler> Chain(HttpMessageHandler handler)
    {
        var chain = new List<HttpMessageHandler>();
        for (HttpMessageHandler? current = handler; current is not null; current = (current as DelegatingHandler)?.InnerHandler)
        {
            chain.Add(current);
        }

        return chain;
    }

    private MeshSnapshot Orders(Func<int, int>? random = null)
    {
        var endpoints = _backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray();
        var cluster = random is null
            ? TestSnapshots.Cluster("orders", 80, endpoints, outlier: OutlierDetectionSettings.Default with { Consecutive5xx = 100 })
            : new MeshCluster("outbound|80||orders.default.svc.cluster.local", "orders.default.svc.cluster.local", LoadBalancingPolicy.Random, [.. endpoints], OutlierDetectionSettings.Default with { Consecutive5xx = 100 }, random);
        return new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]);
    }
}
