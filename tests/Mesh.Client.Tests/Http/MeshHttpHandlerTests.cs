using System.Diagnostics;
using System.Net;
using Mesh.Client.Discovery;
using Microsoft.Extensions.DependencyInjection;

namespace Mesh.Client.Tests.Http;

public sealed class MeshHttpHandlerTests : IAsyncLifetime
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

    [Theory]
    [InlineData("http://orders/")]
    [InlineData("http://orders.default/")]
    [InlineData("http://orders.default.svc.cluster.local/")]
    [InlineData("http://orders:8080/")]
    public async Task GetAsync_MeshHost_SpreadsAcrossEveryEndpointWithLogicalHostHeader(string url)
    {
        await using var provider = Provider(OrdersSnapshot(port: 8080));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var seen = new HashSet<string>();
        for (var i = 0; i < 9; i++)
        {
            seen.Add(await client.GetStringAsync(new Uri(url)));
        }

        Assert.Equal(["orders-0", "orders-1", "orders-2"], seen.Order());
        Assert.All(_backends, backend => Assert.Equal(3, backend.Hits));
        var expectedHost = new Uri(url).Authority;
        Assert.All(_backends, backend => Assert.All(backend.Hosts, host => Assert.Equal(expectedHost, host)));
    }

    [Fact]
    public async Task GetAsync_NonMeshHost_GoesOutUntouched()
    {
        await using var provider = Provider(OrdersSnapshot());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var body = await client.GetStringAsync(new Uri($"http://127.0.0.1:{_backends[1].Port}/"));

        Assert.Equal("orders-1", body);
        Assert.Equal($"127.0.0.1:{_backends[1].Port}", Assert.Single(_backends[1].Hosts));
    }

    [Theory]
    [InlineData("http://orders/")]
    [InlineData("http://ORDERS.default.svc.cluster.local/")]
    public async Task Send_Synchronous_ToAMeshHost_IsRefusedNamingIt_ToOtherHostsGoesOut(string url)
    {
        await using var provider = Provider(OrdersSnapshot());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var meshRequest = new HttpRequestMessage(HttpMethod.Get, new Uri(url));
        var error = Assert.Throws<NotSupportedException>(() => client.Send(meshRequest));
        using var outsideRequest = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://127.0.0.1:{_backends[0].Port}/"));
        using var outside = client.Send(outsideRequest);

        Assert.Contains($"'{new Uri(url).Host}'", error.Message, StringComparison.Ordinal);
        Assert.Contains("SendAsync", error.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, outside.StatusCode);
        Assert.Equal(1, _backends.Sum(backend => backend.Hits)); // the refused request never left
    }

    [Fact]
    public async Task GetAsync_OptedOutClient_IsNotRouted()
    {
        var services = MeshServices.Create(new FixedSnapshotSource(OrdersSnapshot()));
        services.AddHttpClient("plain").WithoutServiceMesh();
        await using var provider = services.BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient("plain");

        // Without the mesh, "orders" goes to DNS, which does not know it.
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetStringAsync(new Uri("http://orders/")));
        Assert.All(_backends, backend => Assert.Equal(0, backend.Hits));
    }

    [Fact]
    public async Task GetAsync_NotSynced_ThrowsMeshNotSyncedNamingServiceAtOnce()
    {
        await using var provider = Provider(MeshSnapshot.Empty);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var stopwatch = Stopwatch.StartNew();
        var exception = await Assert.ThrowsAsync<MeshNotSyncedException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(2), $"took {stopwatch.Elapsed}");
        Assert.Equal("orders", exception.Service);
        Assert.Contains("'orders'", exception.Message, StringComparison.Ordinal);
        Assert.Contains(MeshServices.ControlPlane, exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GetAsync_ServiceWithoutEndpoints_ThrowsNoHealthyEndpoint()
    {
        await using var provider = Provider(TestSnapshots.Snapshot(("orders", 80, [])));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var exception = await Assert.ThrowsAsync<NoHealthyEndpointException>(() => client.GetStringAsync(new Uri("http://orders/")));

        Assert.Equal("orders", exception.Service);
        Assert.Contains("'orders'", exception.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GetAsync_OneBackendStopped_SucceedsAndEjectsTheDeadEndpoint()
    {
        var snapshot = OrdersSnapshot();
        await using var provider = Provider(snapshot);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        await _backends[0].StopAsync();

        for (var i = 0; i < 12; i++)
        {
            var body = await client.GetStringAsync(new Uri("http://orders/"));
            Assert.NotEqual("orders-0", body);
        }

        var dead = snapshot.Clusters.Values.Single().Endpoints.Single(e => e.Port == _backends[0].Port);
        Assert.True(dead.IsEjected(TimeProvider.System.GetTimestamp()));
        Assert.Equal(12, _backends[1].Hits + _backends[2].Hits);
    }

    [Fact]
    public async Task GetAsync_CallersGiveUpOnHangingEndpoints_NoneIsEjected_ButAttemptTimeoutsEject()
    {
        // Attacker's path: a caller that disconnects (its cancellation reaches the attempt) must not count as the
        // endpoint failing, or anyone who can make the app's callers give up could get healthy endpoints ejected.
        // Envoy does not count downstream resets; it counts its own timeouts.
        foreach (var backend in _backends)
        {
            backend.Hang = true;
        }

        var snapshot = OrdersSnapshot();
        var endpoints = snapshot.Clusters.Values.Single().Endpoints;
        await using (var provider = Provider(snapshot))
        {
            var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
            await Task.WhenAll(Enumerable.Range(0, 30).Select(async _ =>
            {
                using var giveUp = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.GetAsync(new Uri("http://orders/"), giveUp.Token));
            }));

            Assert.DoesNotContain(endpoints, e => e.IsEjected(TimeProvider.System.GetTimestamp()));
        }

        // The same hang, ended by the mesh's own attempt timeout: an upstream failure that counts (as Envoy's 504).
        await using (var provider = Provider(snapshot, o =>
        {
            o.Resilience.AttemptTimeout = TimeSpan.FromMilliseconds(100);
            o.Resilience.MaxRetryAttempts = 0;
        }))
        {
            var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
            await Task.WhenAll(Enumerable.Range(0, 30).Select(async _ =>
                await Assert.ThrowsAnyAsync<Exception>(() => client.GetAsync(new Uri("http://orders/")))));

            Assert.Contains(endpoints, e => e.IsEjected(TimeProvider.System.GetTimestamp()));
        }
    }

    [Fact]
    public async Task PostAsync_WithoutIdempotencyKey_IsNotRetried()
    {
        await using var provider = Provider(OrdersSnapshot());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.PostAsync(new Uri("http://orders/fail"), new StringContent("order"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(1, _backends.Sum(b => b.Hits));
    }

    [Fact]
    public async Task PostAsync_EndpointRefusesConnections_IsSentAgainToAnotherOnce()
    {
        // A refused connection sent nothing, so a POST without Idempotency-Key is retried (as Envoy's connect-failure):
        // during a rolling restart callers see no error, and the live backend gets each POST exactly once.
        using var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var closedPort = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(closedPort), TestSnapshots.Endpoint(_backends[0].Port)]);
        await using var provider = Provider(new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)), [cluster]));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 6; i++)
        {
            using var response = await client.PostAsync(new Uri("http://orders/orders"), new StringContent("order"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(6, _backends[0].Hits);
    }

    [Fact]
    public async Task PostAsync_WithIdempotencyKey_IsRetriedWithItsBody()
    {
        await using var provider = Provider(OrdersSnapshot());
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("http://orders/fail")) { Content = new StringContent("order") };
        request.Headers.Add("Idempotency-Key", "42");

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(3, _backends.Sum(b => b.Hits)); // first attempt + MaxRetryAttempts (2)
        Assert.All(_backends, backend => Assert.Equal(1, backend.Hits)); // each retry avoided the endpoint that just failed
    }

    [Fact]
    public async Task SendAsync_CircuitOpenForOneService_OtherServiceUnaffected()
    {
        var snapshot = TestSnapshots.Snapshot(
            ("orders", 80, [TestSnapshots.Endpoint(_backends[0].Port)]),
            ("payments", 80, [TestSnapshots.Endpoint(_backends[1].Port)]));
        await using var provider = Provider(snapshot, options =>
        {
            options.Resilience.MaxRetryAttempts = 0;
            options.Resilience.CircuitBreakerMinimumThroughput = 2;
            options.Resilience.CircuitBreakerFailureRatio = 0.5;
            options.Resilience.CircuitBreakerBreakDuration = TimeSpan.FromMinutes(1);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        for (var i = 0; i < 2; i++)
        {
            using var failed = await client.GetAsync(new Uri("http://payments/fail"));
            Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode);
        }

        await Assert.ThrowsAsync<CircuitOpenException>(() => client.GetAsync(new Uri("http://payments/")));
        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));
        Assert.Equal(2, _backends[1].Hits);
    }

    private static ServiceProvider Provider(MeshSnapshot snapshot, Action<ServiceMeshOptions>? configure = null) =>
        MeshServices.Create(new FixedSnapshotSource(snapshot), configure).BuildServiceProvider();

    private MeshSnapshot OrdersSnapshot(int port = 80)
    {
        var endpoints = _backends.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray();
        var cluster = TestSnapshots.Cluster("orders", 80, endpoints, outlier: OutlierDetectionSettings.Default with { Consecutive5xx = 3 });
        var services = new List<KeyValuePair<string, MeshService>>(TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, cluster)));
        if (port != 80)
        {
            services.AddRange(TestSnapshots.Bind("orders", TestSnapshots.Service("orders", port, cluster)));
        }

        return new MeshSnapshot("test", services, [cluster]);
    }
}
