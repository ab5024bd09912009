using System.Net;
using Mesh.Client.Discovery;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Resilience;

/// <summary>Timeouts, retries and cancellation of mesh calls against real Kestrel backends.</summary>
public sealed class MeshResilienceHandlerTests : IAsyncLifetime
{
    private readonly List<TestBackend> _backends = [];

    public async Task InitializeAsync()
    {
        for (var i = 0; i < 2; i++)
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
    public async Task AttemptTimeout_NoRetries_TaskCanceledWithTimeoutNamingTheOption()
    {
        _backends[0].Hang = true;
        await using var provider = Provider(_backends[0], options =>
        {
            options.Resilience.AttemptTimeout = TimeSpan.FromMilliseconds(300);
            options.Resilience.MaxRetryAttempts = 0;
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.IsType<TimeoutException>(error.InnerException);
        Assert.Contains("'orders'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Mesh:Resilience:AttemptTimeout", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, _backends[0].Hits);
    }

    [Fact]
    public async Task TotalTimeoutSoonerThanAttemptTimeout_NamesTotalTimeout_AndStopsRetrying()
    {
        _backends[0].Hang = true;
        await using var provider = Provider(_backends[0], options =>
        {
            options.Resilience.TotalTimeout = TimeSpan.FromMilliseconds(400);
            options.Resilience.AttemptTimeout = TimeSpan.FromMilliseconds(400);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.Contains("Mesh:Resilience:TotalTimeout", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, _backends[0].Hits); // the budget was spent: no retry
    }

    [Fact]
    public async Task AttemptTimeout_IsRetriedOnAnotherEndpoint()
    {
        _backends[0].Hang = true;
        await using var provider = Provider(_backends, options => options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(1));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-1", await client.GetStringAsync(new Uri("http://orders/")));
        }

        Assert.InRange(_backends[0].Hits, 1, 4); // round robin sent some first attempts to the hanging endpoint
    }

    [Fact]
    public async Task CallerCancels_NotRetried_NotATimeout()
    {
        _backends[0].Hang = true;
        await using var provider = Provider(_backends[0], options => options.Resilience.MaxRetryAttempts = 2);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        using var cancellation = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));

        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetAsync(new Uri("http://orders/"), cancellation.Token));

        Assert.IsNotType<TimeoutException>(error.InnerException);
        Assert.Equal(1, _backends[0].Hits);
    }

    [Fact]
    public async Task AfterTimeoutsAndCancellations_LaterRequestsAreNotCancelledByReusedDeadlines()
    {
        _backends[0].Hang = true;
        await using var provider = Provider(_backends[0], options =>
        {
            // Generous: the 200 requests below share a loaded machine and must never time out themselves.
            options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(2);
            options.Resilience.MaxRetryAttempts = 0;
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var timedOut = Enumerable.Range(0, 5).Select(_ => Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/"))));
        var cancelled = Enumerable.Range(0, 5).Select(async _ =>
        {
            using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
            return await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetAsync(new Uri("http://orders/"), caller.Token));
        });
        await Task.WhenAll([.. timedOut, .. cancelled]);

        _backends[0].Hang = false;
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => client.GetStringAsync(new Uri("http://orders/"))));

        Assert.All(answers, answer => Assert.Equal("orders-0", answer));
    }

    [Fact]
    public async Task ServerErrorThenSuccess_ReturnsTheSuccess_FailedResponseDisposed()
    {
        await using var provider = Provider(_backends, options => options.Resilience.MaxRetryAttempts = 1);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/fail"));

        // Both endpoints answer 500 on /fail: one retry on the other endpoint, then the last answer is returned.
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, _backends[0].Hits);
        Assert.Equal(1, _backends[1].Hits);
    }

    private static ServiceProvider Provider(TestBackend backend, Action<ServiceMeshOptions> configure) => Provider([backend], configure);

    private static ServiceProvider Provider(IReadOnlyList<TestBackend> backends, Action<ServiceMeshOptions> configure)
    {
        var cluster = TestSnapshots.Cluster("orders", 80, backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray());
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]);
        return MeshServices.Create(new FixedSnapshotSource(snapshot), configure).BuildServiceProvider();
    }
}
