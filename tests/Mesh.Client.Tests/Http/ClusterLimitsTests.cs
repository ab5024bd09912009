using Mesh.Client.Discovery;
using Mesh.Client.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Http;

/// <summary>DestinationRule connectionPool limits and the retry budget on the HttpClient path, against real Kestrel backends.</summary>
public sealed class ClusterLimitsTests : IAsyncLifetime
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
    public async Task SendAsync_MaxRequestsInFlight_RejectsTheNextAtOnceNamingTheLimit()
    {
        var (snapshot, cluster) = Orders(ClusterLimits.Default with { MaxRequests = 2 });
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        foreach (var backend in _backends)
        {
            backend.Hang = true;
        }

        using var cancel = new CancellationTokenSource();
        var hung = Enumerable.Range(0, 2).Select(_ => client.GetAsync(new Uri("http://orders/"), cancel.Token)).ToArray();
        await Poll.UntilAsync(() => cluster.Traffic.ActiveRequests == 2 && _backends.Sum(b => b.Hits) == 2, "two requests in flight at the servers");

        var started = System.Diagnostics.Stopwatch.StartNew();
        var exception = await Assert.ThrowsAsync<UpstreamOverflowException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"rejected after {started.Elapsed}, not at once");
        Assert.Equal("orders", exception.Service);
        Assert.Equal(2, exception.Value);
        Assert.Contains("http2MaxRequests", exception.Limit, StringComparison.Ordinal);
        Assert.Contains("'orders'", exception.Message, StringComparison.Ordinal);
        Assert.Equal(2, _backends.Sum(b => b.Hits)); // the rejected request never reached a server
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.WhenAll(hung));
        Assert.Equal(0, cluster.Traffic.ActiveRequests);
    }

    [Fact]
    public async Task GetAsync_RetryBudgetOfZero_SendsNoRetry()
    {
        var (snapshot, cluster) = Orders(ClusterLimits.Default with { HasRetryBudget = true, RetryBudgetPercent = 0, MinRetryConcurrency = 0 });
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(System.Net.HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, _backends.Sum(b => b.Hits));
        Assert.Equal(0, cluster.Traffic.ActiveRetries);
    }

    [Fact]
    public void TryStartRetry_NoBudgetFromTheControlPlane_OnlyMaxRetriesBounds()
    {
        // As Istio: without a DestinationRule retryBudget, retries are bounded by max_retries alone (2^32-1 by default).
        var traffic = new ClusterTraffic();
        for (var i = 0; i < 100; i++)
        {
            Assert.True(traffic.TryStartRetry(ClusterLimits.Default));
        }

        Assert.False(traffic.TryStartRetry(ClusterLimits.Default with { MaxRetries = 100 }));
    }

    [Fact]
    public async Task GetAsync_Budget_AllowsTheMinimumConcurrency()
    {
        var (snapshot, cluster) = Orders(ClusterLimits.Default with { HasRetryBudget = true });
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(3, _backends.Sum(b => b.Hits)); // one request in flight: min_retry_concurrency (3) allows its 2 retries
        Assert.Equal(0, cluster.Traffic.ActiveRetries);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(true, 3)]
    public async Task GetAsync_MaxRetriesZero_AppliesOnlyWithoutABudget(bool budget, int hits)
    {
        var limits = ClusterLimits.Default with { MaxRetries = 0, HasRetryBudget = budget };
        var (snapshot, _) = Orders(limits);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot)).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(hits, _backends.Sum(b => b.Hits));
    }

    [Fact]
    public void TryStartRetry_BudgetIsAShareOfRequestsInFlight()
    {
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { HasRetryBudget = true }; // Envoy's defaults: 20 %, at least 3
        for (var i = 0; i < 50; i++)
        {
            Assert.True(traffic.TryStartRequest(limits));
        }

        // Each granted retry sends its attempt, as the resilience handler does; none of them ends.
        var granted = 0;
        while (traffic.TryStartRetry(limits))
        {
            granted++;
            Assert.True(traffic.TryStartRequest(limits));
        }

        // 50 attempts earned 10 retries of credit, the same as 20 % of the 50 in flight.
        Assert.Equal(10, granted);
        Assert.Equal(10, traffic.ActiveRetries);
    }

    [Fact]
    public void TryStartRetry_RetriesEndingFast_StillBoundedByTheShareOfRequestsOverTime()
    {
        // The in-flight bound alone lets a retry that ends quickly free its slot for the next one; the credit earned
        // per attempt bounds the total: 1,000 failed requests, one at a time, get 20 % retries plus the minimum.
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { HasRetryBudget = true, RetryBudgetPercent = 20, MinRetryConcurrency = 3 };
        var retries = 0;
        for (var i = 0; i < 1000; i++)
        {
            Assert.True(traffic.TryStartRequest(limits));
            traffic.EndRequest(limits.MaxRequests);
            while (traffic.TryStartRetry(limits))
            {
                retries++;
                Assert.True(traffic.TryStartRequest(limits));
                traffic.EndRequest(limits.MaxRequests);
                traffic.EndRetry();
            }
        }

        Assert.InRange(retries, 200, 203);
    }

    [Fact]
    public void TryStartRetry_CreditAfterAQuietPeriod_HeldToTheInFlightBudget()
    {
        // A long healthy stretch must not bank retries for the next outage: the credit is capped at what Envoy's
        // budget allows in flight (here the minimum, one request at a time).
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { HasRetryBudget = true, RetryBudgetPercent = 20, MinRetryConcurrency = 3 };
        for (var i = 0; i < 10_000; i++)
        {
            Assert.True(traffic.TryStartRequest(limits));
            traffic.EndRequest(limits.MaxRequests);
        }

        var granted = 0;
        while (traffic.TryStartRetry(limits))
        {
            granted++;
            Assert.True(traffic.TryStartRequest(limits));
            traffic.EndRequest(limits.MaxRequests);
            traffic.EndRetry();
        }

        Assert.Equal(3, granted);
    }

    [Fact]
    public void TryStartRetry_ZeroPercent_KeepsMinRetryConcurrencyInFlight()
    {
        // A 0 % budget earns no credit; it keeps Envoy's meaning, min_retry_concurrency retries at a time, for good.
        var traffic = new ClusterTraffic();
        var limits = ClusterLimits.Default with { HasRetryBudget = true, RetryBudgetPercent = 0, MinRetryConcurrency = 2 };
        for (var round = 0; round < 100; round++)
        {
            Assert.True(traffic.TryStartRetry(limits));
            Assert.True(traffic.TryStartRetry(limits));
            Assert.False(traffic.TryStartRetry(limits));
            traffic.EndRetry();
            traffic.EndRetry();
        }
    }

    private (MeshSnapshot Snapshot, MeshCluster Cluster) Orders(ClusterLimits limits)
    {
        var endpoints = _backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray();
        var cluster = new MeshCluster(
            "outbound|80||orders.default.svc.cluster.local",
            "orders.default.svc.cluster.local",
            LoadBalancingPolicy.RoundRobin,
            [.. endpoints],
            OutlierDetectionSettings.Default,
            limits: limits);
        return (new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]), cluster);
    }
}
