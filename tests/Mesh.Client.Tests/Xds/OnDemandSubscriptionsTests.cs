using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Xds;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Xds;

/// <summary>The bookkeeping of on-demand subscriptions, on a fake clock: waits, negative cache, cap, unused sweep, warm hosts.</summary>
public sealed class OnDemandSubscriptionsTests
{
    private readonly FakeTimeProvider _time = new();

    [Fact]
    public async Task WaitAsync_ConcurrentFirstCalls_OneSubscriptionSharedWait()
    {
        using var subscriptions = Create();
        var changes = 0;
        subscriptions.OnChanged(() => changes++);

        var waits = Enumerable.Range(0, 20).Select(_ => subscriptions.WaitAsync(new Uri("http://orders/"), default)).ToList();

        Assert.Equal(1, subscriptions.SubscribeCount);
        Assert.Equal(1, changes);
        Assert.Equal(["orders"], subscriptions.ListenerNames());
        Assert.All(waits, w => Assert.False(w.IsCompleted));

        subscriptions.OnListeners(new HashSet<string> { "orders" }, _ => true);
        Assert.All(waits, w => Assert.False(w.IsCompleted)); // the listener alone is no service yet
        subscriptions.OnPublished(SnapshotWith("orders"));

        await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task WaitAsync_AbsentHost_CompletesUnsubscribesAndIsNotLookedUpAgainWithinTheTtl()
    {
        using var subscriptions = Create();
        var wait = subscriptions.WaitAsync(new Uri("http://nope:8080/"), default);
        Assert.Equal(["nope:8080"], subscriptions.ListenerNames());

        // A response that did not answer the request naming the host says nothing about it.
        subscriptions.OnListeners(new HashSet<string>(), _ => false);
        Assert.False(wait.IsCompleted);

        subscriptions.OnListeners(new HashSet<string>(), name => name == "nope:8080");
        Assert.False(wait.IsCompleted); // until the response was applied
        subscriptions.CompleteAbsent();
        await wait.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(subscriptions.ListenerNames());

        await subscriptions.WaitAsync(new Uri("http://nope:8080/"), default).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, subscriptions.SubscribeCount);

        _time.Advance(OnDemandSubscriptions.NegativeCacheTtl);
        var again = subscriptions.WaitAsync(new Uri("http://nope:8080/"), default);
        Assert.Equal(2, subscriptions.SubscribeCount);
        Assert.False(again.IsCompleted);
    }

    [Fact]
    public async Task WaitAsync_NoAnswer_CompletesAfterTheSubscriptionTimeoutAndUnsubscribes()
    {
        using var subscriptions = Create(o => o.SubscriptionTimeout = TimeSpan.FromSeconds(3));
        var wait = subscriptions.WaitAsync(new Uri("http://silent/"), default);

        _time.Advance(TimeSpan.FromSeconds(2.9));
        Assert.False(wait.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(0.1));

        await wait.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(subscriptions.ListenerNames());
    }

    [Fact]
    public async Task WaitAsync_ThousandsOfRandomHosts_NeverMoreThanTheCap_AndTheErrorNamesTheOption()
    {
        using var subscriptions = Create(o => o.MaxOnDemandServices = 100);
        var random = new Random(12);
        var refused = 0;
        for (var i = 0; i < 5000; i++)
        {
            var wait = subscriptions.WaitAsync(new Uri($"http://h{random.Next():x8}/"), default);
            if (wait.IsFaulted)
            {
                refused++;
                var error = await Assert.ThrowsAsync<ServiceMeshException>(() => wait);
                Assert.Contains("Mesh:ControlPlane:MaxOnDemandServices", error.Message, StringComparison.Ordinal);
            }

            Assert.True(subscriptions.Count <= 100);
            Assert.True(subscriptions.ListenerNames().Count <= 100);
        }

        Assert.Equal(4900, refused);

        // Found absent, they leave the subscription at once, and the cap frees up after the negative TTL.
        subscriptions.OnListeners(new HashSet<string>(), _ => true);
        Assert.Empty(subscriptions.ListenerNames());
        _time.Advance(OnDemandSubscriptions.NegativeCacheTtl);
        Assert.False(subscriptions.WaitAsync(new Uri("http://orders/"), default).IsFaulted);
        subscriptions.Sweep();
        Assert.Equal(["orders"], subscriptions.ListenerNames());
    }

    [Fact]
    public async Task Sweep_ServiceNotCalledForTheUnusedTimeout_IsUnsubscribed_CalledOneAndWarmOneStay()
    {
        using var subscriptions = Create(o =>
        {
            o.UnusedServiceTimeout = TimeSpan.FromMinutes(1);
            o.Warm.Add("inventory");
        });
        var changes = 0;
        subscriptions.OnChanged(() => changes++);
        var orders = subscriptions.WaitAsync(new Uri("http://orders/"), default);
        var ratings = subscriptions.WaitAsync(new Uri("http://ratings/"), default);
        subscriptions.OnListeners(new HashSet<string> { "orders", "ratings", "inventory" }, _ => true);
        subscriptions.OnPublished(SnapshotWith("orders", "ratings", "inventory"));
        await Task.WhenAll(orders, ratings).WaitAsync(TimeSpan.FromSeconds(10));
        changes = 0;

        // ratings is called (through its service's usage record, as the router does) every 20 s; orders never again.
        for (var i = 0; i < 4; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(20));
            subscriptions.UsageOf("ratings")!.Touch(_time.GetTimestamp(), _time.TimestampFrequency);
        }

        Assert.Equal(["inventory", "ratings"], subscriptions.ListenerNames());
        Assert.True(changes > 0);
        Assert.Null(subscriptions.UsageOf("orders"));
    }

    [Fact]
    public void Warm_SubscribedAtStart_AndAcceptedThoughNotAKubernetesName()
    {
        using var subscriptions = Create(o =>
        {
            o.Warm.Add("Payments.Example.com:8443");
            o.Warm.Add("orders");
        });

        Assert.Equal(["orders", "payments.example.com:8443"], subscriptions.ListenerNames());
        Assert.True(subscriptions.Accepts(new Uri("https://payments.example.com:8443/")));
        Assert.False(subscriptions.Accepts(new Uri("https://api.github.com/")));
        Assert.True(subscriptions.Accepts(new Uri("http://ratings.default/")));
        Assert.True(subscriptions.Accepts(new Uri("http://ratings.shop.svc.cluster.local/")));
        Assert.False(subscriptions.Accepts(new Uri("http://127.0.0.1:8080/")));
        Assert.False(subscriptions.Accepts(new Uri("http://[::1]:8080/")));
        Assert.False(subscriptions.Accepts(new Uri("http://localhost:8080/")));
        Assert.True(subscriptions.Accepts(new Uri("http://redis-0/")));
    }

    [Fact]
    public void Wildcard_Default_NothingSubscribedOnDemand()
    {
        var options = new ServiceMeshOptions();
        using var subscriptions = new OnDemandSubscriptions(Options.Create(options), new MeshHostNames("default", "cluster.local"), _time, NullLogger.Instance);

        Assert.Equal(ControlPlaneSubscriptions.Wildcard, options.ControlPlane.Subscriptions);
        Assert.False(subscriptions.Enabled);
        Assert.False(subscriptions.Accepts(new Uri("http://orders/")));
    }

    [Theory]
    [InlineData("Mesh:ControlPlane:Subscriptions", "Lazy", "Mesh:ControlPlane:Subscriptions 'Lazy' must be Wildcard or OnDemand")]
    [InlineData("Mesh:ControlPlane:SubscriptionTimeout", "00:00:00", "Mesh:ControlPlane:SubscriptionTimeout (00:00:00) must be positive")]
    [InlineData("Mesh:ControlPlane:UnusedServiceTimeout", "00:00:00.5", "Mesh:ControlPlane:UnusedServiceTimeout (00:00:00.5000000) must be at least one second")]
    [InlineData("Mesh:ControlPlane:MaxOnDemandServices", "0", "Mesh:ControlPlane:MaxOnDemandServices (0) must be at least 1")]
    [InlineData("Mesh:ControlPlane:Warm:0", "http://orders/", "Mesh:ControlPlane:Warm:0 'http://orders/' must be a service host (optionally with :port), not a URI")]
    [InlineData("Mesh:ControlPlane:Warm:0", "orders:99999", "Mesh:ControlPlane:Warm:0 'orders:99999' has port '99999', which must be a number from 1 to 65535")]
    [InlineData("Mesh:ControlPlane:Warm:0", "10.0.0.1", "Mesh:ControlPlane:Warm:0 '10.0.0.1' must be a DNS host name")]
    [InlineData("Mesh:ControlPlane:Subscription", "OnDemand", "Mesh:ControlPlane:Subscription is not a known option; did you mean Mesh:ControlPlane:Subscriptions?")]
    [InlineData("Mesh:ControlPlane:Warm:Orders", "x", "Mesh:ControlPlane:Warm:Orders is not a list index; list the values as Mesh:ControlPlane:Warm:0")]
    public async Task StartAsync_InvalidSubscriptionOption_FailsNamingTheKey(string key, string value, string expected)
    {
        using var host = Build(new() { [key] = value });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_WarmListLongerThanTheCap_FailsNamingBothKeys()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:MaxOnDemandServices"] = "1",
            ["Mesh:ControlPlane:Warm:0"] = "orders",
            ["Mesh:ControlPlane:Warm:1"] = "ratings",
        });

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains("Mesh:ControlPlane:Warm lists 2 hosts, more than Mesh:ControlPlane:MaxOnDemandServices (1)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StartAsync_OnDemandOptions_Bound()
    {
        using var host = Build(new()
        {
            ["Mesh:ControlPlane:Subscriptions"] = "ondemand",
            ["Mesh:ControlPlane:Warm:0"] = "orders",
            ["Mesh:ControlPlane:Warm:1"] = "payments.example.com:8443",
            ["Mesh:ControlPlane:SubscriptionTimeout"] = "00:00:02",
            ["Mesh:ControlPlane:UnusedServiceTimeout"] = "00:05:00",
            ["Mesh:ControlPlane:MaxOnDemandServices"] = "50",
        });

        await host.StartAsync();
        var options = host.Services.GetRequiredService<IOptions<ServiceMeshOptions>>().Value.ControlPlane;
        var client = host.Services.GetRequiredService<XdsClient>();
        await host.StopAsync();

        Assert.Equal(["orders", "payments.example.com:8443"], options.Warm);
        Assert.Equal((TimeSpan.FromSeconds(2), TimeSpan.FromMinutes(5), 50), (options.SubscriptionTimeout, options.UnusedServiceTimeout, options.MaxOnDemandServices));
        Assert.True(client.OnDemand!.Enabled);
        Assert.Equal(["orders", "payments.example.com:8443"], client.OnDemand.ListenerNames());
    }

    [Fact]
    public async Task Route_KnownServiceOnDemand_AllocatesNothing_AndRecordsTheCall()
    {
        using var subscriptions = Create();
        var wait = subscriptions.WaitAsync(new Uri("http://orders/"), default);
        subscriptions.OnListeners(new HashSet<string> { "orders" }, _ => true);
        var usage = subscriptions.UsageOf("orders")!;
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(9000), TestSnapshots.Endpoint(9001)]);
        var service = new MeshService("orders", "orders", 80, [new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)])]) { Usage = usage };
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [cluster]);
        subscriptions.OnPublished(snapshot);
        await wait.WaitAsync(TimeSpan.FromSeconds(10));
        var router = new MeshRouter(new OnDemandSource(snapshot, subscriptions), TestSnapshots.Names);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/api");
        _time.Advance(TimeSpan.FromSeconds(30));
        var now = _time.GetTimestamp();
        Assert.Equal(RouteStatus.Routed, router.Route(request, now, _time.TimestampFrequency, null, out _, out _, out _));
        Assert.Equal(now, usage.LastUsed);
        Assert.Same(subscriptions, router.OnDemand);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            router.Route(request, now + i, _time.TimestampFrequency, null, out _, out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(now, usage.LastUsed); // within the same second: no write
    }

    private static IHost Build(Dictionary<string, string?> settings)
    {
        settings["Mesh:ControlPlane:Address"] = "http://127.0.0.1:1";
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(settings);
        builder.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
        builder.AddServiceMesh();
        return builder.Build();
    }

    private static MeshSnapshot SnapshotWith(params string[] listeners) => new(
        "1",
        listeners.Select(l => new KeyValuePair<string, MeshService>(l, new MeshService(l, l, 80, []))),
        []);

    private OnDemandSubscriptions Create(Action<ControlPlaneOptions>? configure = null)
    {
        var options = new ServiceMeshOptions();
        options.ControlPlane.Subscriptions = ControlPlaneSubscriptions.OnDemand;
        configure?.Invoke(options.ControlPlane);
        return new OnDemandSubscriptions(Options.Create(options), new MeshHostNames("default", "cluster.local"), _time, NullLogger.Instance);
    }

    private sealed class OnDemandSource(MeshSnapshot snapshot, OnDemandSubscriptions onDemand) : IMeshSnapshotSource
    {
        public MeshSnapshot Current => snapshot;

        public OnDemandSubscriptions? OnDemand => onDemand;

        public Microsoft.Extensions.Primitives.IChangeToken GetChangeToken() => new Microsoft.Extensions.Primitives.CancellationChangeToken(CancellationToken.None);
    }
}
