using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;
using Mesh.Client.Routing;

namespace Mesh.Client.Tests.Routing;

public sealed class RouteHashPolicyTests
{
    private static readonly RouteHashPolicy Header = new([new HashKey(HashKeyKind.Header, "x-user", Terminal: false)], sourceKey: 7);

    [Fact]
    public void Header_HashesItsValueAsEnvoyDoes()
    {
        using var request = Request("http://orders/api");
        request.Headers.Add("x-user", "alice");

        Assert.True(Header.TryHash(request, request.RequestUri!, out var hash));
        Assert.Equal(XxHash64.HashUtf8("alice"), hash);
    }

    [Fact]
    public void MissingKey_NoHash()
    {
        using var request = Request("http://orders/api?user=1");
        request.Headers.Add("x-other", "alice");

        Assert.False(Header.TryHash(request, request.RequestUri!, out _));
    }

    [Theory]
    [InlineData("session=abc", "abc")]
    [InlineData("a=1; session=abc; b=2", "abc")]
    [InlineData("a=1;session=\"abc\"", "abc")]
    public void Cookie_HashesTheNamedCookie(string cookieHeader, string value)
    {
        var policy = new RouteHashPolicy([new HashKey(HashKeyKind.Cookie, "session", false)], 0);
        using var request = Request("http://orders/");
        request.Headers.TryAddWithoutValidation("Cookie", cookieHeader);

        Assert.True(policy.TryHash(request, request.RequestUri!, out var hash));
        Assert.Equal(XxHash64.HashUtf8(value), hash);
    }

    [Fact]
    public void Cookie_OtherCookieWithSuffixName_IsNotTheKey()
    {
        var policy = new RouteHashPolicy([new HashKey(HashKeyKind.Cookie, "session", false)], 0);
        using var request = Request("http://orders/");
        request.Headers.TryAddWithoutValidation("Cookie", "xsession=abc; sessionx=def");

        Assert.False(policy.TryHash(request, request.RequestUri!, out _));
    }

    [Theory]
    [InlineData("http://orders/api?user=bob", "bob")]
    [InlineData("http://orders/api?a=1&user=bob&user=eve", "bob")]
    [InlineData("http://orders/api?user=b%20b#frag", "b%20b")]
    [InlineData("http://orders/api?user", "")]
    public void QueryParameter_HashesTheFirstValue(string uri, string value)
    {
        var policy = new RouteHashPolicy([new HashKey(HashKeyKind.QueryParameter, "user", false)], 0);
        using var request = Request(uri);

        Assert.True(policy.TryHash(request, request.RequestUri!, out var hash));
        Assert.Equal(XxHash64.HashUtf8(value), hash);
    }

    [Fact]
    public void SourceIp_IsTheProcessKey_SoEveryRequestOfThisClientSticks()
    {
        var policy = new RouteHashPolicy([new HashKey(HashKeyKind.SourceIp, string.Empty, false)], sourceKey: 1234);
        using var request = Request("http://orders/");

        Assert.True(policy.TryHash(request, request.RequestUri!, out var hash));
        Assert.Equal(1234UL, hash);
    }

    [Fact]
    public void SeveralKeys_FoldAsEnvoy_TerminalStopsAtTheFirstPresent()
    {
        using var request = Request("http://orders/?q=1");
        request.Headers.Add("x-user", "alice");
        request.Headers.Add("x-tenant", "acme");
        var a = XxHash64.HashUtf8("alice");
        var b = XxHash64.HashUtf8("acme");

        var both = new RouteHashPolicy([new HashKey(HashKeyKind.Header, "x-user", false), new HashKey(HashKeyKind.Header, "x-tenant", false)], 0);
        Assert.True(both.TryHash(request, request.RequestUri!, out var hash));
        Assert.Equal(System.Numerics.BitOperations.RotateLeft(a, 1) ^ b, hash);

        var terminal = new RouteHashPolicy([new HashKey(HashKeyKind.Header, "x-missing", true), new HashKey(HashKeyKind.Header, "x-user", true), new HashKey(HashKeyKind.Header, "x-tenant", false)], 0);
        Assert.True(terminal.TryHash(request, request.RequestUri!, out hash));
        Assert.Equal(a, hash);
    }

    [Fact]
    public void Router_SameHeader_SameEndpoint_DifferentHeadersSpread_AndNoAllocation()
    {
        var endpoints = Enumerable.Range(0, 4).Select(i => TestSnapshots.Endpoint(9000 + i)).ToArray();
        var cluster = TestSnapshots.Cluster("orders", 80, endpoints, LoadBalancingPolicy.RingHash);
        var route = new MeshRoute("/", null, true, [new WeightedCluster(cluster, 1)]) { HashPolicy = Header };
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", TestSnapshots.Service("orders", 80, route)), [cluster]);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        var now = TimeProvider.System.GetTimestamp();
        var seen = new HashSet<MeshEndpoint>();
        for (var user = 0; user < 200; user++)
        {
            using var request = Request("http://orders/api");
            request.Headers.Add("x-user", $"user-{user}");
            Assert.Equal(RouteStatus.Routed, router.Route(request, now, null, out _, out _, out var first));
            for (var i = 0; i < 5; i++)
            {
                router.Route(request, now, null, out _, out _, out var again);
                Assert.Same(first, again);
            }

            seen.Add(first!);
        }

        Assert.Equal(4, seen.Count);

        using var hot = Request("http://orders/api");
        hot.Headers.Add("x-user", "alice");
        router.Route(hot, now, null, out _, out _, out _);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            router.Route(hot, now, null, out _, out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static HttpRequestMessage Request(string uri) => new(HttpMethod.Get, uri);
}
