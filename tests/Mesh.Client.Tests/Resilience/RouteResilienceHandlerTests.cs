using System.Diagnostics;
using System.Globalization;
using System.Net;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Resilience;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RetryPolicy = Mesh.Xds.Envoy.Config.Route.V3.RetryPolicy;
using RouteAction = Mesh.Xds.Envoy.Config.Route.V3.RouteAction;

namespace Mesh.Client.Tests.Resilience;

/// <summary>
/// A route's timeout and retries from RDS against real Kestrel backends on 127.0.0.1: they win over
/// <c>Mesh:Resilience</c>, which stays in charge of what the route leaves unset.
/// </summary>
public sealed class RouteResilienceHandlerTests : IAsyncLifetime
{
    private readonly List<StatusBackend> _backends = [];

    public async Task InitializeAsync()
    {
        for (var i = 0; i < 2; i++)
        {
            _backends.Add(await StatusBackend.StartAsync($"orders-{i}"));
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
    public async Task RouteTimeout_ShorterThanMeshResilience_CutsTheCall_AndNamesTheRoute()
    {
        _backends[0].Hang = true;
        var action = new RouteAction { Timeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(300)) };
        await using var provider = Provider(action, options =>
        {
            options.Resilience.TotalTimeout = TimeSpan.FromSeconds(60);
            options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(60);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.IsType<TimeoutException>(error.InnerException);
        Assert.Contains("timeout of route 'default'", error.Message, StringComparison.Ordinal);
        Assert.Contains("0.3 s", error.Message, StringComparison.Ordinal);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
    }

    [Fact]
    public async Task RouteTimeout_LongerThanMeshResilience_LetsASlowAnswerThrough()
    {
        var action = new RouteAction { Timeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(20)) };
        await using var provider = Provider(action, options =>
        {
            options.Resilience.TotalTimeout = TimeSpan.FromMilliseconds(200);
            options.Resilience.AttemptTimeout = TimeSpan.FromMilliseconds(200);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/delay/600")));
    }

    [Fact]
    public async Task NoRoutePolicy_MeshResilienceApplies()
    {
        await using var provider = Provider(action: null, options =>
        {
            // Generous: the warm-up's cold connection runs under it on a loaded machine; the hang is cut either way.
            options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(3);
            options.Resilience.MaxRetryAttempts = 0;
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var before = await WarmUpThenHangAsync(client);

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.Contains("Mesh:Resilience:AttemptTimeout", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, _backends[0].Hits - before);
    }

    [Fact]
    public async Task ZeroRouteTimeout_AsIstiodSendsWithoutAVirtualServiceTimeout_MeshResilienceApplies()
    {
        _backends[0].Hang = true;
        var action = new RouteAction { Timeout = new Duration() };
        await using var provider = Provider(action, options =>
        {
            options.Resilience.TotalTimeout = TimeSpan.FromMilliseconds(300);
            options.Resilience.AttemptTimeout = TimeSpan.FromMilliseconds(300);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.Contains("Mesh:Resilience:TotalTimeout", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RetryOn5xx_RetriesA500_UpToNumRetries()
    {
        await using var provider = Provider(Retry("5xx", retries: 2), options => options.Resilience.MaxRetryAttempts = 0);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/status/500"));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Equal(3, _backends[0].Hits);
    }

    [Fact]
    public async Task RetryOnGatewayError_DoesNotRetryA500_RetriesA503()
    {
        await using var provider = Provider(Retry("gateway-error", retries: 2), options => options.Resilience.MaxRetryAttempts = 2);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using (var response = await client.GetAsync(new Uri("http://orders/status/500")))
        {
            Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
            Assert.Equal(1, _backends[0].Hits); // Mesh:Resilience alone would have retried it twice
        }

        using (var response = await client.GetAsync(new Uri("http://orders/status/503")))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal(4, _backends[0].Hits);
        }
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(4, 5)]
    public async Task NumRetries_BoundsAttempts_WhateverMeshResilienceSays(int retries, int attempts)
    {
        await using var provider = Provider(Retry("5xx", retries), options => options.Resilience.MaxRetryAttempts = 2);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using var response = await client.GetAsync(new Uri("http://orders/status/502"));

        Assert.Equal(attempts, _backends[0].Hits);
    }

    [Fact]
    public async Task PerTryTimeout_CutsASlowAttempt_TheRetryAnswers()
    {
        _backends[0].Hang = true;
        var action = Retry("reset", retries: 1);
        action.RetryPolicy.PerTryTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(3));
        action.Timeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(30));
        await using var provider = Provider(action, options => options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(30), _backends[0], _backends[1]);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var clock = Stopwatch.StartNew();

        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("orders-1", await client.GetStringAsync(new Uri("http://orders/")));
        }

        Assert.InRange(_backends[0].Hits, 1, 4); // round robin sent some first attempts to the hanging endpoint
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(28), $"took {clock.Elapsed}: the per-try timeout did not cut the attempts");
    }

    [Fact]
    public async Task RouteTimeout_CoversAllAttempts()
    {
        var action = Retry("reset", retries: 10);
        // Attempts of 1.5 s under a 4 s route timeout: long enough for the warm-up's cold connection on a loaded machine.
        action.RetryPolicy.PerTryTimeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(1500));
        action.Timeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(4));
        await using var provider = Provider(action, options => options.Resilience.TotalTimeout = TimeSpan.FromSeconds(60));
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var before = await WarmUpThenHangAsync(client);

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.Contains("timeout of route 'default'", error.Message, StringComparison.Ordinal);
        Assert.InRange(_backends[0].Hits - before, 1, 3); // 1.5 s + 1.5 s + what is left of 4 s: never 11 attempts
    }

    [Fact]
    public async Task PerTryTimeout_NoRetryLeft_NamesTheRoutesPerTryTimeout()
    {
        var action = Retry("5xx", retries: 0);
        action.RetryPolicy.PerTryTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(3));
        await using var provider = Provider(action, options =>
        {
            options.Resilience.TotalTimeout = TimeSpan.FromSeconds(60);
            options.Resilience.AttemptTimeout = TimeSpan.FromSeconds(60);
        });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        var before = await WarmUpThenHangAsync(client);

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/")));

        Assert.Contains("retry_policy.per_try_timeout of route 'default'", error.Message, StringComparison.Ordinal);
        Assert.Equal(1, _backends[0].Hits - before);
    }

    [Fact]
    public async Task Post_WithoutIdempotencyKey_IsNeverRetried_WithOneItIs()
    {
        await using var provider = Provider(Retry("5xx,reset,connect-failure", retries: 3), options => { });
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using (var response = await client.PostAsync(new Uri("http://orders/status/500"), new ByteArrayContent([1, 2, 3])))
        {
            Assert.Equal(1, _backends[0].Hits);
        }

        using var keyed = new HttpRequestMessage(HttpMethod.Post, new Uri("http://orders/status/500")) { Content = new ByteArrayContent([1, 2, 3]) };
        keyed.Headers.Add("Idempotency-Key", "order-42");
        using (var response = await client.SendAsync(keyed))
        {
            Assert.Equal(5, _backends[0].Hits);
        }
    }

    [Fact]
    public async Task GrpcStatusInResponseHeaders_RetriedByItsRetryOnCode_NotBy5xx()
    {
        await using var provider = Provider(Retry("unavailable", retries: 2), options => options.Resilience.MaxRetryAttempts = 0);
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        Assert.Equal("14", await GrpcStatusOf(client, "/grpc/14"));
        Assert.Equal(3, _backends[0].Hits);
        Assert.Equal("13", await GrpcStatusOf(client, "/grpc/13"));
        Assert.Equal(4, _backends[0].Hits);

        await using var fiveXx = Provider(Retry("5xx", retries: 2), options => options.Resilience.MaxRetryAttempts = 0);
        Assert.Equal("14", await GrpcStatusOf(fiveXx.GetRequiredService<IHttpClientFactory>().CreateClient(), "/grpc/14"));
        Assert.Equal(5, _backends[0].Hits);
    }

    [Fact]
    public async Task TheMatchingRoutesPolicyApplies_OtherRoutesKeepMeshResilience()
    {
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(_backends[0].Port)]);
        var errors = new List<string>();
        var retrying = new MeshRoute("/status/503", null, true, [new WeightedCluster(cluster, 1)], name: "retrying")
        {
            Resilience = RouteResilience.Decode(Retry("gateway-error", retries: 2), hostPolicy: null, "route", errors),
        };
        var plain = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default");
        Assert.Empty(errors);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, retrying, plain)), [cluster]);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot), options => options.Resilience.MaxRetryAttempts = 0).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();

        using (await client.GetAsync(new Uri("http://orders/status/503")))
        {
            Assert.Equal(3, _backends[0].Hits);
        }

        using (await client.GetAsync(new Uri("http://orders/status/502")))
        {
            Assert.Equal(4, _backends[0].Hits); // the default route sets nothing: MaxRetryAttempts 0
        }
    }

    [Fact]
    public async Task SamePolicyOnEveryRoute_AppliesWithoutMatchingTwice_TheTimeoutNamesTheRequestsRoute()
    {
        // As istiod sends a VirtualService's routes: each its own copy of one policy. The handler reads it without
        // matching the route; the timeout's message still names the route the request took, not the first one.
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(_backends[0].Port)]);
        var errors = new List<string>();
        var action = new RouteAction { Timeout = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(300)) };
        var first = new MeshRoute("/reports", null, true, [new WeightedCluster(cluster, 1)], name: "reports")
        {
            Resilience = RouteResilience.Decode(action, hostPolicy: null, "route", errors),
        };
        var second = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default")
        {
            Resilience = RouteResilience.Decode(action, hostPolicy: null, "route", errors),
        };
        Assert.Empty(errors);
        var service = TestSnapshots.Service("orders", 80, first, second);
        Assert.True(service.ResilienceIsUniform);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [cluster]);
        await using var provider = MeshServices.Create(new FixedSnapshotSource(snapshot), options => options.Resilience.TotalTimeout = TimeSpan.FromSeconds(60)).BuildServiceProvider();
        var client = provider.GetRequiredService<IHttpClientFactory>().CreateClient();
        _backends[0].Hang = true;

        var error = await Assert.ThrowsAsync<TaskCanceledException>(() => client.GetAsync(new Uri("http://orders/orders/1")));

        Assert.Contains("timeout of route 'default'", error.Message, StringComparison.Ordinal);
        Assert.Contains("0.3 s", error.Message, StringComparison.Ordinal);
    }

    /// <summary>One answered call first, so the connection exists and the timed attempt reaches the backend in time.</summary>
    private async Task<int> WarmUpThenHangAsync(HttpClient client)
    {
        Assert.Equal("orders-0", await client.GetStringAsync(new Uri("http://orders/")));
        _backends[0].Hang = true;
        return _backends[0].Hits;
    }

    private static async Task<string> GrpcStatusOf(HttpClient client, string path)
    {
        // A unary gRPC call as bytes: POST with an Idempotency-Key (the client retries no POST without one).
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri("http://orders" + path)) { Content = new ByteArrayContent([0, 0, 0, 0, 0]) };
        request.Content.Headers.ContentType = new("application/grpc");
        request.Headers.Add("Idempotency-Key", "call-1");
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return string.Join(',', response.Headers.GetValues("grpc-status"));
    }

    private static RouteAction Retry(string retryOn, int retries) => new()
    {
        RetryPolicy = new RetryPolicy
        {
            RetryOn = retryOn,
            NumRetries = (uint)retries,
            RetryBackOff = new() { BaseInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(1)) },
        },
    };

    private ServiceProvider Provider(RouteAction? action, Action<ServiceMeshOptions> configure, params StatusBackend[] backends)
    {
        var targets = backends.Length > 0 ? backends : [_backends[0]];
        var cluster = TestSnapshots.Cluster("orders", 80, targets.Select(b => TestSnapshots.Endpoint(b.Port)).ToArray());
        var errors = new List<string>();
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], name: "default")
        {
            Resilience = action is null ? null : RouteResilience.Decode(action, hostPolicy: null, "route", errors),
        };
        Assert.Empty(errors);
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [cluster]);
        return MeshServices.Create(new FixedSnapshotSource(snapshot), configure).BuildServiceProvider();
    }

    /// <summary>
    /// A real Kestrel backend on 127.0.0.1, port 0: <c>/status/N</c> answers N, <c>/grpc/N</c> a trailers-only style
    /// gRPC answer (200 with <c>grpc-status: N</c> in the headers), <c>/delay/ms</c> answers after that long, anything
    /// else its name; with <see cref="Hang"/> every request waits until the client gives up.
    /// </summary>
    private sealed class StatusBackend : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _hits;

        private StatusBackend(WebApplication app) => _app = app;

        public int Port { get; private set; }

        public int Hits => Volatile.Read(ref _hits);

        public bool Hang { get; set; }

        public static async Task<StatusBackend> StartAsync(string name)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(kestrel => kestrel.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            var self = new StatusBackend(app);
            app.Run(async context =>
            {
                Interlocked.Increment(ref self._hits);
                var path = context.Request.Path.Value ?? string.Empty;
                if (self.Hang)
                {
                    await Task.Delay(Timeout.Infinite, context.RequestAborted).ContinueWith(static _ => { }, TaskScheduler.Default);
                }
                else if (path.StartsWith("/status/", StringComparison.Ordinal))
                {
                    context.Response.StatusCode = int.Parse(path["/status/".Length..], CultureInfo.InvariantCulture);
                }
                else if (path.StartsWith("/grpc/", StringComparison.Ordinal))
                {
                    context.Response.ContentType = "application/grpc";
                    context.Response.Headers["grpc-status"] = path["/grpc/".Length..];
                }
                else if (path.StartsWith("/delay/", StringComparison.Ordinal))
                {
                    await Task.Delay(int.Parse(path["/delay/".Length..], CultureInfo.InvariantCulture), context.RequestAborted);
                    await context.Response.WriteAsync(name);
                }
                else
                {
                    await context.Response.WriteAsync(name);
                }
            });
            await app.StartAsync();
            var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
            self.Port = new Uri(address).Port;
            return self;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
