using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using RandomConfig = Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.Random.V3.Random;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>DestinationRule <c>loadBalancer</c> (simple RANDOM, consistentHash): validation as Istio's, then CDS lb_policy and RDS hash_policy.</summary>
public sealed class LoadBalancerTranslatorTests
{
    // Line 1 is "apiVersion" of the ServiceEntry; the DestinationRule's loadBalancer block starts at line 14.
    private const string Services = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: orders}
        spec:
          hosts: [orders]
          ports: [{number: 80, name: http, protocol: HTTP}]
          workloadSelector: {labels: {app: orders}}
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: orders}
        spec:
          host: orders
          trafficPolicy:
            loadBalancer:
              consistentHash: {httpHeaderName: X-User}
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
            trafficPolicy:
              loadBalancer: {simple: RANDOM}
        """;

    private const string Split = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - name: v1-only
            match: [{uri: {prefix: /v1}}]
            route: [{destination: {host: orders, subset: v1}}]
          - name: v2-only
            match: [{uri: {prefix: /v2}}]
            route: [{destination: {host: orders, subset: v2}}]
          - route: [{destination: {host: orders}}]
        """;

    private static YamlLoadResult Load(string services, string? virtualService = null) =>
        YamlConfigLoader.Load(virtualService is null ? [("services.yaml", services)] : [("services.yaml", services), ("vs.yaml", virtualService)]);

    private static XdsSnapshot Translate(string services, string? virtualService = null)
    {
        var result = Load(services, virtualService);
        Assert.Empty(result.Errors);
        return XdsTranslator.Translate(new ModelSnapshot(1, result.Config, []), 1);
    }

    private static Cluster ClusterOf(XdsSnapshot snapshot, string name) => snapshot.Clusters[name].Resource.Unpack<Cluster>();

    private static RepeatedRoutes Routes(XdsSnapshot snapshot) => new(Assert.Single(snapshot.Routes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes);

    [Fact]
    public void ConsistentHashByHeader_RingHashClusterAndHeaderHashPolicyOnTheCatchAllRoute()
    {
        var snapshot = Translate(Services);

        var cluster = ClusterOf(snapshot, Cluster80);
        Assert.Equal(Cluster.Types.LbPolicy.RingHash, cluster.LbPolicy);
        Assert.Equal(1024UL, cluster.RingHashLbConfig.MinimumRingSize);
        Assert.Equal(RingHashLbConfig.Types.HashFunction.XxHash, cluster.RingHashLbConfig.HashFunction);
        Assert.Null(cluster.LoadBalancingPolicy);

        // Subset v1 sets no loadBalancer, so it inherits the top level; v2 replaces it with RANDOM.
        Assert.Equal(Cluster.Types.LbPolicy.RingHash, ClusterOf(snapshot, V1).LbPolicy);
        var v2 = ClusterOf(snapshot, V2);
        Assert.Equal(Cluster.Types.LbPolicy.RoundRobin, v2.LbPolicy);
        Assert.Equal([XdsTranslator.RandomPolicyName, XdsTranslator.RoundRobinPolicyName], v2.LoadBalancingPolicy.Policies.Select(p => p.TypedExtensionConfig.Name));
        Assert.True(v2.LoadBalancingPolicy.Policies[0].TypedExtensionConfig.TypedConfig.Is(RandomConfig.Descriptor));

        var route = Assert.Single(Routes(snapshot).Items);
        Assert.Equal("x-user", Assert.Single(route.Route_.HashPolicy).Header.HeaderName);
    }

    [Fact]
    public void VirtualServiceRoutes_CarryTheHashPolicyOfTheirDestination()
    {
        var routes = Routes(Translate(Services, Split)).Items;

        Assert.Equal(3, routes.Count);
        Assert.Equal("x-user", Assert.Single(routes[0].Route_.HashPolicy).Header.HeaderName); // v1 inherits
        Assert.Empty(routes[1].Route_.HashPolicy); // v2 is RANDOM
        Assert.Equal("x-user", Assert.Single(routes[2].Route_.HashPolicy).Header.HeaderName);
    }

    [Fact]
    public void StandardClientRetryPolicies_StartFromIstiodsDefault_PreviousHostsUnlessASingleDestinationHashes()
    {
        var snapshot = Translate(Services, """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: orders}
            spec:
              hosts: [orders]
              http:
              - name: hashed
                match: [{uri: {prefix: /v1}}]
                route: [{destination: {host: orders, subset: v1}}]
                retries: {attempts: 3, retryOn: 5xx}
              - name: random
                match: [{uri: {prefix: /v2}}]
                route: [{destination: {host: orders, subset: v2}}]
                retries: {attempts: 3, retryOn: 5xx}
              - name: split
                route:
                - destination: {host: orders, subset: v1}
                  weight: 50
                - destination: {host: orders}
                  weight: 50
            """);
        var standard = Assert.Single(snapshot.StandardClientRoutes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes;

        // As istiod's newRetryPolicy: a VirtualService's retries keep their own fields and add host_selection_retry_max_attempts
        // and, unless the route is a single destination with a hash, the previous_hosts predicate.
        var hashed = standard[0].Route_.RetryPolicy;
        Assert.Equal((3u, "5xx", 5L), (hashed.NumRetries!.Value, hashed.RetryOn, hashed.HostSelectionRetryMaxAttempts));
        Assert.Empty(hashed.RetryHostPredicate);
        var random = standard[1].Route_.RetryPolicy;
        Assert.Equal((3u, "5xx", 5L), (random.NumRetries!.Value, random.RetryOn, random.HostSelectionRetryMaxAttempts));
        Assert.Equal("envoy.retry_host_predicates.previous_hosts", Assert.Single(random.RetryHostPredicate).Name);

        // A split hashes (its destinations' keys) but is not "a single destination with a hash": istiod keeps previous_hosts.
        var split = standard[2].Route_;
        Assert.NotEmpty(split.HashPolicy);
        Assert.Equal("envoy.retry_host_predicates.previous_hosts", Assert.Single(split.RetryPolicy.RetryHostPredicate).Name);

        // Mesh clients get the VirtualService's fields only (every retry of theirs avoids the endpoints tried before).
        var mesh = Routes(snapshot).Items[1].Route_.RetryPolicy;
        Assert.Equal(0L, mesh.HostSelectionRetryMaxAttempts);
        Assert.Empty(mesh.RetryHostPredicate);
    }

    [Fact]
    public void RetryBackoffAndIgnorePreviousHosts_AreSentAsIstiodSendsThem()
    {
        var snapshot = Translate(Services, """
            apiVersion: networking.istio.io/v1
            kind: VirtualService
            metadata: {name: orders}
            spec:
              hosts: [orders]
              http:
              - name: hashed
                route: [{destination: {host: orders, subset: v1}}]
                retries: {attempts: 3, retryOn: "5xx,+503", backoff: 100ms, retryIgnorePreviousHosts: true}
            """);
        var standard = Assert.Single(Assert.Single(snapshot.StandardClientRoutes[Cluster80].Resource.Unpack<RouteConfiguration>().VirtualHosts).Routes).Route_.RetryPolicy;
        var mesh = Assert.Single(Routes(snapshot).Items).Route_.RetryPolicy;

        // backoff is retry_back_off.base_interval (the clients cap at 10 × base); an explicit true keeps previous_hosts even
        // on a single destination that hashes, once.
        Assert.Equal(TimeSpan.FromMilliseconds(100), standard.RetryBackOff.BaseInterval.ToTimeSpan());
        Assert.Equal("envoy.retry_host_predicates.previous_hosts", Assert.Single(standard.RetryHostPredicate).Name);
        Assert.Equal(TimeSpan.FromMilliseconds(100), mesh.RetryBackOff.BaseInterval.ToTimeSpan());
        Assert.Equal("5xx,retriable-status-codes", mesh.RetryOn);
        Assert.Equal([503u], mesh.RetriableStatusCodes.ToArray());
    }

    [Theory]
    [InlineData("{httpCookie: {name: session, path: /, ttl: 0s}}", "cookie")]
    [InlineData("{httpQueryParameterName: user}", "query")]
    [InlineData("{useSourceIp: true}", "source")]
    public void ConsistentHashKeys_BecomeTheirHashPolicy(string hash, string kind)
    {
        var snapshot = Translate(Services.Replace("{httpHeaderName: X-User}", hash, StringComparison.Ordinal));

        var policy = Assert.Single(Assert.Single(Routes(snapshot).Items).Route_.HashPolicy);
        switch (kind)
        {
            case "cookie":
                Assert.Equal("session", policy.Cookie.Name);
                Assert.Equal("/", policy.Cookie.Path);
                Assert.Equal(TimeSpan.Zero, policy.Cookie.Ttl.ToTimeSpan());
                break;
            case "query":
                Assert.Equal("user", policy.QueryParameter.Name);
                break;
            default:
                Assert.True(policy.ConnectionProperties.SourceIp);
                break;
        }
    }

    [Theory]
    [InlineData("{httpHeaderName: x, ringHash: {minimumRingSize: 4096}}", 4096UL)]
    [InlineData("{httpHeaderName: x, minimumRingSize: 2048}", 2048UL)]
    [InlineData("{httpHeaderName: x, maglev: {tableSize: 65537}}", 65537UL)]
    [InlineData("{httpHeaderName: x, maglev: {}}", 65537UL)]
    public void RingSizeAndMaglev_GoOutAsRingHashThatEveryClientAccepts(string hash, ulong ringSize)
    {
        var cluster = ClusterOf(Translate(Services.Replace("{httpHeaderName: X-User}", hash, StringComparison.Ordinal)), Cluster80);

        // grpc-js NACKs MAGLEV: Maglev becomes RING_HASH with the table size as the ring size.
        Assert.Equal(Cluster.Types.LbPolicy.RingHash, cluster.LbPolicy);
        Assert.Equal(ringSize, cluster.RingHashLbConfig.MinimumRingSize);
    }

    [Fact]
    public void CookieWithTtl_IsAWarningNamingTheField()
    {
        var result = Load(Services.Replace("{httpHeaderName: X-User}", "{httpCookie: {name: session, ttl: 1h}}", StringComparison.Ordinal));

        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal(16, warning.Line);
        Assert.Contains("spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl: is not applied by proxyless clients", warning.Message, StringComparison.Ordinal);
        Assert.Equal(LoadBalancerKind.ConsistentHash, Assert.Single(result.Config.DestinationRules).LoadBalancer);
    }

    [Theory]
    [InlineData("{httpHeaderName: x, useSourceIp: true}", "consistentHash: sets httpHeaderName and useSourceIp; exactly one hash key is allowed")]
    [InlineData("{ringHash: {minimumRingSize: 10}}", "consistentHash: needs a hash key: one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName")]
    [InlineData("{httpHeaderName: \"\"}", "consistentHash.httpHeaderName: must not be empty")]
    [InlineData("{httpHeaderName: \"bad header\"}", "consistentHash.httpHeaderName: 'bad header' is not a valid HTTP header name")]
    [InlineData("{httpQueryParameterName: \"\"}", "consistentHash.httpQueryParameterName: must not be empty")]
    [InlineData("{useSourceIp: false}", "consistentHash.useSourceIp: is false, so there is no hash key")]
    [InlineData("{useSourceIp: yes}", "consistentHash.useSourceIp: must be true or false")]
    [InlineData("{httpCookie: {path: /}}", "consistentHash.httpCookie.name: is required")]
    [InlineData("{httpCookie: {name: \"a;b\"}}", "consistentHash.httpCookie.name: 'a;b' is not a valid cookie name")]
    [InlineData("{httpCookie: {name: s, ttl: soon}}", "consistentHash.httpCookie.ttl: must be a duration")]
    [InlineData("{httpCookie: {name: s, attributes: []}}", "consistentHash.httpCookie.attributes: is not supported yet")]
    [InlineData("{httpHeaderName: x, ringHash: {minimumRingSize: 0}}", "consistentHash.ringHash.minimumRingSize: must be an integer from 1 to 8388608 (got '0')")]
    [InlineData("{httpHeaderName: x, ringHash: {minimumRingSize: 8388609}}", "consistentHash.ringHash.minimumRingSize: must be an integer from 1 to 8388608")]
    [InlineData("{httpHeaderName: x, minimumRingSize: -1}", "consistentHash.minimumRingSize: must be an integer from 1 to 8388608")]
    [InlineData("{httpHeaderName: x, maglev: {tableSize: 65536}}", "consistentHash.maglev.tableSize: 65536 is not a prime number")]
    [InlineData("{httpHeaderName: x, maglev: {tableSize: 5000011}}", "consistentHash.maglev.tableSize: must be an integer from 1 to 5000010")]
    [InlineData("{httpHeaderName: x, maglev: {tableSize: 65537}, ringHash: {minimumRingSize: 1}}", "consistentHash: set only one of ringHash, maglev and minimumRingSize")]
    [InlineData("{httpHeaderName: x}\n      simple: RANDOM", "consistentHash: cannot be set together with simple")]
    public void BadConsistentHash_IsErrorAtFileLineAndFieldPath(string hash, string expected)
    {
        var result = Load(Services.Replace("{httpHeaderName: X-User}", hash, StringComparison.Ordinal));

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Equal("services.yaml", error.File);
        Assert.InRange(error.Line, 14, 17);
        Assert.Contains($"DestinationRule default/orders: spec.trafficPolicy.loadBalancer.{expected}", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("PASSTHROUGH", "PASSTHROUGH is not supported")]
    [InlineData("round_robin", "'round_robin' is not a load balancer")]
    public void BadSimple_IsError(string simple, string expected)
    {
        var result = Load(Services.Replace("{simple: RANDOM}", $"{{simple: {simple}}}", StringComparison.Ordinal));

        var error = Assert.Single(result.Errors);
        Assert.Equal(23, error.Line);
        Assert.Contains($"spec.subsets[1].trafficPolicy.loadBalancer.simple: {expected}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SubsetConsistentHash_KeysOnlyTheRoutesToThatSubset()
    {
        var services = Services
            .Replace("    loadBalancer:\n      consistentHash: {httpHeaderName: X-User}\n", "    loadBalancer: {simple: ROUND_ROBIN}\n", StringComparison.Ordinal)
            .Replace("{simple: RANDOM}", "{consistentHash: {httpCookie: {name: v2}}}", StringComparison.Ordinal);
        var snapshot = Translate(services, Split);

        Assert.Equal(Cluster.Types.LbPolicy.RingHash, ClusterOf(snapshot, V2).LbPolicy);
        Assert.Equal(Cluster.Types.LbPolicy.RoundRobin, ClusterOf(snapshot, V1).LbPolicy);
        var routes = Routes(snapshot).Items;
        Assert.Empty(routes[0].Route_.HashPolicy);
        Assert.Equal("v2", Assert.Single(routes[1].Route_.HashPolicy).Cookie.Name);
        Assert.Empty(routes[2].Route_.HashPolicy);
    }

    [Fact]
    public void PortLevelLoadBalancer_ReplacesTheConsistentHash_AndAPortLevelConsistentHashIsRefused()
    {
        var portLevel = Services.Replace(
            "      consistentHash: {httpHeaderName: X-User}\n",
            "      consistentHash: {httpHeaderName: X-User}\n    portLevelSettings: [{port: {number: 80}, loadBalancer: {simple: ROUND_ROBIN}}]\n",
            StringComparison.Ordinal);
        Assert.NotEqual(Services, portLevel);
        var snapshot = Translate(portLevel);
        Assert.Equal(Cluster.Types.LbPolicy.RoundRobin, ClusterOf(snapshot, Cluster80).LbPolicy);
        Assert.Empty(Assert.Single(Routes(snapshot).Items).Route_.HashPolicy);

        var refused = Load(portLevel.Replace("loadBalancer: {simple: ROUND_ROBIN}}]", "loadBalancer: {consistentHash: {useSourceIp: true}}}]", StringComparison.Ordinal));
        var error = Assert.Single(refused.Errors, e => !e.IsWarning);
        Assert.Contains("spec.trafficPolicy.portLevelSettings[0].loadBalancer.consistentHash: is not supported per port yet", error.Message, StringComparison.Ordinal);
    }

    private sealed record RepeatedRoutes(Google.Protobuf.Collections.RepeatedField<Route> Items);
}
