using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Client.Xds;

namespace Mesh.Client.Tests.Routing;

/// <summary>RDS query_parameters and the :authority/:scheme/:path pseudo-headers, with Envoy's semantics.</summary>
public sealed class QueryAndPseudoHeaderMatchTests
{
    private static readonly long Now = TimeProvider.System.GetTimestamp();

    private static QueryParameterMatch Exact(string name, string value) => new(name, new StringMatch(StringMatchKind.Exact, value, IgnoreCase: false), Present: true);

    [Theory]
    [InlineData("?version=v2", true)]
    [InlineData("version=v2", true)]
    [InlineData("?a=1&version=v2&b", true)]
    [InlineData("?version=v2&version=v1", true)]
    [InlineData("?version=v1&version=v2", false)] // Envoy: only the first value of a name counts
    [InlineData("?version=v20", false)]
    [InlineData("?Version=v2", false)] // names are case-sensitive
    [InlineData("?xversion=v2", false)]
    [InlineData("?version=v%32", false)] // not percent-decoded, as Envoy's router
    [InlineData("?version", false)]
    [InlineData("", false)]
    [InlineData("?", false)]
    [InlineData("?version=v2=x", false)] // split at the first '='
    public void Matches_Exact_FollowsEnvoysQueryReading(string query, bool expected) =>
        Assert.Equal(expected, Exact("version", "v2").Matches(query));

    [Theory]
    [InlineData("?debug", true)]
    [InlineData("?debug=", true)]
    [InlineData("?debug=1", false)]
    [InlineData("?x=debug", false)]
    public void Matches_EmptyExact_MatchesAKeyWithoutValue(string query, bool expected) =>
        Assert.Equal(expected, Exact("debug", string.Empty).Matches(query));

    [Theory]
    [InlineData("?debug", true, true)]
    [InlineData("?debug=0", true, true)]
    [InlineData("?a=debug", true, false)]
    [InlineData("?a=debug", false, true)]
    [InlineData("?debug", false, false)]
    public void Matches_Presence_TestsTheName(string query, bool present, bool expected) =>
        Assert.Equal(expected, new QueryParameterMatch("debug", null, present).Matches(query));

    [Theory]
    [InlineData("?build=123", true)]
    [InlineData("?build=a123", false)] // a full match, as Envoy's safe_regex
    [InlineData("?build=", false)]
    public void Matches_Regex_IsAFullMatch(string query, bool expected) =>
        Assert.Equal(expected, new QueryParameterMatch("build", StringMatch.SafeRegex("[0-9]+", "q", []), Present: true).Matches(query));

    [Fact]
    public void Route_QueryParameterRoute_TakesOnlyMatchingRequests()
    {
        var v1 = TestSnapshots.Cluster("v1", 80, [TestSnapshots.Endpoint(9001)]);
        var v2 = TestSnapshots.Cluster("v2", 80, [TestSnapshots.Endpoint(9002)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)]) { QueryParameters = [Exact("version", "v2")] },
            new MeshRoute("/", null, true, [new WeightedCluster(v1, 1)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [v1, v2]);

        Assert.True(snapshot.Services[0].NeedsQuery);
        Assert.Equal(9002, Port(snapshot, HttpMethod.Get, "http://orders/api?version=v2"));
        Assert.Equal(9002, Port(snapshot, HttpMethod.Get, "http://orders/api?a=b&version=v2#fragment"));
        Assert.Equal(9001, Port(snapshot, HttpMethod.Get, "http://orders/api?version=v1"));
        Assert.Equal(9001, Port(snapshot, HttpMethod.Get, "http://orders/api"));
        Assert.Equal(9001, Port(snapshot, HttpMethod.Get, "http://orders/api#version=v2"));
    }

    [Fact]
    public void Route_PseudoHeaders_ReadTheRequestAsEnvoySeesIt()
    {
        var authority = TestSnapshots.Cluster("authority", 80, [TestSnapshots.Endpoint(9001)]);
        var scheme = TestSnapshots.Cluster("scheme", 80, [TestSnapshots.Endpoint(9002)]);
        var path = TestSnapshots.Cluster("path", 80, [TestSnapshots.Endpoint(9003)]);
        var rest = TestSnapshots.Cluster("rest", 80, [TestSnapshots.Endpoint(9004)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute("/", null, true, [new WeightedCluster(authority, 1)], [new HeaderMatch(":authority", new StringMatch(StringMatchKind.Exact, "orders.internal", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(scheme, 1)], [new HeaderMatch(":scheme", new StringMatch(StringMatchKind.Exact, "https", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(path, 1)], [new HeaderMatch(":path", new StringMatch(StringMatchKind.Exact, "/api?x=1", IgnoreCase: false), Invert: false)]),
            new MeshRoute("/", null, true, [new WeightedCluster(rest, 1)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [authority, scheme, path, rest]);

        Assert.Equal(9001, Port(snapshot, HttpMethod.Get, "http://orders/api", host: "orders.internal"));
        Assert.Equal(9004, Port(snapshot, HttpMethod.Get, "http://orders/api", host: "ORDERS.other"));
        Assert.Equal(9003, Port(snapshot, HttpMethod.Get, "http://orders/api?x=1"));
        Assert.Equal(9004, Port(snapshot, HttpMethod.Get, "http://orders/api?x=2"));
        Assert.Equal(9004, Port(snapshot, HttpMethod.Get, "http://orders/api"));
    }

    [Theory]
    [InlineData(":method")]
    [InlineData(":authority")]
    [InlineData(":scheme")]
    public void HeaderMatch_PresentMatchOnAPseudoHeader_MatchesEveryRequest_AsIstiodSendsMethodAuthorityOrSchemeEmpty(string name)
    {
        // VirtualService match `method: {}` (authority, scheme): istiod sends a present_match, which every request passes.
        using var request = new HttpRequestMessage(HttpMethod.Post, "http://orders:8080/x");

        Assert.True(new HeaderMatch(name, null, Invert: false).Matches(request));
        Assert.True(new HeaderMatch(name, null, Invert: false).Matches(request, noHeaders: true));
        Assert.False(new HeaderMatch(name, null, Invert: true).Matches(request));
    }

    [Fact]
    public void HeaderMatch_Authority_IsTheUrisHostAndPortWithoutAHostHeader()
    {
        var match = new HeaderMatch(":authority", new StringMatch(StringMatchKind.Exact, "orders:8080", IgnoreCase: false), Invert: false);
        using var nonDefault = new HttpRequestMessage(HttpMethod.Get, "http://orders:8080/");
        using var defaultPort = new HttpRequestMessage(HttpMethod.Get, "http://orders/");

        Assert.True(match.Matches(nonDefault));
        Assert.False(match.Matches(defaultPort));
        Assert.True(new HeaderMatch(":authority", new StringMatch(StringMatchKind.Exact, "orders", IgnoreCase: false), Invert: false).Matches(defaultPort));
        Assert.True(new HeaderMatch(":scheme", new StringMatch(StringMatchKind.Exact, "http", IgnoreCase: false), Invert: false).Matches(defaultPort));
    }

    /// <summary>
    /// A request without headers decides every matcher without a name lookup: the same answers as looking each name up,
    /// for presence, absence, values, treat-missing-as-empty, content headers and pseudo-headers.
    /// </summary>
    [Fact]
    public void HeaderMatch_RequestWithoutHeaders_SameAnswersAsLookingUp()
    {
        StringMatch Exact(string value) => new(StringMatchKind.Exact, value, IgnoreCase: false);
        HeaderMatch[] matchers =
        [
            new("x-canary", null, Invert: false),
            new("x-canary", null, Invert: true),
            new("x-canary", Exact("1"), Invert: false),
            new("x-canary", Exact("1"), Invert: true),
            new("x-canary", Exact(""), Invert: false, TreatMissingAsEmpty: true),
            new("x-canary", Exact("1"), Invert: true, TreatMissingAsEmpty: true),
            new("content-type", new StringMatch(StringMatchKind.Prefix, "application/grpc", IgnoreCase: false), Invert: false),
            new(":method", Exact("GET"), Invert: false),
            new(":authority", Exact("orders"), Invert: false),
            new(":path", new StringMatch(StringMatchKind.Prefix, "/api", IgnoreCase: false), Invert: true),
        ];
        HttpRequestMessage[] requests =
        [
            new(HttpMethod.Get, "http://orders/api"),
            new(HttpMethod.Get, "http://orders/"),
            new(HttpMethod.Post, "http://orders/x") { Content = new ByteArrayContent([]) },
            new(HttpMethod.Post, "http://orders/x") { Content = new ByteArrayContent([]) { Headers = { { "content-type", "application/grpc" } } } },
            new(HttpMethod.Get, "http://orders/") { Headers = { { "x-canary", "1" } } },
            new(HttpMethod.Get, "http://orders/") { Headers = { { "x-other", "1" } } },
        ];

        var decidedWithoutLookup = 0;
        foreach (var request in requests)
        {
            var noHeaders = HeaderMatch.HasNoHeaders(request);
            decidedWithoutLookup += noHeaders ? 1 : 0;
            foreach (var matcher in matchers)
            {
                Assert.True(matcher.Matches(request, noHeaders) == matcher.Matches(request, noHeaders: false), $"{matcher} on {request.Method} {request.RequestUri} (no headers: {noHeaders})");
            }

            request.Dispose();
        }

        // Three of the requests carry no header (a content without headers included): the shortcut was taken.
        Assert.Equal(3, decidedWithoutLookup);
    }

    [Fact]
    public void Route_QueryParameterMatch_AllocatesNothing()
    {
        var v1 = TestSnapshots.Cluster("v1", 80, [TestSnapshots.Endpoint(9001)]);
        var v2 = TestSnapshots.Cluster("v2", 80, [TestSnapshots.Endpoint(9002)]);
        var service = TestSnapshots.Service(
            "orders",
            80,
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)])
            {
                QueryParameters = [Exact("version", "v2"), new QueryParameterMatch("build", StringMatch.SafeRegex("[0-9]+", "q", []), Present: true)],
            },
            new MeshRoute("/", null, true, [new WeightedCluster(v2, 1)]) { QueryParameters = [new QueryParameterMatch("debug", null, Present: true)] },
            new MeshRoute("/", null, true, [new WeightedCluster(v1, 1)]));
        var snapshot = new MeshSnapshot("test", TestSnapshots.Bind("orders", service), [v1, v2]);
        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://orders/api?a=1&version=v2&build=x12");
        router.Route(request, Now, null, out _, out _, out var first);
        Assert.Equal(9001, first!.Port);

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            router.Route(request, Now, null, out _, out _, out _);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static int Port(MeshSnapshot snapshot, HttpMethod method, string url, string? host = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (host is not null)
        {
            request.Headers.Host = host;
        }

        var router = new MeshRouter(new FixedSnapshotSource(snapshot), TestSnapshots.Names);
        Assert.Equal(RouteStatus.Routed, router.Route(request, Now, null, out _, out _, out var endpoint));
        return endpoint!.Port;
    }
}
