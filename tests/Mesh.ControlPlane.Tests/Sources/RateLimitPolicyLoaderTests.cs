using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>HTTPLocalRateLimitPolicy: parsed, every bad input refused at file:line with its field path, and translated to local_ratelimit.</summary>
public sealed class RateLimitPolicyLoaderTests
{
    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders, namespace: shop}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          endpoints:
          - {address: 10.0.0.5, ports: {http: 8080}, serviceAccount: orders}
        ---

        """;

    // Line 1 of Policy is line 10 of the file (Orders is 9 lines).
    private static string Policy(string spec, string name = "limits") => $"""
        apiVersion: policy.mesh-dotnet.io/v1alpha1
        kind: HTTPLocalRateLimitPolicy
        metadata: {"{"}name: {name}, namespace: shop{"}"}
        spec:
        {Indent(spec)}
        """;

    private static string Indent(string text) => string.Join("\n", text.Split('\n').Select(l => "  " + l));

    private static YamlLoadResult Load(string yaml) => YamlConfigLoader.Load([("limits.yaml", yaml)]);

    [Fact]
    public void Load_FullPolicy_Parsed()
    {
        var result = Load(Orders + Policy("""
            targetRef: {group: networking.istio.io, kind: ServiceEntry, name: orders}
            total: {requestsPerSecond: 100}
            identity: {requestsPerSecond: 20}
            overrides:
            - requestsPerSecond: 50
              clientRefs:
              - {kind: ServiceAccount, name: frontend}
              - {kind: ServiceAccount, name: batch, namespace: jobs}
            """));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        var policy = Assert.Single(result.Config.LocalRateLimitPolicies);
        Assert.Equal(("shop", "limits", "orders", 100u, 20u), (policy.Namespace, policy.Name, policy.Target, policy.Total!.Value, policy.Identity!.Value));
        var entry = Assert.Single(policy.Overrides);
        Assert.Equal(50u, entry.RequestsPerSecond);
        Assert.Equal([new ServiceAccountRef("shop", "frontend"), new ServiceAccountRef("jobs", "batch")], entry.ClientRefs.ToArray());
    }

    public static TheoryData<string, string, int> BadSpecs => new()
    {
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: -5}", "spec.total.requestsPerSecond: must be a whole number from 1", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 0}", "spec.total.requestsPerSecond: must be a whole number from 1", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\nidentity: {requestsPerSecond: 0}", "spec.identity.requestsPerSecond: must be a whole number from 1", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: ten}", "spec.total.requestsPerSecond: must be a whole number from 1 to 2147483647 (got 'ten')", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 1.5}", "spec.total.requestsPerSecond: must be a whole number", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {}", "spec.total.requestsPerSecond: is required", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10}\nidentity: {requestsPerSecond: 11}", "spec.identity.requestsPerSecond: 11 must not exceed spec.total.requestsPerSecond (10)", 16 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10}\noverrides:\n- requestsPerSecond: 20\n  clientRefs: [{kind: ServiceAccount, name: a}]", "spec.overrides[0].requestsPerSecond: 20 must not exceed spec.total.requestsPerSecond (10)", 17 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: -1\n  clientRefs: [{kind: ServiceAccount, name: a}]", "spec.overrides[0].requestsPerSecond: must be a whole number from 1", 16 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: 5\n  clientRefs: []", "spec.overrides[0].clientRefs: must list at least one ServiceAccount", 17 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: 5", "spec.overrides[0].clientRefs: is required", 16 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: 5\n  clientRefs: [{kind: User, name: a}]", "spec.overrides[0].clientRefs[0].kind: 'User' is not supported; use ServiceAccount", 17 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: 5\n  clientRefs: [{kind: ServiceAccount, name: a}, {kind: ServiceAccount, name: a, namespace: shop}]", "spec.overrides[0].clientRefs[1]: ServiceAccount shop/a is already listed at spec.overrides[0].clientRefs[0]", 17 },
        { "targetRef: {kind: ServiceEntry, name: orders}\noverrides:\n- requestsPerSecond: 5\n  clientRefs: [{kind: ServiceAccount, name: a}]\n- requestsPerSecond: 6\n  clientRefs: [{kind: ServiceAccount, name: a}]", "spec.overrides[1].clientRefs[0]: ServiceAccount shop/a is already listed", 19 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10, burst: 20}", "spec.total.burst: is not a field of HTTPLocalRateLimitPolicy here", 15 },
        { "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10}\nrps: 5", "spec.rps: is not a field of HTTPLocalRateLimitPolicy here", 16 },
        { "targetRef: {kind: ServiceEntry, name: orders, namespace: other}\ntotal: {requestsPerSecond: 10}", "spec.targetRef.namespace: is not a field", 14 },
        { "targetRef: {kind: Server, name: orders}\ntotal: {requestsPerSecond: 10}", "spec.targetRef.kind: 'Server' is not supported; use ServiceEntry", 14 },
        { "targetRef: {group: policy.linkerd.io, kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10}", "spec.targetRef.group: 'policy.linkerd.io' must be networking.istio.io", 14 },
        { "targetRef: {kind: ServiceEntry}\ntotal: {requestsPerSecond: 10}", "spec.targetRef.name: is required", 14 },
        { "total: {requestsPerSecond: 10}", "spec.targetRef: is required", 14 },
        { "targetRef: {kind: ServiceEntry, name: orders}", "spec: limits nothing: set total, identity or overrides", 14 },
        { "targetRef: {kind: ServiceEntry, name: payments}\ntotal: {requestsPerSecond: 10}", "spec.targetRef.name: ServiceEntry shop/payments does not exist", 10 },
    };

    [Theory]
    [MemberData(nameof(BadSpecs))]
    public void Load_BadInput_ErrorAtFileLineWithFieldPath(string spec, string expected, int line)
    {
        var result = Load(Orders + Policy(spec));

        Assert.True(result.HasErrors);
        var error = Assert.Single(result.Errors, e => e.Message.Contains(expected, StringComparison.Ordinal));
        Assert.Equal(("limits.yaml", line), (error.File, error.Line));
        Assert.StartsWith("HTTPLocalRateLimitPolicy shop/limits: ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_TwoPoliciesForOneTarget_ErrorNamesBoth()
    {
        var spec = "targetRef: {kind: ServiceEntry, name: orders}\ntotal: {requestsPerSecond: 10}";
        var result = Load(Orders + Policy(spec, "first") + "\n---\n" + Policy(spec, "second"));

        var error = Assert.Single(result.Errors);
        Assert.Contains("HTTPLocalRateLimitPolicy shop/second: spec.targetRef.name: ServiceEntry shop/orders already has HTTPLocalRateLimitPolicy shop/first (limits.yaml:10)", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("policy.mesh-dotnet.io/v1", "HTTPLocalRateLimitPolicy", "apiVersion: must be one of policy.mesh-dotnet.io/v1alpha1")]
    [InlineData("policy.mesh-dotnet.io/v1alpha1", "HttpLocalRateLimitPolicy", "kind: HttpLocalRateLimitPolicy is not a known policy.mesh-dotnet.io kind")]
    public void Load_MisspeltKindOrVersion_IsAnErrorNotIgnored(string apiVersion, string kind, string expected)
    {
        var result = Load(Orders + $"apiVersion: {apiVersion}\nkind: {kind}\nmetadata: {{name: limits, namespace: shop}}\nspec:\n  targetRef: {{kind: ServiceEntry, name: orders}}\n  total: {{requestsPerSecond: 10}}\n");

        Assert.True(result.HasErrors);
        Assert.Contains(result.Errors, e => !e.IsWarning && e.Message.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Translate_Policy_LocalRateLimitAfterRbacWithTotalOverridesThenWildcard()
    {
        var result = Load(Orders + Policy("""
            targetRef: {kind: ServiceEntry, name: orders}
            total: {requestsPerSecond: 100}
            identity: {requestsPerSecond: 20}
            overrides:
            - requestsPerSecond: 50
              clientRefs: [{kind: ServiceAccount, name: frontend}]
            """));
        Assert.False(result.HasErrors, string.Join("\n", result.Errors));

        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        var listener = snapshot.InboundListeners[InboundListenerTranslator.ListenerName("10.0.0.5", 8080)].Resource.Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        var names = manager.HttpFilters.Select(f => f.Name).ToList();
        Assert.Equal(["envoy.filters.http.local_ratelimit", "envoy.filters.http.router"], names[^2..]);
        var config = manager.HttpFilters[^2].TypedConfig.Unpack<LocalRateLimit>();
        Assert.Equal((100u, 100u, TimeSpan.FromSeconds(1)), (config.TokenBucket.MaxTokens, config.TokenBucket.TokensPerFill!.Value, config.TokenBucket.FillInterval.ToTimeSpan()));
        Assert.Equal((100u, 100u), (config.FilterEnabled.DefaultValue.Numerator, config.FilterEnforced.DefaultValue.Numerator));
        Assert.True(config.RateLimitedAsResourceExhausted);
        Assert.Equal(Mesh.Xds.Envoy.Extensions.Common.Ratelimit.V3.XRateLimitHeadersRFCVersion.DraftVersion03, config.EnableXRatelimitHeaders);
        Assert.Equal(
            [("spiffe://cluster.local/ns/shop/sa/frontend", 50u), (string.Empty, 20u)],
            config.Descriptors.Select(d => (d.Entries.Single().Value, d.TokenBucket.MaxTokens)).ToArray());
        Assert.Equal("envoy.rate_limit_descriptors.expr", config.RateLimits.Single().Actions.Single().Extension.Name);
    }

    [Fact]
    public void Translate_ServiceWithoutPolicy_NoRateLimitFilter()
    {
        var result = Load(Orders.TrimEnd('-', '\n', ' '));
        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        var listener = snapshot.InboundListeners[InboundListenerTranslator.ListenerName("10.0.0.5", 8080)].Resource.Unpack<Listener>();
        var manager = listener.FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();

        Assert.DoesNotContain(manager.HttpFilters, f => f.Name == "envoy.filters.http.local_ratelimit");
    }

    [Fact]
    public void Translate_PolicyOfAnotherNamespaceListingTheAddress_DoesNotThrottleTheOwner()
    {
        // Another namespace's ServiceEntry names the orders workload's address as its own endpoint and limits it to 1/s:
        // the listener belongs to shop/orders, and only shop's policies bind it.
        var result = Load(Orders + """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata: {name: decoy, namespace: evil}
            spec:
              hosts: [decoy]
              ports: [{number: 80, name: http, protocol: HTTP}]
              endpoints:
              - {address: 10.0.0.5, ports: {http: 8080}}
            ---
            apiVersion: policy.mesh-dotnet.io/v1alpha1
            kind: HTTPLocalRateLimitPolicy
            metadata: {name: choke, namespace: evil}
            spec:
              targetRef: {kind: ServiceEntry, name: decoy}
              total: {requestsPerSecond: 1}
            """);
        Assert.False(result.HasErrors, string.Join("\n", result.Errors));

        var snapshot = XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
        var inbound = snapshot.InboundListeners[InboundListenerTranslator.ListenerName("10.0.0.5", 8080)];
        var manager = inbound.Resource.Unpack<Listener>().FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();

        Assert.Equal(["spiffe://cluster.local/ns/shop/sa/orders"], inbound.Identities.ToArray());
        Assert.DoesNotContain(manager.HttpFilters, f => f.Name == "envoy.filters.http.local_ratelimit");
    }
}
