using System.Net;
using Mesh.Client.Discovery;
using Mesh.Client.Http;
using Mesh.Client.Routing;
using Mesh.Client.Tests.Grpc;
using Mesh.Client.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Http;

/// <summary>Route features as the client applies them: the guarantees a caller relies on, and the ways to break them.</summary>
public sealed class MeshRouteFeaturesHandlerTests : IAsyncLifetime
{
    private const string Host = "orders.default.svc.cluster.local";
    private TestBackend _shadow = null!;

    public async Task InitializeAsync() => _shadow = await TestBackend.StartAsync("shadow");

    public async Task DisposeAsync()
    {
        // Requests the shadow still holds are aborted at once rather than after the graceful-shutdown timeout.
        using (var abortHeld = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await _shadow.StopAsync(abortHeld.Token);
        }

        await _shadow.DisposeAsync();
    }

    private static MeshCluster Cluster(string subset, params MeshEndpoint[] endpoints) =>
        new($"outbound|80|{subset}|{Host}", Host, LoadBalancingPolicy.RoundRobin, [.. endpoints]);

    private static (FixedSnapshotSource Source, MeshCluster Main, MeshCluster Other) Snapshot(RouteFeatures features, MeshCluster? mirror = null)
    {
        var main = Cluster("main", TestSnapshots.Endpoint(1));
        var other = Cluster("other", TestSnapshots.Endpoint(2));
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute("/api", null, true, [new WeightedCluster(main, 1)], features: features),
            new MeshRoute("/v2", null, true, [new WeightedCluster(other, 1)]),
            new MeshRoute("/", null, true, [new WeightedCluster(main, 1)]));
        var clusters = mirror is null ? new[] { main, other } : [main, other, mirror];
        return (new FixedSnapshotSource(new MeshSnapshot("1", TestSnapshots.Bind("orders", service), clusters)), main, other);
    }

    /// <summary>The handler over an inner handler that records the cluster the router picks for each attempt, and answers 200.</summary>
    private static (MeshRouteFeaturesHandler Handler, HttpMessageInvoker Invoker, List<(string Cluster, Uri Uri, string? Host)> Seen, ServiceProvider Provider) Build(
        FixedSnapshotSource source,
        TimeProvider? time = null)
    {
        var provider = MeshServices.Create(source).BuildServiceProvider();
        var router = provider.GetRequiredService<MeshRouter>();
        var seen = new List<(string, Uri, string?)>();
        var handler = new MeshRouteFeaturesHandler(router, provider.GetRequiredService<EndpointConnectionPools>(), time ?? TimeProvider.System, NullLogger.Instance)
        {
            InnerHandler = new Recorder(router, seen),
        };
        return (handler, new HttpMessageInvoker(handler), seen, provider);
    }

    [Fact]
    public async Task Rewrite_PathThatAnotherRouteMatches_StaysOnTheRouteItMatchedFirst()
    {
        var (source, main, _) = Snapshot(new RouteFeatures { PrefixRewrite = "/v2/api", HostRewrite = "backend.internal" });
        var (_, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/items?q=1"), CancellationToken.None);

        // Envoy routes once, then rewrites: "/v2/api/items" would match the /v2 route, but the request stays on /api's.
        var (cluster, uri, host) = Assert.Single(seen);
        Assert.Equal(main.Name, cluster);
        Assert.Equal("/v2/api/items?q=1", uri.PathAndQuery);
        Assert.Equal("backend.internal", host);
    }

    [Theory]
    [InlineData("http://orders/api/evil.example/x", "/", "//evil.example/x")]
    [InlineData("http://orders/api//evil.example/x", "/", "///evil.example/x")]
    public async Task Rewrite_ToAPathStartingWithTwoSlashes_KeepsTheHost(string request, string prefixRewrite, string expectedPath)
    {
        // Attacker's path: "//host/x" resolved as a relative reference would send the request (and its headers) to another
        // host, outside the mesh. Envoy sends such a path as it is, to the route's cluster.
        var (source, main, _) = Snapshot(new RouteFeatures { PrefixRewrite = prefixRewrite });
        var (_, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, request), CancellationToken.None);

        var (cluster, uri, _) = Assert.Single(seen);
        Assert.Equal(main.Name, cluster);
        Assert.Equal("orders", uri.Host);
        Assert.Equal(expectedPath, uri.AbsolutePath);
    }

    [Fact]
    public async Task RegexRewrite_ReplacesEveryMatchWithCaptures()
    {
        var features = new RouteFeatures { RegexRewrite = new System.Text.RegularExpressions.Regex("^/api/([^/]+)/(.*)$"), RegexSubstitution = RouteFeatures.ToDotNetSubstitution("/\\2/\\1") };
        var (source, _, _) = Snapshot(features);
        var (_, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/v1/orders?x=1"), CancellationToken.None);

        Assert.Equal("/orders/v1?x=1", Assert.Single(seen).Uri.PathAndQuery);
    }

    [Fact]
    public async Task FaultDelay_HoldsTheRequestForTheDelay_ThenSendsIt()
    {
        var time = new FakeTimeProvider();
        var (source, _, _) = Snapshot(new RouteFeatures { Delay = new FaultDelay(TimeSpan.FromSeconds(5), PerMillion.All) });
        var (_, invoker, seen, provider) = Build(source, time);
        await using var _ = provider;

        var pending = invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/x"), CancellationToken.None);
        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.False(pending.IsCompleted);
        Assert.Empty(seen);

        time.Advance(TimeSpan.FromSeconds(0.2));
        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Single(seen);
    }

    [Fact]
    public async Task FaultAbort_HttpRequest_AnswersTheStatusWithoutSending()
    {
        var (source, _, _) = Snapshot(new RouteFeatures { Abort = new FaultAbort(503, null, PerMillion.All) });
        var (_, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/x"), CancellationToken.None);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Empty(seen);
    }

    [Fact]
    public async Task FaultAbort_GrpcStatusOnAGrpcCall_IsATrailersOnlyResponseGrpcReads()
    {
        await using var backend = await TestBackend.StartAsync("orders-grpc", grpc: true);
        var cluster = TestSnapshots.Cluster("orders", 80, [TestSnapshots.Endpoint(backend.Port)]);
        var features = new RouteFeatures { Abort = new FaultAbort(RouteFeatures.GrpcToHttpStatus(14), 14, PerMillion.All) };
        var service = TestSnapshots.Service("orders", 80, new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)], features: features));
        var services = MeshServices.Create(new FixedSnapshotSource(new MeshSnapshot("1", TestSnapshots.Bind("orders", service), [cluster])));
        services.AddGrpcClient<Greeter.GreeterClient>(o => o.Address = new Uri("http://orders"));
        await using var provider = services.BuildServiceProvider();

        var error = await Assert.ThrowsAsync<global::Grpc.Core.RpcException>(async () => await provider.GetRequiredService<Greeter.GreeterClient>().HelloAsync(new HelloRequest { Name = "x" }));

        Assert.Equal(global::Grpc.Core.StatusCode.Unavailable, error.StatusCode);
        Assert.Equal("fault filter abort", error.Status.Detail);
        Assert.Equal(0, backend.Hits);
    }

    [Fact]
    public async Task Mirrors_BeyondTheBound_AreDropped_AndTheCallerNeverWaits()
    {
        _shadow.Hang = true;
        var mirror = Cluster("shadow", TestSnapshots.Endpoint(_shadow.Port));
        var (source, _, _) = Snapshot(new RouteFeatures { Mirrors = [new RouteMirror(mirror, PerMillion.All)] }, mirror);
        var (handler, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        const int requests = MeshRouteFeaturesHandler.MaxMirrorsInFlight + 16;
        for (var i = 0; i < requests; i++)
        {
            using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, $"http://orders/api/{i}") { Content = new StringContent($"body-{i}") }, CancellationToken.None)
                .WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Every caller request completed while the shadow holds every copy it got; the copies beyond the bound were never started.
        Assert.Equal(requests, seen.Count);
        Assert.Equal(MeshRouteFeaturesHandler.MaxMirrorsInFlight, handler.MirrorsInFlight);
        await Poll.UntilAsync(() => _shadow.Hits == MeshRouteFeaturesHandler.MaxMirrorsInFlight, "the bounded number of mirrors to reach the shadow");

        // The shadow going away fails every held mirror: the slots come back, and nothing reaches the callers.
        using (var abortHeld = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await _shadow.StopAsync(abortHeld.Token);
        }

        await Poll.UntilAsync(() => handler.MirrorsInFlight == 0, "failed mirrors to give their slots back");
        using var after = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/after"), CancellationToken.None);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Mirror_StreamedBody_IsNotMirrored_ButABufferedOneIs()
    {
        _shadow.Hang = true;
        var mirror = Cluster("shadow", TestSnapshots.Endpoint(_shadow.Port));
        var (source, _, _) = Snapshot(new RouteFeatures { Mirrors = [new RouteMirror(mirror, PerMillion.All)] }, mirror);
        var (handler, invoker, _, provider) = Build(source);
        await using var _ = provider;

        using (var streamed = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://orders/api/s") { Content = new StreamContent(new MemoryStream([1, 2, 3])) }, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, streamed.StatusCode);
        }

        Assert.Equal(0, handler.MirrorsInFlight);

        using (var buffered = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://orders/api/b") { Content = new ByteArrayContent([1, 2, 3]) }, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, buffered.StatusCode);
        }

        Assert.Equal(1, handler.MirrorsInFlight);
        await Poll.UntilAsync(() => _shadow.Hits == 1, "the buffered request's copy to reach the shadow");
    }

    [Fact]
    public async Task Mirror_BodyOverTheBufferLimit_IsNotMirrored_AndTheCallerIsServed()
    {
        var mirror = Cluster("shadow", TestSnapshots.Endpoint(_shadow.Port));
        var (source, _, _) = Snapshot(new RouteFeatures { Mirrors = [new RouteMirror(mirror, PerMillion.All)] }, mirror);
        var (handler, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using (var large = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://orders/api/large") { Content = new ByteArrayContent(new byte[MeshRouteFeaturesHandler.MaxMirrorBodyBytes + 1]) }, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, large.StatusCode);
        }

        Assert.Equal(0, handler.MirrorsInFlight);
        Assert.Equal(0, mirror.Traffic.ActiveRequests);

        // Another spelling of the same size: a hand-set Content-Length below the real body does not get it past the cap.
        var lying = new ByteArrayContent(new byte[MeshRouteFeaturesHandler.MaxMirrorBodyBytes + 1]);
        lying.Headers.ContentLength = 10;
        using (var spoofed = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://orders/api/spoofed") { Content = lying }, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, spoofed.StatusCode);
        }

        Assert.Equal(0, handler.MirrorsInFlight);
        using (var atLimit = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Post, "http://orders/api/at-limit") { Content = new ByteArrayContent(new byte[MeshRouteFeaturesHandler.MaxMirrorBodyBytes]) }, CancellationToken.None))
        {
            Assert.Equal(HttpStatusCode.OK, atLimit.StatusCode);
        }

        await Poll.UntilAsync(() => _shadow.Hits == 1 && handler.MirrorsInFlight == 0, "the copy of the body at the limit to reach the shadow");
        Assert.Equal(3, seen.Count);
        Assert.Equal(1, _shadow.Hits); // only the body at the limit was mirrored
    }

    [Fact]
    public async Task Mirror_MirrorClusterAtMaxRequests_MirrorIsDropped_TheCallerIsNotAffected()
    {
        _shadow.Hang = true;
        var mirror = new MeshCluster($"outbound|80|shadow|{Host}", Host, LoadBalancingPolicy.RoundRobin, [TestSnapshots.Endpoint(_shadow.Port)], limits: new ClusterLimits { MaxRequests = 2 });
        var (source, _, _) = Snapshot(new RouteFeatures { Mirrors = [new RouteMirror(mirror, PerMillion.All)] }, mirror);
        var (handler, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        for (var i = 0; i < 6; i++)
        {
            using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, $"http://orders/api/{i}"), CancellationToken.None)
                .WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The shadow holds two copies: the cluster's max_requests. The other four were never started.
        Assert.Equal(6, seen.Count);
        Assert.Equal(2, handler.MirrorsInFlight);
        Assert.Equal(2, mirror.Traffic.ActiveRequests);
        await Poll.UntilAsync(() => _shadow.Hits == 2, "two mirrors to reach the shadow");

        using (var abortHeld = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await _shadow.StopAsync(abortHeld.Token);
        }

        // Failed mirrors give back the cluster's request slots too.
        await Poll.UntilAsync(() => mirror.Traffic.ActiveRequests == 0 && handler.MirrorsInFlight == 0, "failed mirrors to give their slots back");
        Assert.Equal(2, _shadow.Hits);
    }

    [Fact]
    public async Task Mirror_CallerCancelsAfterItsAnswer_TheCopyStillArrives()
    {
        var mirror = Cluster("shadow", TestSnapshots.Endpoint(_shadow.Port));
        var (source, _, _) = Snapshot(new RouteFeatures { Mirrors = [new RouteMirror(mirror, PerMillion.All)] }, mirror);
        var (_, invoker, _, provider) = Build(source);
        await using var _ = provider;
        using var cancel = new CancellationTokenSource();

        using (await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/api/x"), cancel.Token))
        {
            await cancel.CancelAsync();
        }

        await Poll.UntilAsync(() => _shadow.Hits == 1, "the copy to reach the shadow though the caller cancelled");
        Assert.Equal("orders", Assert.Single(_shadow.Hosts));
    }

    [Theory]
    [InlineData("http://orders/old/a?x=1", null, null, 0, "/new", false, "http://orders/new?x=1")]
    [InlineData("http://orders/old/a?x=1", "https", "elsewhere.example", 0, "/new?y=2", false, "https://elsewhere.example/new?y=2")]
    [InlineData("http://orders:8080/old/a?x=1", null, "elsewhere.example", 0, null, true, "http://elsewhere.example/old/a")] // host_redirect: no request port
    [InlineData("http://orders:8080/old/a", null, "elsewhere.example", 9000, null, false, "http://elsewhere.example:9000/old/a")]
    [InlineData("http://orders:8080/old/a", "https", null, 0, null, false, "https://orders:8080/old/a")] // not the old scheme's default: kept
    [InlineData("http://orders:8080/old/a", null, null, 9000, null, false, "http://orders:9000/old/a")]
    [InlineData("http://orders/old/a", null, null, 8443, null, false, "http://orders:8443/old/a")]
    [InlineData("http://orders/old/a", "https", null, 0, null, false, "https://orders/old/a")]
    [InlineData("http://orders/old/a", null, "::1", 9000, null, false, "http://[::1]:9000/old/a")] // an IPv6 host_redirect, bracketed
    public async Task Redirect_BuildsLocationAsEnvoy(string url, string? scheme, string? host, int port, string? path, bool stripQuery, string expected)
    {
        var features = new RouteFeatures
        {
            Redirect = new RouteRedirect(scheme, host, port, path, null, stripQuery, HttpStatusCode.PermanentRedirect),
            ResponseHeaders = new HeaderMutations([new HeaderMutation("x-served-by", "mesh", HeaderAppendAction.OverwriteIfExistsOrAdd)], []),
        };
        var service = TestSnapshots.Service("orders", 80, new MeshRoute("/old", null, true, [], features: features));
        var service8080 = TestSnapshots.Service("orders", 8080, new MeshRoute("/old", null, true, [], features: features));
        var source = new FixedSnapshotSource(new MeshSnapshot("1", [.. TestSnapshots.Bind("orders", service), .. TestSnapshots.Bind("orders", service8080)], []));
        var (_, invoker, seen, provider) = Build(source);
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, url), CancellationToken.None);

        Assert.Equal(HttpStatusCode.PermanentRedirect, response.StatusCode);
        Assert.Equal(new Uri(expected), response.Headers.Location);
        Assert.Equal("mesh", Assert.Single(response.Headers.GetValues("x-served-by")));
        Assert.Empty(seen);
    }

    [Fact]
    public async Task Redirect_PrefixRewrite_ReplacesTheMatchedPrefixAndKeepsTheQuery()
    {
        // VirtualService redirect.prefixRewrite, which istiod sends as RedirectAction.prefix_rewrite.
        var features = new RouteFeatures { Redirect = new RouteRedirect(null, null, 0, null, "/new", false, HttpStatusCode.Found) };
        var service = TestSnapshots.Service("orders", 80, new MeshRoute("/old", null, true, [], features: features));
        var (_, invoker, seen, provider) = Build(new FixedSnapshotSource(new MeshSnapshot("1", [.. TestSnapshots.Bind("orders", service)], [])));
        await using var _ = provider;

        using var response = await invoker.SendAsync(new HttpRequestMessage(HttpMethod.Get, "http://orders/old/a?x=1"), CancellationToken.None);

        Assert.Equal(new Uri("http://orders/new/a?x=1"), response.Headers.Location);
        Assert.Empty(seen);
    }

    [Fact]
    public async Task Redirect_HostHeaderThatMakesNoUri_UsesTheRequestUrisHost()
    {
        var features = new RouteFeatures { Redirect = new RouteRedirect(null, null, 0, "/new", null, false, HttpStatusCode.Found) };
        var service = TestSnapshots.Service("orders", 80, new MeshRoute("/old", null, true, [], features: features));
        var (_, invoker, seen, provider) = Build(new FixedSnapshotSource(new MeshSnapshot("1", [.. TestSnapshots.Bind("orders", service)], [])));
        await using var _ = provider;
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/old/a");
        request.Headers.TryAddWithoutValidation("Host", "bad host");

        using var response = await invoker.SendAsync(request, CancellationToken.None);

        Assert.Equal(new Uri("http://orders/new"), response.Headers.Location);
        Assert.Empty(seen);
    }

    [Fact]
    public async Task LocalResponseRoute_ReachedWithoutTheFeaturesHandler_IsNotSentAnywhere()
    {
        var features = new RouteFeatures { DirectResponse = new RouteDirectResponse(HttpStatusCode.ServiceUnavailable, "down"u8.ToArray()) };
        var service = TestSnapshots.Service("orders", 80, new MeshRoute("/", null, true, [], features: features));
        var router = new MeshRouter(new FixedSnapshotSource(new MeshSnapshot("1", TestSnapshots.Bind("orders", service), [])), TestSnapshots.Names);

        var status = router.Route(new HttpRequestMessage(HttpMethod.Get, "http://orders/x"), 0, null, out _, out var cluster, out var endpoint);

        Assert.Equal(RouteStatus.LocalResponse, status);
        Assert.Null(cluster);
        Assert.Null(endpoint);
    }

    [Fact]
    public async Task HeaderMutations_RemoveThenSetAndAppend_AsEnvoy()
    {
        var features = new RouteFeatures
        {
            RequestHeaders = new HeaderMutations(
                [
                    new HeaderMutation("x-env", "mesh", HeaderAppendAction.OverwriteIfExistsOrAdd),
                    new HeaderMutation("x-trace", "added", HeaderAppendAction.AppendIfExistsOrAdd),
                    new HeaderMutation("x-once", "mesh", HeaderAppendAction.AddIfAbsent),
                    new HeaderMutation("x-only-if", "mesh", HeaderAppendAction.OverwriteIfExists),
                    new HeaderMutation("content-language", "fr", HeaderAppendAction.OverwriteIfExistsOrAdd),
                ],
                ["x-secret"]),
        };
        var (source, _, _) = Snapshot(features);
        var provider = MeshServices.Create(source).BuildServiceProvider();
        await using var _ = provider;
        HttpRequestMessage? sent = null;
        var handler = new MeshRouteFeaturesHandler(provider.GetRequiredService<MeshRouter>(), provider.GetRequiredService<EndpointConnectionPools>(), TimeProvider.System, NullLogger.Instance)
        {
            InnerHandler = new Answer(request => sent = request),
        };
        using var invoker = new HttpMessageInvoker(handler);
        var request = new HttpRequestMessage(HttpMethod.Post, "http://orders/api/x") { Content = new StringContent("x") };
        request.Headers.Add("x-env", "caller");
        request.Headers.Add("x-trace", "caller");
        request.Headers.Add("x-once", "caller");
        request.Headers.Add("x-secret", "s3cret");

        using var response = await invoker.SendAsync(request, CancellationToken.None);

        Assert.Equal(["mesh"], sent!.Headers.GetValues("x-env"));
        Assert.Equal(["caller", "added"], sent.Headers.GetValues("x-trace"));
        Assert.Equal(["caller"], sent.Headers.GetValues("x-once"));
        Assert.False(sent.Headers.Contains("x-only-if"));
        Assert.False(sent.Headers.Contains("x-secret"));
        Assert.Equal(["fr"], sent.Content!.Headers.ContentLanguage);
    }

    private sealed class Recorder(MeshRouter router, List<(string, Uri, string?)> seen) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var status = router.Route(request, 0, null, out _, out var cluster, out _);
            lock (seen)
            {
                seen.Add((status == RouteStatus.NoEndpoint || status == RouteStatus.Routed ? cluster!.Name : status.ToString(), request.RequestUri!, request.Headers.Host));
            }

            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { RequestMessage = request });
        }
    }

    private sealed class Answer(Action<HttpRequestMessage> onSend) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            onSend(request);
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { RequestMessage = request });
        }
    }
}
