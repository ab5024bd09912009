using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Microsoft.Extensions.Logging.Abstractions;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Sources;

public sealed class VirtualServiceLoaderTests : IDisposable
{
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
            trafficPolicy:
              loadBalancer: {simple: LEAST_REQUEST}
        """;

    // Line numbers below count from the first line of this string (line 1 = apiVersion).
    private const string Canary = """
        apiVersion: networking.istio.io/v1beta1
        kind: VirtualService
        metadata:
          name: orders
        spec:
          hosts: [orders]
          gateways: [mesh]
          http:
          - name: ab
            match:
            - name: beta
              uri: {prefix: /api}
              ignoreUriCase: true
              method: {exact: GET}
              headers:
                x-user: {regex: "beta-[0-9]+"}
                x-trace: {}
              withoutHeaders:
                x-legacy: {exact: "1"}
            route:
            - destination: {host: orders, subset: v2}
            timeout: 2s
            retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,503,connect-failure"}
          - route:
            - destination: {host: orders.default.svc.cluster.local, subset: v1, port: {number: 80}}
              weight: 90
            - destination: {host: orders, subset: v2}
              weight: 10
        """;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "mesh-cp-vs-" + Guid.NewGuid().ToString("N"));

    public VirtualServiceLoaderTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static YamlLoadResult Load(string virtualService) => YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);

    private static ConfigError SingleError(string virtualService)
    {
        var result = Load(virtualService);
        Assert.True(result.HasErrors);
        return Assert.Single(result.Errors, e => !e.IsWarning);
    }

    [Fact]
    public void Load_CanaryAndHeaderRoute_ReadsEveryField()
    {
        var result = Load(Canary);

        Assert.Empty(result.Errors);
        var vs = Assert.Single(result.Config.VirtualServices);
        Assert.Equal([Fqdn], vs.Hosts.ToArray());
        Assert.Equal(2, vs.Http.Length);
        var ab = vs.Http[0];
        Assert.Equal("ab", ab.Name);
        var match = Assert.Single(ab.Matches);
        Assert.Equal("beta", match.Name);
        Assert.Equal(new RouteStringMatch(RouteStringMatchKind.Prefix, "/api"), match.Uri);
        Assert.True(match.IgnoreUriCase);
        Assert.Equal(new RouteStringMatch(RouteStringMatchKind.Exact, "GET"), match.Method);
        Assert.Equal(
            [new RouteHeaderMatch("x-trace", null), new RouteHeaderMatch("x-user", new RouteStringMatch(RouteStringMatchKind.Regex, "beta-[0-9]+"))],
            match.Headers.ToArray());
        Assert.Equal([new RouteHeaderMatch("x-legacy", new RouteStringMatch(RouteStringMatchKind.Exact, "1"))], match.WithoutHeaders.ToArray());
        Assert.Equal([new RouteDestinationModel(Fqdn, "v2", null, 0)], ab.Destinations.ToArray());
        Assert.Equal(TimeSpan.FromSeconds(2), ab.Timeout);
        Assert.Equal(new HttpRetryModel(3, TimeSpan.FromMilliseconds(500), "5xx,503,connect-failure"), ab.Retries);
        var split = vs.Http[1];
        Assert.Empty(split.Matches);
        Assert.Equal([new RouteDestinationModel(Fqdn, "v1", 80, 90), new RouteDestinationModel(Fqdn, "v2", null, 10)], split.Destinations.ToArray());
        Assert.Null(split.Timeout);
        Assert.Null(split.Retries);

        var rule = Assert.Single(result.Config.DestinationRules);
        Assert.Equal(["v1", "v2"], rule.Subsets.Select(s => s.Name).ToArray());
        Assert.Equal("v1", rule.Subsets[0].Labels["version"]);
        Assert.Null(rule.Subsets[0].LoadBalancer);
        Assert.Equal(LoadBalancerKind.LeastRequest, rule.Subsets[1].LoadBalancer);
    }

    [Fact]
    public void Load_HeaderRegexStar_IsAPresenceMatchAsInIstio()
    {
        var result = Load(Canary.Replace("x-trace: {}", "x-trace: {regex: \"*\"}", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Contains(new RouteHeaderMatch("x-trace", null), result.Config.VirtualServices[0].Http[0].Matches[0].Headers);
    }

    [Theory]
    [InlineData("networking.istio.io/v1")]
    [InlineData("networking.istio.io/v1alpha3")]
    public void Load_OtherApiVersions_AreAccepted(string apiVersion)
    {
        var result = Load(Canary.Replace("networking.istio.io/v1beta1", apiVersion, StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Single(result.Config.VirtualServices);
    }

    [Fact]
    public void Load_WeightsNotSummingTo100_AreKeptVerbatim()
    {
        var result = Load(Canary.Replace("weight: 90", "weight: 3", StringComparison.Ordinal).Replace("weight: 10", "weight: 1", StringComparison.Ordinal));

        Assert.Empty(result.Errors);
        Assert.Equal([3u, 1u], result.Config.VirtualServices[0].Http[1].Destinations.Select(d => d.Weight).ToArray());
    }

    [Fact]
    public void Load_NegativeWeight_IsErrorAtItsLine()
    {
        var error = SingleError(Canary.Replace("weight: 10", "weight: -10", StringComparison.Ordinal));

        Assert.Equal(("vs.yaml", 28), (error.File, error.Line));
        Assert.Contains("VirtualService default/orders: spec.http[1].route[1].weight: weight -10 < 0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_AllWeightsZeroWithTwoDestinations_IsError()
    {
        var error = SingleError(Canary.Replace("weight: 90", "weight: 0", StringComparison.Ordinal).Replace("weight: 10", "weight: 0", StringComparison.Ordinal));

        Assert.Contains("spec.http[1].route: total destination weight = 0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_WeightSumAboveUInt32_IsError()
    {
        var yaml = Canary.Replace("weight: 90", "weight: 2000000000", StringComparison.Ordinal).Replace("weight: 10", "weight: 2000000000", StringComparison.Ordinal)
            + "\n    - destination: {host: orders, subset: v1}\n      weight: 2000000000\n";

        var error = SingleError(yaml);

        Assert.Contains("spec.http[1].route: total destination weight 6000000000 is more than 4294967295", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_SingleDestinationWithoutWeight_IsValid()
    {
        var result = Load(Canary);

        Assert.Equal(0u, result.Config.VirtualServices[0].Http[0].Destinations[0].Weight);
        Assert.False(result.HasErrors);
    }

    [Fact]
    public void Load_UndefinedSubset_IsErrorNamingTheSubsetAndHost()
    {
        var error = SingleError(Canary.Replace("subset: v1,", "subset: v3,", StringComparison.Ordinal));

        Assert.Equal(("vs.yaml", 25), (error.File, error.Line));
        Assert.Contains($"spec.http[1].route[0].destination: subset v3 is not defined by any DestinationRule for host {Fqdn}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_SubsetWithoutAnyDestinationRule_IsError()
    {
        var servicesOnly = Services[..Services.IndexOf("---", StringComparison.Ordinal)];
        var result = YamlConfigLoader.Load([("services.yaml", servicesOnly), ("vs.yaml", Canary)]);

        Assert.Equal(3, result.Errors.Count(e => e.Message.Contains("is not defined by any DestinationRule", StringComparison.Ordinal)));
    }

    [Fact]
    public void Load_RouteToUndeclaredHost_IsError()
    {
        var error = SingleError(Canary.Replace("{host: orders, subset: v2}\n    timeout", "{host: payments}\n    timeout", StringComparison.Ordinal));

        Assert.Equal(("vs.yaml", 21), (error.File, error.Line));
        Assert.Contains("spec.http[0].route[0].destination: host payments.default.svc.cluster.local is not declared by any ServiceEntry", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_VirtualServiceForUndeclaredHost_IsError()
    {
        var error = SingleError(Canary.Replace("hosts: [orders]", "hosts: [payments]", StringComparison.Ordinal));

        Assert.Contains("spec.hosts[0]: host payments.default.svc.cluster.local is not declared by any ServiceEntry", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_UnknownDestinationPort_IsError()
    {
        var error = SingleError(Canary.Replace("port: {number: 80}", "port: {number: 81}", StringComparison.Ordinal));

        Assert.Contains("spec.http[1].route[0].destination: port.number 81 is not a port of", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("beta-[0-9+", "spec.http[0].match[0].headers.x-user.regex")]
    [InlineData("(a)\\\\1", "spec.http[0].match[0].headers.x-user.regex")]
    [InlineData("(?=a)b", "spec.http[0].match[0].headers.x-user.regex")]
    public void Load_InvalidRegex_IsErrorNamingTheField(string regex, string path)
    {
        var error = SingleError(Canary.Replace("beta-[0-9]+", regex, StringComparison.Ordinal));

        Assert.Equal(16, error.Line);
        Assert.Contains($"{path}: '", error.Message, StringComparison.Ordinal);
        Assert.Contains("is not a valid", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_InvalidUriRegex_IsError()
    {
        var error = SingleError(Canary.Replace("uri: {prefix: /api}", "uri: {regex: \"/api/(\"}", StringComparison.Ordinal));

        Assert.Contains("spec.http[0].match[0].uri.regex: '/api/(' is not a valid RE2 regex", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_PerTryTimeoutLongerThanTimeout_IsAcceptedWithAWarning_AsIstioAcceptsIt()
    {
        var result = Load(Canary.Replace("perTryTimeout: 500ms", "perTryTimeout: 3s", StringComparison.Ordinal));

        Assert.DoesNotContain(result.Errors, e => !e.IsWarning);
        var warning = Assert.Single(result.Errors);
        Assert.Equal(23, warning.Line);
        Assert.Contains("spec.http[0].retries.perTryTimeout: 3s is longer than the route timeout 2s; the route timeout bounds the whole call", warning.Message, StringComparison.Ordinal);
        var retries = Assert.Single(result.Config.VirtualServices).Http[0].Retries!;
        Assert.Equal(TimeSpan.FromSeconds(3), retries.PerTryTimeout);
    }

    [Theory]
    [InlineData("0s")]
    [InlineData("0.5ms")]
    [InlineData("ten seconds")]
    [InlineData("-1s")]
    public void Load_BadTimeout_IsError(string timeout)
    {
        var error = SingleError(Canary.Replace("timeout: 2s", $"timeout: {timeout}", StringComparison.Ordinal));

        Assert.Equal(22, error.Line);
        Assert.Contains("spec.http[0].timeout: must be", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1m30s", 90_000)]
    [InlineData("1.5s", 1_500)]
    [InlineData("250ms", 250)]
    [InlineData("1h", 3_600_000)]
    public void TryParseDuration_GoStyle_Parses(string text, int milliseconds)
    {
        Assert.True(YamlConfigLoader.TryParseDuration(text, out var value));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Fact]
    public void Load_UnknownRetryOn_IsError()
    {
        var error = SingleError(Canary.Replace("5xx,503,connect-failure", "5xx,sometimes", StringComparison.Ordinal));

        Assert.Contains("spec.http[0].retries.retryOn: 'sometimes' is not a retry policy", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_RetriesWithIstioFieldsMeshClientsApply_AreRead()
    {
        var yaml = Canary.Replace(
            "retries: {attempts: 3, perTryTimeout: 500ms, retryOn: \"5xx,503,connect-failure\"}",
            "retries: {attempts: 3, retryOn: \"5xx,418,+503,connect-failure\", backoff: 100ms, retryIgnorePreviousHosts: true, retryRemoteLocalities: false}",
            StringComparison.Ordinal);

        var result = Load(yaml);

        Assert.Empty(result.Errors);
        Assert.Equal(
            new HttpRetryModel(3, null, "5xx,418,+503,connect-failure", TimeSpan.FromMilliseconds(100), IgnorePreviousHosts: true),
            result.Config.VirtualServices[0].Http[0].Retries);
    }

    [Fact]
    public void Load_ZeroAttemptsWithRetryOn_IsError()
    {
        var error = SingleError(Canary.Replace("attempts: 3", "attempts: 0", StringComparison.Ordinal));

        Assert.Contains("spec.http[0].retries.attempts: is 0", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_TwoVirtualServicesForOneHost_IsErrorPointingAtTheFirst()
    {
        var second = Canary.Replace("name: orders\n", "name: orders-b\n", StringComparison.Ordinal);
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", Canary), ("vs-b.yaml", second)]);

        var error = Assert.Single(result.Errors);
        Assert.Equal(("vs-b.yaml", 6), (error.File, error.Line));
        Assert.Contains($"VirtualService default/orders-b: spec.hosts[0]: host {Fqdn} already has VirtualService default/orders (vs.yaml:1)", error.Message, StringComparison.Ordinal);
    }

    /// <summary>The same host spelt another way (FQDN, or short in another resource) is still the same host.</summary>
    [Fact]
    public void Load_SecondVirtualServiceSpellingTheHostAsFqdn_IsStillADuplicate()
    {
        var second = Canary.Replace("name: orders\n", "name: orders-b\n", StringComparison.Ordinal).Replace("hosts: [orders]", $"hosts: [{Fqdn.ToUpperInvariant()}]", StringComparison.Ordinal);
        var result = YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", Canary), ("vs-b.yaml", second)]);

        var error = Assert.Single(result.Errors);
        Assert.Contains("already has VirtualService default/orders", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A short host in another namespace names another service, which no ServiceEntry declares.</summary>
    [Fact]
    public void Load_ShortHostInAnotherNamespace_IsNotTheDefaultNamespacesService()
    {
        var result = Load(Canary.Replace("name: orders\n", "name: orders\n  namespace: shop\n", StringComparison.Ordinal));

        Assert.True(result.HasErrors);
        Assert.Contains(result.Errors, e => e.Message.Contains("spec.hosts[0]: host orders.shop.svc.cluster.local is not declared by any ServiceEntry", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_HeaderNameWithCapitals_MatchedLowerCased_AsIstioAndEnvoyDo()
    {
        var result = Load(Canary.Replace("x-user: {regex", "X-User: {regex", StringComparison.Ordinal));

        Assert.False(result.HasErrors, string.Join("; ", result.Errors.Select(e => e.Message)));
        Assert.Contains(result.Config.VirtualServices[0].Http[0].Matches[0].Headers, h => h.Name == "x-user");
    }

    [Fact]
    public void Load_GatewaysWithMeshAndAnIngressGateway_AppliesToMeshTraffic_WarningNamingTheGateway()
    {
        // The common shape: one VirtualService for an ingress gateway and the mesh. Mesh has no gateways; the mesh part applies.
        var result = Load(Canary.Replace("gateways: [mesh]", "gateways: [istio-system/public, mesh]", StringComparison.Ordinal)+ "\n  exportTo: [\"*\"]");

        Assert.DoesNotContain(result.Errors, e => !e.IsWarning);
        var warning = Assert.Single(result.Errors, e => e.IsWarning);
        Assert.Contains("spec.gateways: ingress gateways istio-system/public are not Mesh's", warning.Message, StringComparison.Ordinal);
        Assert.Equal(2, Assert.Single(result.Config.VirtualServices).Http.Length);
    }

    [Fact]
    public void Load_GatewaysWithoutMesh_AppliesToNoMeshClient_WithAWarning()
    {
        var result = Load(Canary.Replace("gateways: [mesh]", "gateways: [istio-system/public]", StringComparison.Ordinal));

        Assert.DoesNotContain(result.Errors, e => !e.IsWarning);
        Assert.Contains("spec.gateways: names no 'mesh' (istio-system/public)", Assert.Single(result.Errors).Message, StringComparison.Ordinal);
        Assert.Empty(result.Config.VirtualServices);
    }

    [Fact]
    public void Load_MatchBoundToAGatewayOnly_IsLeftOut_AsIstiodLeavesItOutForSidecars()
    {
        var result = Load(Canary.Replace("    - name: beta\n", "    - name: beta\n      gateways: [istio-system/public]\n", StringComparison.Ordinal));

        Assert.DoesNotContain(result.Errors, e => !e.IsWarning);
        Assert.Contains("spec.http[0].match[0].gateways: names no 'mesh'", Assert.Single(result.Errors).Message, StringComparison.Ordinal);

        // The first route's only match was the gateway's: the route is gone, the split stays.
        Assert.Single(Assert.Single(result.Config.VirtualServices).Http);
    }

    [Theory]
    [InlineData("x-user: {regex", "\":status\": {regex", "spec.http[0].match[0].headers.:status: is not a request pseudo-header a route can match")]
    [InlineData("uri: {prefix: /api}", "uri: {prefix: /api, exact: /api}", "spec.http[0].match[0].uri: must set exactly one of exact, prefix or regex")]
    [InlineData("uri: {prefix: /api}", "uri: {suffix: /api}", "spec.http[0].match[0].uri.suffix: is not a string match")]
    [InlineData("uri: {prefix: /api}", "uri: {prefix: \"\"}", "spec.http[0].match[0].uri.prefix: must not be empty")]
    [InlineData("method: {exact: GET}", "method: {regex: \"*\"}", "spec.http[0].match[0].method.regex: '*' is not a valid RE2 regex; use {} to match any value")]
    [InlineData("ignoreUriCase: true", "ignoreUriCase: maybe", "spec.http[0].match[0].ignoreUriCase: must be true or false")]
    [InlineData("attempts: 3", "attempts: -1", "spec.http[0].retries.attempts: must be a non-negative integer")]
    [InlineData("attempts: 3", "attempts: 11", "spec.http[0].retries.attempts: 11 is more than Mesh clients retry (at most 10)")]
    [InlineData("retryOn: \"5xx,503,connect-failure\"", "retryOn: \"5xx,retriable-headers\"", "spec.http[0].retries.retryOn: 'retriable-headers' is not supported")]
    [InlineData("weight: 90", "weight: ninety", "spec.http[1].route[0].weight: must be an integer")]
    [InlineData("retryOn: \"5xx,503,connect-failure\"", "retryOn: \"5xx, connect-failure\"", "spec.http[0].retries.retryOn: ' connect-failure' is not a retry policy (no spaces around commas, as Istio)")]
    [InlineData("retryOn: \"5xx,503,connect-failure\"", "retryOn: \"5xx,599\"", "spec.http[0].retries.retryOn: '599' is not a retry policy")]
    [InlineData("retryOn: \"5xx,503,connect-failure\"", "retryOn: \"306,5xx\"", "spec.http[0].retries.retryOn: '306' is not a retry policy")]
    [InlineData("retryOn: \"5xx,503,connect-failure\"", "retryOn: \"5xx,\"", "spec.http[0].retries.retryOn: '' is not a retry policy")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500ms, retryRemoteLocalities: true,", "spec.http[0].retries.retryRemoteLocalities: true is not supported: Mesh clients retry on another endpoint of the same locality priority")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500ms, retryIgnorePreviousHosts: false,", "spec.http[0].retries.retryIgnorePreviousHosts: false is not supported: Mesh clients always retry on an endpoint earlier attempts did not take")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500ms, retryIgnorePreviousHosts: yes,", "spec.http[0].retries.retryIgnorePreviousHosts: must be true or false (got 'yes')")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500ms, backoff: 0s,", "spec.http[0].retries.backoff: must be at least 1ms")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500ms, backoff: 2.5ms,", "spec.http[0].retries.backoff: only durations to ms precision are supported (got '2.5ms')")]
    [InlineData("perTryTimeout: 500ms,", "perTryTimeout: 500100us,", "spec.http[0].retries.perTryTimeout: only durations to ms precision are supported")]
    [InlineData("    timeout: 2s", "    timeout: 1.5ms", "spec.http[0].timeout: only durations to ms precision are supported (got '1.5ms')")]
    [InlineData("attempts: 3", "attempts: 0", "spec.http[0].retries.attempts: is 0, so perTryTimeout, retryOn and retryRemoteLocalities would do nothing")]
    public void Load_MalformedField_IsErrorNamingItsPath(string find, string replace, string expected)
    {
        var yaml = Canary.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Canary, yaml);

        var error = SingleError(yaml);

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_ExportToSeveralNamespacesItCannotApply_ReportsEachEntry()
    {
        // "~" is Istio's "visible to no namespace".
        var result = Load(Canary + "\n  exportTo: [billing, \".\", \"~\"]");

        var errors = result.Errors.Where(e => !e.IsWarning).Select(e => e.Message).ToArray();
        Assert.True(errors.Length == 2, string.Join(" | ", errors));
        Assert.Contains("spec.exportTo[0]: 'billing' is not supported yet", errors[0], StringComparison.Ordinal);
        Assert.Contains("spec.exportTo[2]: ", errors[1], StringComparison.Ordinal);
        Assert.Contains("is not supported yet", errors[1], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("    timeout: 2s", "    timeout: 2s\n    corsPolicy: {allowOrigins: []}", "spec.http[0].corsPolicy: is not supported yet")]
    [InlineData("    timeout: 2s", "    timeout: 2s\n    delegate: {name: x}", "spec.http[0].delegate: is not supported yet")]
    [InlineData("  gateways: [mesh]", "  gateways: [mesh]\n  tcp: []", "spec.tcp: is not supported yet")]
    [InlineData("  gateways: [mesh]", "  gateways: [mesh]\n  tls: []", "spec.tls: is not supported yet")]
    [InlineData("  gateways: [mesh]", "  gateways: [mesh]\n  exportTo: [\".\", billing]", "spec.exportTo[1]: 'billing' is not supported yet")]
    [InlineData("weight: 90", "weight: 90\n      headers: {request: {set: {a: b}}}", "spec.http[1].route[0].headers: is not supported yet")]
    public void Load_FieldNotTranslated_IsErrorNamingItsPath(string find, string replace, string expected)
    {
        var yaml = Canary.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Canary, yaml);

        var error = SingleError(yaml);

        Assert.Equal("vs.yaml", error.File);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("    labels: {version: v1}", "    labels: {version: v1}\n    trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}", "spec.subsets[0].trafficPolicy.connectionPool.tcp.maxConnections: must be an integer from 0 to 2147483647 (got '-1')")]
    [InlineData("  - name: v1", "  - name: v1\n    extra: 1", "spec.subsets[0].extra: is not supported yet")]
    [InlineData("  subsets:", "  trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}\n  subsets:", "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be a percentage from 0 to 100 (got 150)")]
    [InlineData("  subsets:", "  trafficPolicy: {connectionPool: {tcp: {tcpKeepalive: {time: 1s}}}}\n  subsets:", "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive: is not supported yet")]
    [InlineData("  subsets:", "  trafficPolicy: {portLevelSettings: [{loadBalancer: {simple: ROUND_ROBIN}}]}\n  subsets:", "spec.trafficPolicy.portLevelSettings[0].port: is required")]
    [InlineData("    labels: {version: v1}", "    labels: {version: v1}\n    trafficPolicy: {loadBalancer: {localityLbSetting: {enabled: true}}}", "spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting: is supported only in spec.trafficPolicy.loadBalancer yet")]
    [InlineData("  subsets:", "  exportTo: [\".\"]\n  subsets:", "spec.exportTo[0]: '.' is not supported yet")]
    [InlineData("  subsets:", "  workloadSelector: {matchLabels: {app: x}}\n  subsets:", "spec.workloadSelector: is not supported yet")]
    [InlineData("  - name: v2", "  - name: v1", "spec.subsets[1].name: subset v1 is defined twice")]
    [InlineData("loadBalancer: {simple: LEAST_REQUEST}", "loadBalancer: {simple: MAGLEV}", "spec.subsets[1].trafficPolicy.loadBalancer.simple: 'MAGLEV' is not a load balancer")]
    public void Load_BadSubset_IsErrorNamingItsPath(string find, string replace, string expected)
    {
        var services = Services.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Services, services);

        var result = YamlConfigLoader.Load([("services.yaml", services)]);

        var error = Assert.Single(result.Errors);
        Assert.Equal("services.yaml", error.File);
        Assert.Contains($"DestinationRule default/orders: {expected}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Reload_BadVirtualServiceEdit_KeepsLastGoodConfigAndThenRecovers()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        File.WriteAllText(Path.Combine(_directory, "services.yaml"), Services);
        var vsFile = Path.Combine(_directory, "vs.yaml");
        File.WriteAllText(vsFile, Canary);
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        var good = store.Current;

        File.WriteAllText(vsFile, Canary.Replace("weight: 10", "weight: -10", StringComparison.Ordinal));
        Assert.False(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        Assert.Same(good, store.Current);
        Assert.Equal([90u, 10u], store.Current.Config.VirtualServices[0].Http[1].Destinations.Select(d => d.Weight).ToArray());
        var error = Assert.Single(store.Errors);
        Assert.Equal(("vs.yaml", 28), (error.File, error.Line));

        File.WriteAllText(vsFile, Canary.Replace("weight: 10", "weight: 30", StringComparison.Ordinal));
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        Assert.Empty(store.Errors);
        Assert.Equal([90u, 30u], store.Current.Config.VirtualServices[0].Http[1].Destinations.Select(d => d.Weight).ToArray());
    }

    [Fact]
    public void Reload_RemovingASubsetStillRouted_KeepsLastGoodConfig()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var servicesFile = Path.Combine(_directory, "services.yaml");
        File.WriteAllText(servicesFile, Services);
        File.WriteAllText(Path.Combine(_directory, "vs.yaml"), Canary);
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        var good = store.Current;

        File.WriteAllText(servicesFile, Services.Replace("  - name: v1\n    labels: {version: v1}\n", string.Empty, StringComparison.Ordinal));
        Assert.False(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));

        Assert.Same(good, store.Current);
        Assert.Contains(store.Errors, e => e.File == "vs.yaml" && e.Message.Contains("subset v1 is not defined", StringComparison.Ordinal));
    }
}
