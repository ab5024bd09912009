using System.Collections.Concurrent;
using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Logging;
using Microsoft.Extensions.Logging;

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

    /// <summary>
    /// The factory's logging handlers sit around the mesh's chain: a call the mesh retries is logged once, as an app
    /// behind a sidecar logs it, while a handler of the app's own still runs for each attempt. Without one, the
    /// resilience loop is right above the routing handler (it sends each attempt itself).
    /// </summary>
    [Fact]
    public async Task FactoryClient_LogsEachCallOnce_AppHandlerRunsPerAttempt()
    {
        var logs = new CategoryCounter();
        var appHandler = new CountingHandler();
        var services = Services(_backends, options => options.Resilience.MaxRetryAttempts = 1);
        services.AddSingleton<ILoggerProvider>(logs);
        services.AddHttpClient("plain");
        services.AddHttpClient("app").AddHttpMessageHandler(() => appHandler);
        await using var provider = services.BuildServiceProvider();
        var factory = provider.GetRequiredService<IHttpClientFactory>();

        using (var response = await factory.CreateClient("app").GetAsync(new Uri("http://orders/fail")))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        Assert.Equal(2, appHandler.Calls);
        Assert.Equal(1, logs.Count("System.Net.Http.HttpClient.app.ClientHandler", eventId: 100));
        Assert.Equal(1, logs.Count("System.Net.Http.HttpClient.app.LogicalHandler", eventId: 100));

        using (var response = await factory.CreateClient("plain").GetAsync(new Uri("http://orders/fail")))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        Assert.Equal(1, logs.Count("System.Net.Http.HttpClient.plain.ClientHandler", eventId: 100));
        var chain = new List<Type>();
        for (HttpMessageHandler? handler = provider.GetRequiredService<IHttpMessageHandlerFactory>().CreateHandler("plain"); handler is not null; handler = (handler as DelegatingHandler)?.InnerHandler)
        {
            chain.Add(handler.GetType());
        }

        var resilience = chain.IndexOf(typeof(MeshResilienceHandler));
        Assert.True(resilience > chain.IndexOf(typeof(LoggingHttpMessageHandler)), string.Join(" > ", chain.Select(t => t.Name)));
        Assert.Equal(typeof(Mesh.Client.Http.MeshHttpHandler), chain[resilience + 1]);
    }

    /// <summary>
    /// Loggers added with <c>AddLogger</c>, wrapping the pipeline or not, stay around the mesh's chain and see a retried
    /// call once, like the factory's default logging, while a handler of the app's added between them sees each attempt.
    /// </summary>
    [Fact]
    public async Task FactoryClient_AddLogger_LogsEachCallOnce()
    {
        var wrapping = new CountingLogger();
        var inner = new CountingLogger();
        var services = Services(_backends, options => options.Resilience.MaxRetryAttempts = 1);
        var appHandler = new CountingHandler();
        services.AddHttpClient("logged").AddLogger(_ => wrapping, wrapHandlersPipeline: true).AddHttpMessageHandler(() => appHandler).AddLogger(_ => inner);
        await using var provider = services.BuildServiceProvider();

        using var response = await provider.GetRequiredService<IHttpClientFactory>().CreateClient("logged").GetAsync(new Uri("http://orders/fail"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, wrapping.Starts);
        Assert.Equal(1, inner.Starts);
        Assert.Equal(2, appHandler.Calls);
    }

    private static ServiceProvider Provider(TestBackend backend, Action<ServiceMeshOptions> configure) => Provider([backend], configure);

    private static ServiceProvider Provider(IReadOnlyList<TestBackend> backends, Action<ServiceMeshOptions> configure) =>
        Services(backends, configure).BuildServiceProvider();

    // The mesh's services with one service, "orders", whose endpoints are the backends.
    private static ServiceCollection Services(IReadOnlyList<TestBackend> backends, Action<ServiceMeshOptions> configure)
    {
        var cluster = TestSnapshots.Cluster("orders", 80, backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray());
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]);
        return MeshServices.Create(new FixedSnapshotSource(snapshot), configure);
    }

    private sealed class CountingHandler : DelegatingHandler
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return base.SendAsync(request, cancellationToken);
        }
    }

    private sealed class CategoryCounter : ILoggerProvider
    {
        private readonly ConcurrentDictionary<(string Category, int EventId), int> _counts = new();

        public int Count(string category, int eventId) => _counts.GetValueOrDefault((category, eventId));

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(CategoryCounter owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner._counts.AddOrUpdate((category, eventId.Id), 1, (_, count) => count + 1);
        }
    }

    private sealed class CountingLogger : IHttpClientLogger
    {
        private int _starts;

        public int Starts => Volatile.Read(ref _starts);

        public object? LogRequestStart(HttpRequestMessage request)
        {
            Interlocked.Increment(ref _starts);
            return null;
        }

        public void LogRequestStop(object? context, HttpRequestMessage request, HttpResponseMessage response, TimeSpan elapsed)
        {
        }

        public void LogRequestFailed(object? context, HttpRequestMessage request, HttpResponseMessage? response, Exception exception, TimeSpan elapsed)
        {
        }
    }
}
