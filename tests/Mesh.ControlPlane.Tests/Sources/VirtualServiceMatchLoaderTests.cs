using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>The HTTPMatchRequest fields beyond uri/headers/method: queryParams, authority, scheme, port, sourceLabels, sourceNamespace, gateways, statPrefix.</summary>
public sealed class VirtualServiceMatchLoaderTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "mesh-cp-vsmatch-" + Guid.NewGuid().ToString("N"));

    public VirtualServiceMatchLoaderTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: orders}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: orders
        spec:
          host: orders
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
        """;

    // Line 1 = apiVersion.
    private const string Matches = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: orders
        spec:
          hosts: [orders]
          http:
          - name: by-caller
            match:
            - name: labelled
              sourceLabels: {app: checkout, track: beta}
              sourceNamespace: shop
            route:
            - destination: {host: orders, subset: v2}
          - name: by-query
            match:
            - queryParams:
                version: {exact: v2}
                debug: {}
                build: {regex: "[0-9]+"}
                tag: {prefix: rc-}
              authority: {exact: orders}
              scheme: {exact: http}
              port: 80
            route:
            - destination: {host: orders, subset: v2}
          - route:
            - destination: {host: orders, subset: v1}
        """;

    private static YamlLoadResult Load(string virtualService) => YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);

    private static ConfigError SingleError(string find, string replace)
    {
        var yaml = Matches.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Matches, yaml);
        var result = Load(yaml);
        Assert.True(result.HasErrors);
        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("vs.yaml", error.File);
        return error;
    }

    [Fact]
    public void Load_SourceAndQueryMatches_ReadsEveryField()
    {
        var result = Load(Matches);

        Assert.Empty(result.Errors);
        var vs = Assert.Single(result.Config.VirtualServices);
        var labelled = Assert.Single(vs.Http[0].Matches);
        Assert.Equal(new SourceSelector(
            System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new Dictionary<string, string> { ["track"] = "beta", ["app"] = "checkout" }),
            "shop"), labelled.Source);
        Assert.Empty(labelled.QueryParams);

        var query = Assert.Single(vs.Http[1].Matches);
        Assert.Null(query.Source);
        Assert.Equal(80u, query.Port);
        Assert.Equal(new RouteStringMatch(RouteStringMatchKind.Exact, "orders"), query.Authority);
        Assert.Equal(new RouteStringMatch(RouteStringMatchKind.Exact, "http"), query.Scheme);

        // Sorted by name; {} is a presence test.
        Assert.Equal(
            [
                new RouteQueryParamMatch("build", new RouteStringMatch(RouteStringMatchKind.Regex, "[0-9]+")),
                new RouteQueryParamMatch("debug", null),
                new RouteQueryParamMatch("tag", new RouteStringMatch(RouteStringMatchKind.Prefix, "rc-")),
                new RouteQueryParamMatch("version", new RouteStringMatch(RouteStringMatchKind.Exact, "v2")),
            ],
            query.QueryParams.ToArray());
    }

    [Fact]
    public void SourceSelector_SameLabelsInAnotherOrder_IsTheSameSelector()
    {
        var a = new SourceSelector(System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" }), null);
        var b = new SourceSelector(System.Collections.Immutable.ImmutableSortedDictionary.CreateRange(StringComparer.Ordinal, new Dictionary<string, string> { ["b"] = "2", ["a"] = "1" }), null);

        Assert.Equal(a, b);
        Assert.True(a.Selects("any", new Dictionary<string, string> { ["a"] = "1", ["b"] = "2", ["c"] = "3" }));
        Assert.False(a.Selects("any", new Dictionary<string, string> { ["a"] = "1" }));
        Assert.False(a.Selects("any", new Dictionary<string, string> { ["a"] = "1", ["b"] = "20" }));
    }

    [Fact]
    public void Load_QueryParamEmptyExact_MatchesAKeyWithoutValueAsInIstio()
    {
        var result = Load(Matches.Replace("version: {exact: v2}", "version: {exact: \"\"}", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Contains(new RouteQueryParamMatch("version", new RouteStringMatch(RouteStringMatchKind.Exact, string.Empty)), result.Config.VirtualServices[0].Http[1].Matches[0].QueryParams);
    }

    [Fact]
    public void Load_QueryParamRegexStar_IsAPresenceMatchAsInIstio()
    {
        var result = Load(Matches.Replace("version: {exact: v2}", "version: {regex: \"*\"}", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Contains(new RouteQueryParamMatch("version", null), result.Config.VirtualServices[0].Http[1].Matches[0].QueryParams);
    }

    [Theory]
    [InlineData("build: {regex: \"[0-9]+\"}", "build: {regex: \"[0-9\"}", 20, "spec.http[1].match[0].queryParams.build.regex:")]
    [InlineData("build: {regex: \"[0-9]+\"}", "build: {regex: \"(?=lookahead)\"}", 20, "spec.http[1].match[0].queryParams.build.regex:")]
    [InlineData("build: {regex: \"[0-9]+\"}", "build: {regex: \"\"}", 20, "spec.http[1].match[0].queryParams.build.regex:")]
    [InlineData("tag: {prefix: rc-}", "tag: {prefix: \"\"}", 21, "spec.http[1].match[0].queryParams.tag.prefix: must not be empty")]
    [InlineData("tag: {prefix: rc-}", "tag: {suffix: rc}", 21, "spec.http[1].match[0].queryParams.tag.suffix: is not a string match")]
    [InlineData("tag: {prefix: rc-}", "tag: {prefix: rc-, exact: rc-1}", 21, "spec.http[1].match[0].queryParams.tag: must set exactly one of exact, prefix or regex")]
    [InlineData("debug: {}", "\"\": {}", 19, "spec.http[1].match[0].queryParams: query parameter names must be non-empty")]
    [InlineData("debug: {}", "\"a=b\": {}", 19, "spec.http[1].match[0].queryParams.a=b: must not contain '&', '=', '#' or '?'")]
    [InlineData("debug: {}", "\"a&b\": {}", 19, "spec.http[1].match[0].queryParams.a&b: must not contain '&', '=', '#' or '?'")]
    [InlineData("sourceNamespace: shop", "sourceNamespace: Shop_1", 12, "spec.http[0].match[0].sourceNamespace: 'Shop_1' must be a namespace name")]
    [InlineData("sourceNamespace: shop", "sourceNamespace: shop.prod", 12, "spec.http[0].match[0].sourceNamespace: 'shop.prod' must be a namespace name")]
    [InlineData("sourceLabels: {app: checkout, track: beta}", "sourceLabels: [checkout]", 11, "spec.http[0].match[0].sourceLabels: must be a mapping")]
    [InlineData("sourceLabels: {app: checkout, track: beta}", "sourceLabels: {app: \"-bad-\"}", 11, "spec.http[0].match[0].sourceLabels.app: 'app: -bad-' is not a valid Kubernetes label")]
    [InlineData("sourceNamespace: shop", "sourceNamespace: shop\n      gateways: [mesh]", 13, "spec.http[0].match[0].gateways: Istio ignores sourceLabels and sourceNamespace when a match names gateways")]
    [InlineData("port: 80", "port: 0", 24, "spec.http[1].match[0].port: must be 1-65535")]
    [InlineData("authority: {exact: orders}", "authority: {prefix: \"\"}", 22, "spec.http[1].match[0].authority.prefix: must not be empty")]
    [InlineData("scheme: {exact: http}", "scheme: {regex: \"(\"}", 23, "spec.http[1].match[0].scheme.regex:")]
    [InlineData("debug: {}", "\":path\": {}", 19, "")]
    public void Load_BadMatchField_IsErrorAtItsLineNamingThePath(string find, string replace, int line, string expected)
    {
        if (expected.Length == 0)
        {
            // Control: a query parameter named like a pseudo-header is just a name.
            Assert.Empty(Load(Matches.Replace(find, replace, StringComparison.Ordinal)).Errors);
            return;
        }

        var error = SingleError(find, replace);

        Assert.Equal(line, error.Line);
        Assert.Contains($"VirtualService default/orders: {expected}", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(":authority")]
    [InlineData(":scheme")]
    [InlineData(":path")]
    [InlineData(":method")]
    public void Load_RequestPseudoHeaderInHeaders_IsAccepted(string name)
    {
        var result = Load(Matches.Replace("      authority: {exact: orders}", $"      headers: {{\"{name}\": {{prefix: x}}}}", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Equal(name, Assert.Single(result.Config.VirtualServices[0].Http[1].Matches[0].Headers).Name);
    }

    [Fact]
    public void Load_StatPrefix_IsAWarningNamingTheField()
    {
        var result = Load(Matches.Replace("    - name: labelled", "    - name: labelled\n      statPrefix: orders-beta", StringComparison.Ordinal));

        Assert.False(result.HasErrors);
        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal(11, warning.Line);
        Assert.Contains("spec.http[0].match[0].statPrefix: is ignored", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MatchGatewaysMeshWithoutSourceSelector_IsAccepted()
    {
        var result = Load(Matches.Replace("      port: 80", "      port: 80\n      gateways: [mesh]", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
    }

    [Fact]
    public void Reload_InvalidQueryRegexOrSourceNamespace_KeepsLastGoodConfigAndThenRecovers()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        File.WriteAllText(Path.Combine(_directory, "services.yaml"), Services);
        var vsFile = Path.Combine(_directory, "vs.yaml");
        File.WriteAllText(vsFile, Matches);
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        var good = store.Current;

        File.WriteAllText(vsFile, Matches
            .Replace("build: {regex: \"[0-9]+\"}", "build: {regex: \"([0-9]+\"}", StringComparison.Ordinal)
            .Replace("sourceNamespace: shop", "sourceNamespace: -shop", StringComparison.Ordinal));
        Assert.False(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        Assert.Same(good, store.Current);
        Assert.Equal(
            [("vs.yaml", 12, "spec.http[0].match[0].sourceNamespace"), ("vs.yaml", 20, "spec.http[1].match[0].queryParams.build.regex")],
            store.Errors.Select(e => (e.File, e.Line, e.Message.Split(": ")[1])).OrderBy(e => e.Line).ToArray());

        File.WriteAllText(vsFile, Matches.Replace("version: {exact: v2}", "version: {exact: v3}", StringComparison.Ordinal));
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        Assert.Empty(store.Errors);
        Assert.Contains(new RouteQueryParamMatch("version", new RouteStringMatch(RouteStringMatchKind.Exact, "v3")), store.Current.Config.VirtualServices[0].Http[1].Matches[0].QueryParams);
    }
}
