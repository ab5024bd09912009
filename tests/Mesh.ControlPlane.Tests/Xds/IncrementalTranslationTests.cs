using System.Collections.Frozen;
using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using static Mesh.ControlPlane.Tests.TestModels;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>
/// A translation that reuses the previous snapshot's per-service translations gives exactly the resources (byte for
/// byte) of a translation from scratch, across a sequence of changes to every kind of input a service's resources depend
/// on, and lists every resource whose bytes changed.
/// </summary>
public sealed class IncrementalTranslationTests : IDisposable
{
    private const string Root = "istio-system";
    private static readonly ClientTopology EastClient = new("us-east", "zone-a", string.Empty, new Dictionary<string, string>());
    private static readonly ClientSource BetaCaller = new("shop", new Dictionary<string, string> { ["track"] = "beta" });

    private readonly string _directory = Directory.CreateTempSubdirectory("mesh-incremental-").FullName;
    private readonly YamlParseCache _cache = new();

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static string ServiceEntry(string name, string endpoints, int port = 80, string? selector = null) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata: {name: {{{name}}}, namespace: shop}
        spec:
          hosts: [{{{name}}}.shop.svc.cluster.local]
          location: MESH_INTERNAL
          ports: [{number: {{{port}}}, name: http, protocol: HTTP}]
          resolution: STATIC
        {{{(selector is null ? $"  endpoints: {endpoints}" : $"  workloadSelector: {{labels: {selector}}}")}}}
        """;

    private static string WorkloadEntry(string name, string address, string version) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata: {name: {{{name}}}, namespace: shop}
        spec:
          address: {{{address}}}
          ports: {http: 8080}
          labels: {app: a, version: {{{version}}}}
          serviceAccount: a
          locality: us-east/zone-a
        """;

    private static string DestinationRule(string host, string trafficPolicy) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {name: {{{host}}}, namespace: shop}
        spec:
          host: {{{host}}}.shop.svc.cluster.local
          subsets:
          - {name: v1, labels: {version: v1}}
          - {name: v2, labels: {version: v2}}
        {{{trafficPolicy}}}
        """;

    private static string VirtualService(string host, string http) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: {{{host}}}, namespace: shop}
        spec:
          hosts: [{{{host}}}.shop.svc.cluster.local]
          http:
        {{{http}}}
        """;

    private const string BRoutesToA = """
          - route:
            - {destination: {host: a.shop.svc.cluster.local, subset: v1}, weight: 90}
            - {destination: {host: c.shop.svc.cluster.local}, weight: 10}
            mirror: {host: c.shop.svc.cluster.local}
        """;

    private const string BRoutesToAOnly = """
          - route:
            - {destination: {host: a.shop.svc.cluster.local, subset: v2}}
        """;

    private const string BRoutesToC = """
          - route:
            - {destination: {host: c.shop.svc.cluster.local}}
        """;

    private const string SourceScoped = """
          - match:
            - sourceLabels: {track: beta}
            route:
            - {destination: {host: d.shop.svc.cluster.local}}
          - route:
            - {destination: {host: b.shop.svc.cluster.local}}
        """;

    private static string PeerAuthentication(string mode) => $$$"""
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: default, namespace: {{{Root}}}}
        spec:
          mtls: {mode: {{{mode}}}}
        """;

    private static string Sidecar(string hosts) => $$$"""
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {name: default, namespace: shop}
        spec:
          egress:
          - hosts: [{{{hosts}}}]
        """;

    /// <summary>Each step: the files written (null deletes) and the registrations live then.</summary>
    private static IEnumerable<(string Step, Dictionary<string, string?> Files, ImmutableArray<WorkloadInstance> Registrations)> Steps()
    {
        ImmutableArray<WorkloadInstance> none = [];
        yield return ("initial", new()
        {
            ["a.yaml"] = ServiceEntry("a", string.Empty, selector: "{app: a}"),
            ["a-workloads.yaml"] = WorkloadEntry("a-1", "10.1.0.1", "v1") + "\n---\n" + WorkloadEntry("a-2", "10.1.0.2", "v2"),
            ["a-rule.yaml"] = DestinationRule("a", string.Empty),
            ["b.yaml"] = ServiceEntry("b", "[{address: 10.2.0.1, ports: {http: 8080}}]"),
            ["b-routes.yaml"] = VirtualService("b", BRoutesToA),
            ["c.yaml"] = ServiceEntry("c", "[{address: 10.3.0.1, ports: {http: 8080}}, {address: 10.3.0.2, ports: {http: 8080}}]"),
        }, none);
        yield return ("endpoint change", new() { ["c.yaml"] = ServiceEntry("c", "[{address: 10.3.0.9, ports: {http: 8080}}, {address: 10.3.0.2, ports: {http: 8080}}]") }, none);
        yield return ("workload moves subset", new() { ["a-workloads.yaml"] = WorkloadEntry("a-1", "10.1.0.1", "v2") + "\n---\n" + WorkloadEntry("a-2", "10.1.0.2", "v2") }, none);
        yield return ("registration selected", new(), [Workload("10.1.0.7", new Dictionary<string, uint> { ["http"] = 8080 }, new Dictionary<string, string> { ["app"] = "a", ["version"] = "v1" }, ns: "shop", source: EndpointSources.Registration)]);
        yield return ("registration gone", new(), none);
        yield return ("destination's DR hashes (routes of b change)", new()
        {
            ["a-rule.yaml"] = DestinationRule("a", "  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}"),
        }, none);
        yield return ("mesh-wide PeerAuthentication DISABLE", new() { ["pa.yaml"] = PeerAuthentication("DISABLE") }, none);
        yield return ("mesh-wide PeerAuthentication STRICT", new() { ["pa.yaml"] = PeerAuthentication("STRICT") }, none);
        yield return ("VirtualService of b now routes to c", new() { ["b-routes.yaml"] = VirtualService("b", BRoutesToC) }, none);
        yield return ("destination's port changes (routes of b change)", new() { ["c.yaml"] = ServiceEntry("c", "[{address: 10.3.0.9, ports: {http: 8080}}]", port: 81) }, none);
        yield return ("service removed", new() { ["b-routes.yaml"] = VirtualService("b", BRoutesToAOnly), ["c.yaml"] = null }, none);
        yield return ("service added with locality failover", new()
        {
            ["d.yaml"] = ServiceEntry("d", "[{address: 10.4.0.1, ports: {http: 8080}, locality: us-east/zone-a}, {address: 10.4.0.2, ports: {http: 8080}, locality: eu-west/zone-b}]"),
            ["d-rule.yaml"] = DestinationRule("d", "  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1}}").Replace("version: v1", "version: v9", StringComparison.Ordinal),
        }, none);
        yield return ("source-scoped routes added", new() { ["d-routes.yaml"] = VirtualService("d", SourceScoped) }, none);
        yield return ("Sidecar added", new() { ["sidecar.yaml"] = Sidecar("\"./a.shop.svc.cluster.local\"") }, none);
        yield return ("Sidecar widened", new() { ["sidecar.yaml"] = Sidecar("\"./*\"") }, none);
        yield return ("DR of d gone (locality plan gone)", new() { ["d-rule.yaml"] = null }, none);
        yield return ("PeerAuthentication removed", new() { ["pa.yaml"] = null, ["a-rule.yaml"] = DestinationRule("a", "  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}") }, none);
        yield return ("nothing changed", new(), none);
    }

    [Fact]
    public void Translate_SequenceOfChanges_IncrementalEqualsFromScratch_AndListsEveryChange()
    {
        XdsSnapshot? incremental = null;
        XdsSnapshot? scratchBefore = null;
        long version = 0;
        var reused = 0;
        foreach (var (step, files, registrations) in Steps())
        {
            foreach (var (file, text) in files)
            {
                var path = Path.Combine(_directory, file);
                if (text is null)
                {
                    File.Delete(path);
                }
                else
                {
                    File.WriteAllText(path, text);
                }
            }

            var load = YamlConfigLoader.LoadDirectory(_directory, _cache);
            Assert.True(!load.HasErrors, $"{step}: {string.Join("; ", load.Errors)}");
            var model = new ModelSnapshot(++version, load.Config, registrations);

            var next = XdsTranslator.Translate(model, version, Root, previous: incremental);
            var scratch = XdsTranslator.Translate(model, version, Root);
            AssertSameResources(step, scratch, next);
            if (incremental is not null)
            {
                AssertChangesComplete(step, scratchBefore!, scratch, next.Changes!);
                reused += next.Clusters.Count(c => ReferenceEquals(incremental.Clusters.GetValueOrDefault(c.Key), c.Value));
            }

            incremental = next;
            scratchBefore = scratch;
        }

        // The point of it: unchanged services kept their resource instances along the way.
        Assert.True(reused > 0);
    }

    [Fact]
    public void Translate_OneServiceChanged_OthersKeepTheirTranslationAndOnlyItIsTranslatedAgain()
    {
        var model = ScaleModels.Mesh(50, 3);
        var first = XdsTranslator.Translate(model, 1);

        // The first endpoint of svc-0 moves to another port; every other config object is the same instance, as after a
        // reload that parsed one file again.
        var workloads = model.Config.WorkloadEntries;
        var moved = workloads[0] with { Ports = workloads[0].Ports.SetItem("http", 8081) };
        var changed = model with { Version = 2, Config = model.Config with { WorkloadEntries = workloads.SetItem(0, moved) } };
        var second = XdsTranslator.Translate(changed, 2, previous: first);

        Assert.NotSame(first.Services[0], second.Services[0]);
        Assert.All(second.Services.Skip(1), s => Assert.True(ReferenceEquals(first.Services.Single(f => f.Host == s.Host), s), s.Host));
        Assert.Equal([ScaleModels.ClusterOf(0)], second.Changes!.Changed(TypeUrls.ClusterLoadAssignment));
        Assert.True(second.Changes.IsEmpty(TypeUrls.Cluster));
        Assert.True(second.Changes.IsEmpty(TypeUrls.RouteConfiguration));
        Assert.All(second.Endpoints.Where(e => e.Key != ScaleModels.ClusterOf(0)), e => Assert.True(ReferenceEquals(first.Endpoints[e.Key], e.Value), e.Key));
        AssertSameResources("moved", XdsTranslator.Translate(changed, 2), second);
    }

    [Fact]
    public void Translate_ServiceTranslatedAgainToTheSameBytes_KeepsThePreviousInstancesFromThenOn()
    {
        var model = ScaleModels.Mesh(5, 3);
        var first = XdsTranslator.Translate(model, 1);

        // svc-0's ServiceEntry is a new instance with the same values (a reloaded file): svc-0 is translated again, to the
        // same bytes. Its resources must be the instances of before, in this snapshot and in the next one that reuses the
        // translation (not a second serialized copy compared byte for byte on every change).
        var entries = model.Config.ServiceEntries;
        var reloaded = model with { Version = 2, Config = model.Config with { ServiceEntries = entries.SetItem(0, entries[0] with { }) } };
        var second = XdsTranslator.Translate(reloaded, 2, previous: first);
        var third = XdsTranslator.Translate(reloaded with { Version = 3 }, 3, previous: second);

        Assert.NotSame(first.Services[0], second.Services[0]);
        foreach (var snapshot in new[] { second, third })
        {
            Assert.All(snapshot.Clusters, c => Assert.True(ReferenceEquals(first.Clusters[c.Key], c.Value), c.Key));
            Assert.All(snapshot.Endpoints, e => Assert.True(ReferenceEquals(first.Endpoints[e.Key], e.Value), e.Key));
            Assert.All(snapshot.Routes, r => Assert.True(ReferenceEquals(first.Routes[r.Key], r.Value), r.Key));
            Assert.True(snapshot.Changes!.IsEmpty(TypeUrls.ClusterLoadAssignment));

            // What the next snapshot takes from: the same instances, not a copy of equal bytes.
            var kept = snapshot.Translations!.Of(snapshot.Services[0].Host)!;
            Assert.All(kept.Ports.SelectMany(p => p.Clusters), c =>
            {
                Assert.Same(first.Clusters[c.Name], c.Cluster);
                Assert.Same(first.Endpoints[c.Name], c.Endpoints);
            });
            Assert.All(kept.Ports, p => Assert.Same(first.Routes[p.Target.RouteName], p.Routes));
        }
    }

    [Fact]
    public void Translate_TrustDomainChanged_EveryServiceTranslatedAgain()
    {
        var model = Snapshot([Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], [Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 8080 }) with { ServiceAccount = "orders" }]);
        var first = XdsTranslator.Translate(model, 1, Root, "one.example");
        var second = XdsTranslator.Translate(model, 2, Root, "two.example", previous: first);

        AssertSameResources("trust domain", XdsTranslator.Translate(model, 2, Root, "two.example"), second);
        Assert.NotEmpty(second.Changes!.Changed(TypeUrls.Cluster));
    }

    private static void AssertSameResources(string step, XdsSnapshot expected, XdsSnapshot actual)
    {
        AssertSame(step + " CDS", expected.Clusters, actual.Clusters);
        AssertSame(step + " EDS", expected.Endpoints, actual.Endpoints);
        AssertSame(step + " RDS", expected.Routes, actual.Routes);
        AssertSame(step + " RDS standard", expected.StandardClientRoutes, actual.StandardClientRoutes);
        AssertSame(step + " RDS standard gRPC", expected.StandardGrpcRoutes, actual.StandardGrpcRoutes);
        Assert.Equal(expected.ListenerTargets.OrderBy(t => t.Key, StringComparer.Ordinal), actual.ListenerTargets.OrderBy(t => t.Key, StringComparer.Ordinal));
        Assert.Equal(expected.SourceScopedRouteNames.Order(StringComparer.Ordinal), actual.SourceScopedRouteNames.Order(StringComparer.Ordinal));
        Assert.Equal(expected.LocalityLbClusters.Keys.Order(StringComparer.Ordinal), actual.LocalityLbClusters.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, resource) in expected.Endpoints)
        {
            Assert.True(Bytes(expected.EndpointsFor(resource, EastClient)).SequenceEqual(Bytes(actual.EndpointsFor(actual.Endpoints[name], EastClient))), $"{step}: locality assignment {name}");
        }

        foreach (var kind in Enum.GetValues<RouteClientKind>())
        {
            AssertSame($"{step} RDS {kind} for a source-scoped caller", expected.RoutesFor(kind, BetaCaller), actual.RoutesFor(kind, BetaCaller));
        }

        var expectedInbound = expected.InboundListeners.OrderBy(l => l.Key, StringComparer.Ordinal).ToList();
        var actualInbound = actual.InboundListeners.OrderBy(l => l.Key, StringComparer.Ordinal).ToList();
        Assert.Equal(expectedInbound.Select(l => l.Key), actualInbound.Select(l => l.Key));
        Assert.All(expectedInbound.Zip(actualInbound), p =>
        {
            Assert.True(Bytes(p.First.Value.Xds).SequenceEqual(Bytes(p.Second.Value.Xds)), $"{step}: inbound {p.First.Key}");
            Assert.True(p.First.Value.Identities.SequenceEqual(p.Second.Value.Identities, StringComparer.Ordinal), $"{step}: identities of inbound {p.First.Key}");
        });
        Assert.Equal(expected.Services.Select(s => s.Host), actual.Services.Select(s => s.Host));
    }

    private static void AssertSame(string what, FrozenDictionary<string, XdsResource> expected, FrozenDictionary<string, XdsResource> actual)
    {
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), actual.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, resource) in expected)
        {
            Assert.True(resource.Resource.TypeUrl == actual[name].Resource.TypeUrl && Bytes(resource).SequenceEqual(Bytes(actual[name])), $"{what}: {name} differs from a translation from scratch");
        }
    }

    /// <summary>Every name whose bytes differ between the two from-scratch snapshots is listed as changed or removed.</summary>
    private static void AssertChangesComplete(string step, XdsSnapshot before, XdsSnapshot after, XdsChanges changes)
    {
        foreach (var (typeUrl, previous, current) in new[]
        {
            (TypeUrls.Cluster, before.Clusters, after.Clusters),
            (TypeUrls.ClusterLoadAssignment, before.Endpoints, after.Endpoints),
            (TypeUrls.RouteConfiguration, before.Routes, after.Routes),
            (TypeUrls.RouteConfiguration, before.StandardClientRoutes, after.StandardClientRoutes),
            (TypeUrls.RouteConfiguration, before.StandardGrpcRoutes, after.StandardGrpcRoutes),
        })
        {
            foreach (var (name, resource) in current)
            {
                if (!previous.TryGetValue(name, out var old) || !Bytes(old).SequenceEqual(Bytes(resource)))
                {
                    Assert.True(changes.Changed(typeUrl).Contains(name), $"{step}: {typeUrl} {name} changed but is not listed");
                }
            }

            foreach (var name in previous.Keys.Where(n => !current.ContainsKey(n)))
            {
                Assert.True(changes.Removed(typeUrl).Contains(name), $"{step}: {typeUrl} {name} removed but is not listed");
            }
        }

        var targetsChanged = !before.ListenerTargets.OrderBy(t => t.Key, StringComparer.Ordinal).SequenceEqual(after.ListenerTargets.OrderBy(t => t.Key, StringComparer.Ordinal));
        Assert.Equal(targetsChanged, changes.ListenerTargetsChanged);
        if (!before.Sidecars().SequenceEqual(after.Sidecars()))
        {
            Assert.True(changes.ScopesChanged, $"{step}: Sidecars changed, scopes not flagged");
        }
    }

    private static byte[] Bytes(XdsResource resource) => resource.Resource.Value.ToByteArray();
}

internal static class SnapshotScopeExtensions
{
    public static IEnumerable<string> Sidecars(this XdsSnapshot snapshot) =>
        snapshot.ScopeInputs.Sidecars.IsDefaultOrEmpty ? [] : snapshot.ScopeInputs.Sidecars.Select(s => $"{s.Namespace}/{s.Name}:{string.Join(",", s.Egress.SelectMany(e => e.Hosts))}");
}
