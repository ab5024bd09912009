using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.LeastRequest.V3;
using RandomPolicy = Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.Random.V3.Random;
using Mesh.Xds.Envoy.Extensions.LoadBalancingPolicies.RoundRobin.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Endpoint = Mesh.Xds.Envoy.Config.Endpoint.V3.Endpoint;
using Route = Mesh.Xds.Envoy.Config.Route.V3.Route;
using Mesh.Xds.Wire;

namespace Mesh.ControlPlane.Xds;

/// <summary>Pure translation of the mesh model to xDS resources using Istio's proxyless names.</summary>
internal static class XdsTranslator
{
    public const string RouterFilterName = XdsWire.RouterFilter;
    public const string LeastRequestPolicyName = XdsWire.LeastRequestPolicy;
    public const string RoundRobinPolicyName = XdsWire.RoundRobinPolicy;
    public const string RandomPolicyName = XdsWire.RandomPolicy;
    public const string TlsTransportSocketName = XdsWire.TlsTransportSocket;

    /// <summary>The certificate provider instance proxyless bootstraps define (Istio's name).</summary>
    public const string CertificateProviderInstance = "default";
    public const string IdentityCertificateName = "default";
    public const string RootCertificateName = "ROOTCA";

    public static string ClusterName(uint port, string host) => ClusterName(port, host, subset: null);

    /// <summary>Istio's outbound cluster name, <c>outbound|port|subset|fqdn</c> (the subset part empty for the whole service).</summary>
    public static string ClusterName(uint port, string host, string? subset) => $"outbound|{port.ToString(CultureInfo.InvariantCulture)}|{subset}|{host}";

    public static string ListenerName(string host, uint port) => $"{host}:{port.ToString(CultureInfo.InvariantCulture)}";

    public static XdsSnapshot Translate(
        ModelSnapshot model,
        long version,
        string rootNamespace = SecurityScopes.DefaultRootNamespace,
        string trustDomain = SpiffeId.DefaultTrustDomain,
        InboundPathSettings? paths = null,
        IJwksSource? jwks = null,
        XdsSnapshot? previous = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var services = Resolve(model, previous?.Services ?? default);
        var clusters = new Dictionary<string, XdsResource>(StringComparer.Ordinal);
        var endpoints = new Dictionary<string, XdsResource>(StringComparer.Ordinal);
        var routes = new Dictionary<string, XdsResource>(StringComparer.Ordinal);
        var standardRoutes = new Dictionary<string, XdsResource>(StringComparer.Ordinal);
        var standardGrpcRoutes = new Dictionary<string, XdsResource>(StringComparer.Ordinal);
        var listeners = new Dictionary<string, ListenerTarget>(StringComparer.Ordinal);
        var localityPlans = new Dictionary<string, LocalityLbPlan>(StringComparer.Ordinal);
        var sourceScoped = new List<(ResolvedService Service, uint Port)>();

        var routing = new RouteTranslator(services, model.Config.VirtualServices) { ClusterDomain = model.Config.ClusterDomain };
        var translations = new ServiceTranslations(model.Config.PeerAuthentications, rootNamespace, trustDomain);
        var reusable = previous?.Translations?.For(translations);
        foreach (var service in services)
        {
            // A service whose inputs are the ones its previous translation was made from keeps that translation (the same
            // resource instances: nothing packed, digested or compared again); only what changed is translated, and what
            // that gives with the bytes of before is the instance of before (kept so, not compared again next time).
            var translation = reusable?.Find(service, routing) ?? WithPreviousInstances(TranslateService(service, routing, translations), previous);
            translations.Add(translation);
            foreach (var port in translation.Ports)
            {
                foreach (var cluster in port.Clusters)
                {
                    clusters[cluster.Name] = cluster.Cluster;
                    endpoints[cluster.Name] = cluster.Endpoints;
                    if (cluster.LocalityPlan is { } plan)
                    {
                        localityPlans[cluster.Name] = plan;
                    }
                }

                var name = port.Target.RouteName;
                routes[name] = port.Routes;
                standardRoutes[name] = port.StandardRoutes;
                if (port.StandardGrpcRoutes is { } grpc)
                {
                    standardGrpcRoutes[name] = grpc;
                }

                if (translation.SourceScoped)
                {
                    sourceScoped.Add((service, port.Target.Port.Number));
                }

                listeners[ListenerName(service.Host, port.Target.Port.Number)] = port.Target;
            }
        }

        var grpcRoutes = standardGrpcRoutes.Count == 0
            ? null
            : standardRoutes.ToDictionary(r => r.Key, r => standardGrpcRoutes.GetValueOrDefault(r.Key) ?? r.Value, StringComparer.Ordinal);
        var inbound = InboundListenerTranslator.Prepare(model, services, rootNamespace, trustDomain, paths, jwks);
        var sourceScopedNames = sourceScoped.Select(s => ClusterName(s.Port, s.Service.Host)).ToFrozenSet(StringComparer.Ordinal);
        XdsChanges? changes = null;
        if (previous is not null)
        {
            // Unchanged resources keep their instance (serialized once, compared by reference), and the snapshot knows
            // which names changed: a push then costs what changed, not what exists.
            var changed = TypeUrls.PushOrder.ToDictionary(t => t, _ => new HashSet<string>(StringComparer.Ordinal), StringComparer.Ordinal);
            var removed = TypeUrls.PushOrder.ToDictionary(t => t, _ => new HashSet<string>(StringComparer.Ordinal), StringComparer.Ordinal);
            XdsChanges.Intern(clusters, previous.Clusters, changed[TypeUrls.Cluster], removed[TypeUrls.Cluster]);
            XdsChanges.Intern(endpoints, previous.Endpoints, changed[TypeUrls.ClusterLoadAssignment], removed[TypeUrls.ClusterLoadAssignment]);
            var routeChanges = changed[TypeUrls.RouteConfiguration];
            var routeRemovals = removed[TypeUrls.RouteConfiguration];
            XdsChanges.Intern(routes, previous.Routes, routeChanges, routeRemovals);
            XdsChanges.Intern(standardRoutes, previous.StandardClientRoutes, routeChanges, routeRemovals);
            // Standard gRPC clients get the standard routes when no route needs their own variant: compared either way.
            XdsChanges.Intern(grpcRoutes ?? standardRoutes, previous.StandardGrpcRoutes, routeChanges, routeRemovals);

            // Names whose content depends on the client: listed whenever they exist in either snapshot (see XdsChanges).
            routeChanges.UnionWith(sourceScopedNames.Concat(previous.SourceScopedRouteNames).Where(routes.ContainsKey));
            changed[TypeUrls.ClusterLoadAssignment].UnionWith(localityPlans.Keys.Concat(previous.LocalityLbClusters.Keys).Where(endpoints.ContainsKey));
            routeRemovals.ExceptWith(routes.Keys);

            // Inbound listeners are built when their workload asks (InboundListenerSet): whether one changed is known per
            // connection, which compares the ones it holds (InboundListenersUnknown).
            inbound.CarryOver(previous.InboundListeners);
            var targetsChanged = listeners.Count != previous.ListenerTargets.Count
                || listeners.Any(t => !previous.ListenerTargets.TryGetValue(t.Key, out var old) || old != t.Value);
            changes = new XdsChanges(previous.Version, changed, removed, targetsChanged)
            {
                InboundListenersUnknown = true,
                ScopesChanged = EgressScopesMayDiffer(previous, model.Config, targetsChanged, ServiceNamespaces(services)),
            };
        }

        var shared = new RouteSet(
            routes.ToFrozenDictionary(StringComparer.Ordinal),
            standardRoutes.ToFrozenDictionary(StringComparer.Ordinal),
            grpcRoutes?.ToFrozenDictionary(StringComparer.Ordinal));
        var snapshot = new XdsSnapshot(version, services, clusters.ToFrozenDictionary(StringComparer.Ordinal), endpoints.ToFrozenDictionary(StringComparer.Ordinal),
            shared.Routes, listeners.ToFrozenDictionary(StringComparer.Ordinal))
        {
            ClusterDomain = model.Config.ClusterDomain,
            Changes = changes,
            EgressScopes = EgressScopes.Build(model.Config.Sidecars, services, model.Config.VirtualServices, rootNamespace),
            ScopeInputs = (model.Config.Sidecars, model.Config.VirtualServices, ServiceNamespaces(services)),
            SourceScopedRouteNames = sourceScopedNames,
            Translations = translations,
            LocalityLbClusters = localityPlans.ToFrozenDictionary(StringComparer.Ordinal),
            InboundListeners = inbound,
            StandardClientRoutes = shared.StandardClientRoutes,
            StandardGrpcRoutes = shared.StandardGrpcRoutes!,
            SourceScopedRoutes = sourceScoped.Count == 0 ? null : new SourceScopedRoutes(
                [.. sourceScoped.SelectMany(s => routing.Find(s.Service.Host)!.Http.SelectMany(h => h.Matches)).Select(m => m.Source).OfType<SourceSelector>().Distinct()],
                shared,
                selects => [.. sourceScoped.Select(s => (ClusterName(s.Port, s.Service.Host), BuildRouteResources(routing, s.Service, s.Port, selects)))]),
        };
        if (previous is not null)
        {
            snapshot.CarryOver(previous);
        }

        return snapshot;
    }

    /// <summary>
    /// Every resource of one service (per port: its cluster, assignment, subset clusters and assignments, route
    /// configurations and listener target), a function of the inputs <see cref="ServiceTranslation"/> records.
    /// </summary>
    private static ServiceTranslation TranslateService(ResolvedService service, RouteTranslator routing, ServiceTranslations inputs)
    {
        UpstreamTlsContext? serviceTls = null;
        var ports = new List<PortTranslation>(service.Entry.Ports.Length);
        var virtualService = routing.Find(service.Host);
        foreach (var port in service.Entry.Ports)
        {
            var tls = UsesMutualTls(service, port.Number, inputs.PeerAuthentications, inputs.RootNamespace)
                ? serviceTls ??= BuildUpstreamTlsContext(UpstreamSubjectAltNames(service, inputs.TrustDomain))
                : null;
            var name = ClusterName(port.Number, service.Host);
            var portClusters = new List<ClusterTranslation>(1 + service.Subsets.Length);
            var (lb, resilience) = TrafficPolicyModel.Merge(service.Traffic, null, port.Number);
            var portEndpoints = service.Endpoints.Where(e => e.ServicePort == port.Number).ToImmutableArray();
            var plan = LocalityLbPlan.For(name, LocalityLbFor(service, null, port.Number), resilience.OutlierDetection is not null, portEndpoints);
            portClusters.Add(new ClusterTranslation(
                name,
                new XdsResource(name, Any.Pack(ClusterResilienceTranslator.Apply(
                    BuildCluster(name, lb ?? LoadBalancerKind.RoundRobin, tls, ConsistentHashFor(service, null, port.Number)), resilience))),
                new XdsResource(name, Any.Pack(BuildLoadAssignment(name, portEndpoints))),
                plan));
            foreach (var subset in service.Subsets)
            {
                // Same transport socket as the whole service: a subset is a slice of its endpoints, not another server.
                var subsetName = ClusterName(port.Number, service.Host, subset.Name);
                var (subsetLb, subsetResilience) = TrafficPolicyModel.Merge(
                    service.Traffic, (subset.Traffic ?? TrafficPolicyModel.None) with { LoadBalancer = subset.LoadBalancer }, port.Number);
                var subsetEndpoints = portEndpoints.Where(e => HostNames.LabelsMatch(subset.Labels, e.Workload.Labels)).ToImmutableArray();
                var subsetPlan = LocalityLbPlan.For(subsetName, LocalityLbFor(service, subset, port.Number), subsetResilience.OutlierDetection is not null, subsetEndpoints);
                portClusters.Add(new ClusterTranslation(
                    subsetName,
                    new XdsResource(subsetName, Any.Pack(ClusterResilienceTranslator.Apply(
                        BuildCluster(subsetName, subsetLb ?? LoadBalancerKind.RoundRobin, tls, ConsistentHashFor(service, subset, port.Number)), subsetResilience))),
                    new XdsResource(subsetName, Any.Pack(BuildLoadAssignment(subsetName, subsetEndpoints))),
                    subsetPlan));
            }

            var (meshRoutes, standard, grpc) = BuildRouteResources(routing, service, port.Number, selects: null);
            ports.Add(new PortTranslation(new ListenerTarget(service.Host, port, name), portClusters, meshRoutes, standard, grpc));
        }

        return new ServiceTranslation(
            service,
            virtualService,
            virtualService is null ? [] : [.. RouteTranslator.DestinationHosts(virtualService).Select(routing.DestinationInputs)],
            DependsOnPeerAuthentications: service.TlsMode is null && service.Entry.WorkloadSelector is not null,
            SourceScoped: virtualService is not null && RouteTranslator.IsSourceScoped(virtualService),
            ports);
    }

    /// <summary>
    /// <paramref name="translation"/> with each resource whose bytes equal <paramref name="previous"/>'s resource of the same
    /// name replaced by that instance: a service translated again to the same output (a reloaded file's new instances)
    /// then holds one serialized copy, and the snapshots after it compare it by reference.
    /// </summary>
    private static ServiceTranslation WithPreviousInstances(ServiceTranslation translation, XdsSnapshot? previous)
    {
        if (previous is null)
        {
            return translation;
        }

        return translation with
        {
            Ports = [.. translation.Ports.Select(p => p with
            {
                Clusters = [.. p.Clusters.Select(c => c with { Cluster = Previous(c.Cluster, previous.Clusters), Endpoints = Previous(c.Endpoints, previous.Endpoints) })],
                Routes = Previous(p.Routes, previous.Routes),
                StandardRoutes = Previous(p.StandardRoutes, previous.StandardClientRoutes),
                StandardGrpcRoutes = p.StandardGrpcRoutes is { } grpc ? Previous(grpc, previous.StandardGrpcRoutes) : null,
            })],
        };

        static XdsResource Previous(XdsResource resource, IReadOnlyDictionary<string, XdsResource> before) =>
            before.TryGetValue(resource.Name, out var old) && XdsChanges.SameContent(old, resource) ? old : resource;
    }

    /// <summary>
    /// Whether a client's Sidecar scope may differ from the one <paramref name="previous"/> gave it. Scopes change what a
    /// client gets without changing any resource, so then every connection compares its whole subscription once. Cheap
    /// to decide: no Sidecar in either snapshot, or the same Sidecars (by value), the same VirtualServices (by
    /// value: a folder reload makes a new list of the same instances) and the same service ports.
    /// </summary>
    private static bool EgressScopesMayDiffer(XdsSnapshot previous, YamlConfig config, bool targetsChanged, long serviceNamespaces)
    {
        var (sidecars, virtualServices, namespaces) = previous.ScopeInputs;
        if (sidecars.IsDefaultOrEmpty && config.Sidecars.IsDefaultOrEmpty)
        {
            return false;
        }

        return targetsChanged || namespaces != serviceNamespaces || !SameVirtualServices(virtualServices, config.VirtualServices) || !SameSidecars(sidecars, config.Sidecars);
    }

    /// <summary>An order-independent digest of which namespace each service host is in (a service moving namespace changes what a scope selects).</summary>
    private static long ServiceNamespaces(ImmutableArray<ResolvedService> services)
    {
        long digest = services.Length;
        foreach (var service in services)
        {
            digest += (uint)HashCode.Combine(service.Host, service.Entry.Namespace);
        }

        return digest;
    }

    /// <summary>The same VirtualServices in the same order (a reload keeps the instances of files it did not parse again).</summary>
    private static bool SameVirtualServices(ImmutableArray<VirtualServiceModel> a, ImmutableArray<VirtualServiceModel> b) =>
        a.IsDefaultOrEmpty ? b.IsDefaultOrEmpty : !b.IsDefaultOrEmpty && a.AsSpan().SequenceEqual(b.AsSpan());

    private static bool SameSidecars(ImmutableArray<SidecarModel> a, ImmutableArray<SidecarModel> b) =>
        a.IsDefaultOrEmpty ? b.IsDefaultOrEmpty
        : !b.IsDefaultOrEmpty && a.Length == b.Length && a.Zip(b).All(p =>
            p.First.Namespace == p.Second.Namespace && p.First.Name == p.Second.Name
            && (p.First.WorkloadSelector ?? ImmutableSortedDictionary<string, string>.Empty).SequenceEqual(p.Second.WorkloadSelector ?? ImmutableSortedDictionary<string, string>.Empty)
            && (p.First.WorkloadSelector is null) == (p.Second.WorkloadSelector is null)
            && p.First.Egress.Length == p.Second.Egress.Length
            && p.First.Egress.Zip(p.Second.Egress).All(e => e.First.Port == e.Second.Port && e.First.Hosts.SequenceEqual(e.Second.Hosts)));

    /// <summary>
    /// The route configuration of one service port for each kind of client: Mesh clients; standard xDS clients (istiod's
    /// default retries); standard gRPC clients when they need their own (null when they take the standard one).
    /// <paramref name="selects"/> tells which source selectors select the caller (null: none does).
    /// </summary>
    internal static (XdsResource Mesh, XdsResource Standard, XdsResource? StandardGrpc) BuildRouteResources(
        RouteTranslator routing, ResolvedService service, uint port, Func<SourceSelector, bool>? selects)
    {
        ArgumentNullException.ThrowIfNull(routing);
        ArgumentNullException.ThrowIfNull(service);
        var name = ClusterName(port, service.Host);
        var routeConfiguration = BuildRouteConfiguration(name, service.Host, port, routing.ClusterDomain);
        var virtualService = routing.Find(service.Host);
        var virtualRoutes = virtualService is null ? [] : routing.BuildRoutes(virtualService, port, selects);
        if (virtualRoutes.Count > 0)
        {
            var virtualHost = routeConfiguration.VirtualHosts[0];
            virtualHost.Routes.Clear();
            virtualHost.Routes.AddRange(virtualRoutes);
        }
        else if (BuildHashPolicy(ConsistentHashFor(service, null, port)) is { } hashPolicy)
        {
            // The catch-all route goes to the whole service (as istiod when no route of a VirtualService is left for the
            // caller): the top-level consistentHash keys it.
            routeConfiguration.VirtualHosts[0].Routes[0].Route_.HashPolicy.Add(hashPolicy);
        }

        // Standard clients get istiod's default retries; gRPC ones also get redirects and direct responses as
        // aborts (they NACK those actions), made after the retries so that such a route has none, as in istiod.
        var standardConfiguration = RouteTranslator.WithIstioDefaultRetries(routeConfiguration);
        XdsResource? grpc = null;
        if (virtualRoutes.Count > 0 && RouteTranslator.ForStandardGrpcClients(standardConfiguration.VirtualHosts[0].Routes, name) is { } grpcRoutes)
        {
            var grpcConfiguration = standardConfiguration.Clone();
            grpcConfiguration.VirtualHosts[0].Routes.Clear();
            grpcConfiguration.VirtualHosts[0].Routes.AddRange(grpcRoutes);
            grpc = new XdsResource(name, Any.Pack(grpcConfiguration));
        }

        return (new XdsResource(name, Any.Pack(routeConfiguration)), new XdsResource(name, Any.Pack(standardConfiguration)), grpc);
    }

    /// <summary>Selects each service's endpoints and load balancer.</summary>
    public static ImmutableArray<ResolvedService> Resolve(ModelSnapshot model) => Resolve(model, previous: default);

    /// <summary>
    /// Selects each service's endpoints and load balancer; a service whose ServiceEntry and DestinationRule are the instances
    /// it was resolved from in <paramref name="previous"/> and whose endpoints come out equal is that instance (which tells
    /// the translation it is unchanged).
    /// </summary>
    public static ImmutableArray<ResolvedService> Resolve(ModelSnapshot model, ImmutableArray<ResolvedService> previous)
    {
        ArgumentNullException.ThrowIfNull(model);
        var rules = model.Config.DestinationRules.GroupBy(r => r.Host, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        var before = new Dictionary<string, ResolvedService>(previous.IsDefaultOrEmpty ? 0 : previous.Length, StringComparer.Ordinal);
        foreach (var service in previous.IsDefault ? [] : previous)
        {
            before.TryAdd(service.Host, service);
        }

        WorkloadIndex? workloads = null;
        var result = ImmutableArray.CreateBuilder<ResolvedService>(model.Config.ServiceEntries.Length);
        foreach (var entry in model.Config.ServiceEntries)
        {
            ImmutableArray<ResolvedEndpoint>? endpoints = null;
            foreach (var host in entry.Hosts)
            {
                var rule = rules.GetValueOrDefault(host);
                var old = before.GetValueOrDefault(host);
                if (old is not null && ReferenceEquals(old.Entry, entry) && ReferenceEquals(old.Rule, rule) && entry.WorkloadSelector is null)
                {
                    // Inline endpoints only: the same entry has the same endpoints.
                    result.Add(old);
                    continue;
                }

                endpoints ??= ResolveEndpoints(entry, workloads ??= new WorkloadIndex(model.Config.WorkloadEntries.AddRange(model.Registrations)));
                if (old is not null && ReferenceEquals(old.Entry, entry) && ReferenceEquals(old.Rule, rule) && old.Endpoints.AsSpan().SequenceEqual(endpoints.Value.AsSpan()))
                {
                    result.Add(old);
                    continue;
                }

                var lb = rule?.LoadBalancer ?? LoadBalancerKind.RoundRobin;
                result.Add(new ResolvedService(entry, host, lb, endpoints.Value)
                {
                    Rule = rule,
                    TlsMode = rule?.TlsMode,
                    Subsets = rule?.Subsets ?? [],
                    Traffic = (rule?.Traffic ?? TrafficPolicyModel.None) with { LoadBalancer = lb },
                    ConsistentHash = rule?.ConsistentHash,
                    LocalityLb = rule?.LocalityLb,
                });
            }
        }

        return result.ToImmutable();
    }

    private static ImmutableArray<ResolvedEndpoint> ResolveEndpoints(ServiceEntryModel entry, WorkloadIndex workloads)
    {
        var selected = entry.StaticEndpoints.ToList();
        if (entry.WorkloadSelector is { } selector)
        {
            selected.AddRange(workloads.Select(entry.Namespace, selector));
        }

        var endpoints = ImmutableArray.CreateBuilder<ResolvedEndpoint>();
        foreach (var port in entry.Ports)
        {
            var seen = new HashSet<(string, uint)>();
            foreach (var workload in selected)
            {
                var target = EndpointPort(port, workload);
                if (seen.Add((workload.Address, target)))
                {
                    endpoints.Add(new ResolvedEndpoint(port.Number, workload.Address, target, workload));
                }
            }
        }

        return endpoints.ToImmutable();
    }

    /// <summary>
    /// Whether clients reach <paramref name="servicePort"/> of <paramref name="service"/> over mesh mTLS. A DestinationRule's
    /// <c>tls.mode</c> decides when set (ISTIO_MUTUAL wins even against a DISABLE server, as in Istio). Otherwise Istio's
    /// auto mTLS: inline-endpoint (external) services are plaintext; services that select mesh workloads use mTLS unless
    /// their servers run with PeerAuthentication DISABLE on that port, since a DISABLE server refuses TLS.
    /// </summary>
    /// <remarks>
    /// Istio decides a cluster from the service's namespace/mesh policy (<c>BestEffortInferServiceMTLSMode</c>), then each
    /// endpoint from its workload/port policy (<c>transport_socket_matches</c>). Proxyless clients take one transport socket
    /// per cluster, so the servers' effective modes decide here: plaintext when every endpoint of the port is DISABLE. A mix
    /// stays mTLS (its DISABLE endpoints fail, nobody else gets plaintext); a workload STRICT under a namespace DISABLE gets
    /// mTLS (Istio sends plaintext, which that server refuses). Without endpoints the namespace/mesh mode decides, as in Istio.
    /// </remarks>
    public static bool UsesMutualTls(ResolvedService service, uint servicePort, IReadOnlyCollection<PeerAuthenticationModel> peerAuthentications, string rootNamespace)
    {
        ArgumentNullException.ThrowIfNull(service);
        ArgumentNullException.ThrowIfNull(peerAuthentications);
        switch (service.TlsMode)
        {
            case UpstreamTlsMode.IstioMutual:
                return true;
            case UpstreamTlsMode.Disable:
                return false;
        }

        if (service.Entry.WorkloadSelector is null)
        {
            return false;
        }

        var endpoints = service.Endpoints.Where(e => e.ServicePort == servicePort).ToList();
        if (endpoints.Count == 0)
        {
            return InboundListenerTranslator.NamespaceMode(peerAuthentications, rootNamespace, service.Entry.Namespace) != MtlsMode.Disable;
        }

        // The mode each server's inbound listener gets for the port it serves (the workload's port).
        return endpoints.Exists(e => InboundListenerTranslator.EffectiveMode(peerAuthentications, rootNamespace, e.Workload, e.Port) != MtlsMode.Disable);
    }

    /// <summary>
    /// The SPIFFE IDs a client accepts from the service's servers: its allowed identities plus the service
    /// accounts of its current endpoints, de-duplicated and sorted so the cluster's bytes are stable.
    /// </summary>
    public static ImmutableArray<string> UpstreamSubjectAltNames(ResolvedService service, string trustDomain)
    {
        ArgumentNullException.ThrowIfNull(service);
        var names = new SortedSet<string>(SpiffeId.AllowedIdentities(service.Entry, trustDomain), StringComparer.Ordinal);
        foreach (var endpoint in service.Endpoints)
        {
            var workload = endpoint.Workload;
            if (!string.IsNullOrEmpty(workload.ServiceAccount))
            {
                names.Add(new WorkloadIdentity(trustDomain, workload.Namespace, workload.ServiceAccount).SpiffeId);
            }
        }

        return [.. names];
    }

    /// <summary>
    /// Istio's proxyless UpstreamTlsContext (grpcgen): identity and roots from the bootstrap's "default"
    /// certificate provider, in both the current (14, 13) and the deprecated (11, combined 4) fields.
    /// </summary>
    public static UpstreamTlsContext BuildUpstreamTlsContext(IEnumerable<string> subjectAltNames)
    {
        ArgumentNullException.ThrowIfNull(subjectAltNames);
        var validation = new CertificateValidationContext
        {
            CaCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = CertificateProviderInstance, CertificateName = RootCertificateName },
        };
        validation.MatchSubjectAltNames.AddRange(subjectAltNames.Select(san => new StringMatcher { Exact = san }));
        return new UpstreamTlsContext
        {
            CommonTlsContext = new CommonTlsContext
            {
                TlsCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = CertificateProviderInstance, CertificateName = IdentityCertificateName },
                CombinedValidationContext = new CommonTlsContext.Types.CombinedCertificateValidationContext
                {
                    DefaultValidationContext = validation,
                    ValidationContextCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance
                    {
                        InstanceName = CertificateProviderInstance,
                        CertificateName = RootCertificateName,
                    },
                },
                TlsCertificateCertificateProviderInstance = new CommonTlsContext.Types.CertificateProviderInstance
                {
                    InstanceName = CertificateProviderInstance,
                    CertificateName = IdentityCertificateName,
                },
            },
        };
    }

    /// <summary>
    /// The workload's port for a service port: by port name; else the workload's only port
    /// (a one-port workload serves every port of its service); else targetPort; else the service port.
    /// </summary>
    public static uint EndpointPort(ServicePort port, WorkloadInstance workload)
    {
        ArgumentNullException.ThrowIfNull(port);
        ArgumentNullException.ThrowIfNull(workload);
        if (workload.Ports.TryGetValue(port.Name, out var named))
        {
            return named;
        }

        if (workload.Ports.Count == 1)
        {
            return workload.Ports.Values.First();
        }

        return port.TargetPort ?? port.Number;
    }

    public static Cluster BuildCluster(string name, LoadBalancerKind loadBalancer, UpstreamTlsContext? tls = null, ConsistentHashModel? consistentHash = null)
    {
        var cluster = new Cluster
        {
            Name = name,
            Type = Cluster.Types.DiscoveryType.Eds,
            EdsClusterConfig = new Cluster.Types.EdsClusterConfig { EdsConfig = Ads(), ServiceName = name },
            ConnectTimeout = Duration.FromTimeSpan(TimeSpan.FromSeconds(5)),
            LbPolicy = Cluster.Types.LbPolicy.RoundRobin,
        };

        if (tls is not null)
        {
            cluster.TransportSocket = new TransportSocket { Name = TlsTransportSocketName, TypedConfig = Any.Pack(tls) };
        }

        if (loadBalancer == LoadBalancerKind.ConsistentHash)
        {
            // Istio: RING_HASH (default 1024 points) unless maglev is chosen. MAGLEV goes out as RING_HASH with the table size
            // as ring size: grpc-js NACKs MAGLEV, and the Mesh client implements one consistent hash (same key → same endpoint,
            // minimal remapping), so every client gets the same policy. Capped at the largest ring Envoy and gRPC accept.
            var size = consistentHash?.MaglevTableSize ?? consistentHash?.MinimumRingSize ?? 1024;
            cluster.LbPolicy = Cluster.Types.LbPolicy.RingHash;
            cluster.RingHashLbConfig = new RingHashLbConfig
            {
                MinimumRingSize = Math.Min(size, 8_388_608),
                HashFunction = RingHashLbConfig.Types.HashFunction.XxHash,
            };
        }
        else if (loadBalancer == LoadBalancerKind.Random)
        {
            // grpc-js NACKs lb_policy RANDOM; with load_balancing_policy it takes the first it supports, round robin (A52).
            cluster.LoadBalancingPolicy = new LoadBalancingPolicy
            {
                Policies =
                {
                    new LoadBalancingPolicy.Types.Policy
                    {
                        TypedExtensionConfig = new TypedExtensionConfig { Name = RandomPolicyName, TypedConfig = Any.Pack(new RandomPolicy()) },
                    },
                    new LoadBalancingPolicy.Types.Policy
                    {
                        TypedExtensionConfig = new TypedExtensionConfig { Name = RoundRobinPolicyName, TypedConfig = Any.Pack(new RoundRobin()) },
                    },
                },
            };
        }
        else if (loadBalancer == LoadBalancerKind.LeastRequest)
        {
            // grpc-js NACKs lb_policy LEAST_REQUEST; with load_balancing_policy it picks the first policy it supports (gRFC A52).
            cluster.LoadBalancingPolicy = new LoadBalancingPolicy
            {
                Policies =
                {
                    new LoadBalancingPolicy.Types.Policy
                    {
                        TypedExtensionConfig = new TypedExtensionConfig { Name = LeastRequestPolicyName, TypedConfig = Any.Pack(new LeastRequest { ChoiceCount = 2 }) },
                    },
                    new LoadBalancingPolicy.Types.Policy
                    {
                        TypedExtensionConfig = new TypedExtensionConfig { Name = RoundRobinPolicyName, TypedConfig = Any.Pack(new RoundRobin()) },
                    },
                },
            };
        }

        return cluster;
    }

    /// <summary>
    /// The consistent hash of <paramref name="service"/>'s cluster for <paramref name="port"/> (of <paramref name="subset"/>
    /// when set): only when the merged load balancer (port-level settings and subset blocks, as istiod merges them) is
    /// <c>consistentHash</c>, which only the top level or a subset can set; then the subset's when it set it, else the top's.
    /// </summary>
    public static ConsistentHashModel? ConsistentHashFor(ResolvedService service, SubsetModel? subset, uint port)
    {
        ArgumentNullException.ThrowIfNull(service);
        var subsetTraffic = subset is null ? null : (subset.Traffic ?? TrafficPolicyModel.None) with { LoadBalancer = subset.LoadBalancer };
        var (lb, _) = TrafficPolicyModel.Merge(service.Traffic, subsetTraffic, port);
        if (lb != LoadBalancerKind.ConsistentHash)
        {
            return null;
        }

        return subset?.LoadBalancer == LoadBalancerKind.ConsistentHash ? subset.ConsistentHash : service.ConsistentHash;
    }

    /// <summary>
    /// The effective <c>localityLbSetting</c> of a cluster (istiod's <c>GetEffectiveLbSetting</c>): the DestinationRule's when
    /// its top-level load balancer block reaches the cluster (no port-level entry for the port and no subset
    /// <c>loadBalancer</c> or subset port entry replaced it, as istiod merges per block), else the mesh default, which is
    /// enabled with nothing else set: failover by locality whenever the cluster has outlier detection. Null when disabled.
    /// </summary>
    public static LocalityLbSettingModel? LocalityLbFor(ResolvedService service, SubsetModel? subset, uint port)
    {
        ArgumentNullException.ThrowIfNull(service);
        var replaced = service.Traffic.PortLevelSettings.Any(p => p.Port == port)
            || subset?.LoadBalancer is not null
            || (subset?.Traffic?.PortLevelSettings.Any(p => p.Port == port) ?? false);
        var setting = (replaced ? null : service.LocalityLb) ?? LocalityLbSettingModel.MeshDefault;
        return setting.Enabled == false ? null : setting;
    }

    /// <summary>
    /// Istio's translation of a <c>consistentHash</c> key to a route <c>hash_policy</c>: header, cookie (name, path, ttl),
    /// query parameter, or <c>connection_properties.source_ip</c>; null when the destination has no consistent hash.
    /// </summary>
    public static HashPolicy? BuildHashPolicy(ConsistentHashModel? consistentHash) => consistentHash switch
    {
        null => null,
        { Kind: HashKeyKind.Header } => new HashPolicy { Header = new HashPolicy.Types.Header { HeaderName = consistentHash.Name } },
        { Kind: HashKeyKind.QueryParameter } => new HashPolicy { QueryParameter = new HashPolicy.Types.QueryParameter { Name = consistentHash.Name } },
        { Kind: HashKeyKind.SourceIp } => new HashPolicy { ConnectionProperties = new HashPolicy.Types.ConnectionProperties { SourceIp = true } },
        _ => new HashPolicy
        {
            Cookie = new HashPolicy.Types.Cookie
            {
                Name = consistentHash.Name,
                Path = consistentHash.CookiePath ?? string.Empty,
                Ttl = consistentHash.CookieTtl is { } ttl ? Duration.FromTimeSpan(ttl) : null,
            },
        },
    };

    public static ClusterLoadAssignment BuildLoadAssignment(string name, IEnumerable<ResolvedEndpoint> endpoints)
    {
        var assignment = new ClusterLoadAssignment { ClusterName = name };
        foreach (var group in endpoints.GroupBy(e => e.Workload.Locality, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            assignment.Endpoints.Add(BuildLocalityEndpoints(ParseLocality(group.Key), [.. group]));
        }

        return assignment;
    }

    /// <summary>
    /// One locality's endpoints at priority 0, weighted (as istiod) by the sum of its endpoints' weights, so that clients
    /// that weight localities (gRPC always does) split traffic as per-endpoint weights say; grpc-js skips a locality without a weight.
    /// </summary>
    public static LocalityLbEndpoints BuildLocalityEndpoints(Locality locality, IReadOnlyList<ResolvedEndpoint> endpoints)
    {
        var result = new LocalityLbEndpoints { Locality = locality, LoadBalancingWeight = LocalityWeight(endpoints), Priority = 0 };
        foreach (var endpoint in endpoints)
        {
            result.LbEndpoints.Add(new LbEndpoint
            {
                Endpoint = new Endpoint
                {
                    Address = new Address { SocketAddress = new SocketAddress { Address = endpoint.Address, PortValue = endpoint.Port } },
                },
                HealthStatus = HealthStatus.Healthy,
                LoadBalancingWeight = EndpointWeight(endpoint),
                Metadata = TelemetryMetadata(endpoint.Workload),
            });
        }

        return result;
    }

    /// <summary>
    /// istiod's endpoint telemetry metadata (<see cref="Mesh.Xds.Wire.EndpointWorkloadMetadata"/>): a caller's
    /// <c>destination_workload</c>, canonical service and revision come from it. The cluster part is left empty: one control
    /// plane serves one cluster, and clients then report their own <c>Mesh:Telemetry:ClusterId</c>.
    /// </summary>
    public static Metadata TelemetryMetadata(WorkloadInstance workload)
    {
        ArgumentNullException.ThrowIfNull(workload);
        var name = workload.TelemetryWorkloadName;
        var encoded = Mesh.Xds.Wire.EndpointWorkloadMetadata.Format(
            name,
            workload.Namespace,
            Mesh.Xds.Wire.EndpointWorkloadMetadata.CanonicalService(workload.Labels) ?? name,
            Mesh.Xds.Wire.EndpointWorkloadMetadata.CanonicalRevision(workload.Labels),
            cluster: string.Empty);
        var fields = new Google.Protobuf.WellKnownTypes.Struct();
        fields.Fields[Mesh.Xds.Wire.EndpointWorkloadMetadata.WorkloadField] = Google.Protobuf.WellKnownTypes.Value.ForString(encoded);
        return new Metadata { FilterMetadata = { [Mesh.Xds.Wire.EndpointWorkloadMetadata.FilterName] = fields } };
    }

    /// <summary>Istio's locality weight: the sum of its endpoints' weights (an unset endpoint weight counts 1).</summary>
    public static uint LocalityWeight(IEnumerable<ResolvedEndpoint> endpoints) => (uint)Math.Min(uint.MaxValue, endpoints.Sum(e => (long)EndpointWeight(e)));

    private static uint EndpointWeight(ResolvedEndpoint endpoint) => endpoint.Workload.Weight == 0 ? 1 : endpoint.Workload.Weight;

    public static Locality ParseLocality(string locality)
    {
        var parts = (locality ?? string.Empty).Split('/');
        return new Locality
        {
            Region = parts.Length > 0 ? parts[0] : string.Empty,
            Zone = parts.Length > 1 ? parts[1] : string.Empty,
            SubZone = parts.Length > 2 ? parts[2] : string.Empty,
        };
    }

    public static RouteConfiguration BuildRouteConfiguration(string name, string host, uint port, string clusterDomain = HostNames.DefaultClusterDomain)
    {
        var virtualHost = new VirtualHost { Name = ListenerName(host, port) };
        var domains = new List<string>();
        foreach (var alias in HostNames.Aliases(host, clusterDomain))
        {
            domains.Add(alias);
            domains.Add(ListenerName(alias, port));
        }

        virtualHost.Domains.AddRange(domains.Distinct(StringComparer.Ordinal));
        virtualHost.Routes.Add(new Route
        {
            Match = new RouteMatch { Prefix = string.Empty },
            Route_ = new RouteAction { Cluster = name },
        });
        return new RouteConfiguration { Name = name, VirtualHosts = { virtualHost } };
    }

    public static Listener BuildListener(string name, string routeName)
    {
        var manager = new HttpConnectionManager
        {
            Rds = new Rds { ConfigSource = Ads(), RouteConfigName = routeName },
            HttpFilters =
            {
                // As istiod's proxyless listeners: fault, then router; routes carry the fault to inject (typed_per_filter_config).
                // Optional, so that a client that does not know the filter still takes the listener.
                new HttpFilter { Name = XdsWire.FaultFilter, TypedConfig = Any.Pack(new HTTPFault()), IsOptional = true },
                new HttpFilter { Name = RouterFilterName, TypedConfig = Any.Pack(new Router()) },
            },
        };
        return new Listener { Name = name, ApiListener = new ApiListener { ApiListener_ = Any.Pack(manager) } };
    }

    private static ConfigSource Ads() => new() { Ads = new AggregatedConfigSource() };
}

/// <summary>
/// Workloads by namespace and by each label: a selector is matched against the workloads that carry its first label
/// rather than against every workload (5,000 ServiceEntries × 50,000 WorkloadEntries scanned pairwise took 78 s).
/// </summary>
internal sealed class WorkloadIndex
{
    private readonly Dictionary<string, List<WorkloadInstance>> _byNamespace = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Namespace, string Key, string Value), List<WorkloadInstance>> _byLabel = [];

    public WorkloadIndex(IEnumerable<WorkloadInstance> workloads)
    {
        ArgumentNullException.ThrowIfNull(workloads);
        foreach (var workload in workloads)
        {
            Add(_byNamespace, workload.Namespace, workload);
            foreach (var (key, value) in workload.Labels)
            {
                Add(_byLabel, (workload.Namespace, key, value), workload);
            }
        }
    }

    /// <summary>The workloads of <paramref name="namespace"/> that <paramref name="selector"/> selects, in their original order.</summary>
    public IEnumerable<WorkloadInstance> Select(string @namespace, IReadOnlyDictionary<string, string> selector)
    {
        ArgumentNullException.ThrowIfNull(selector);
        List<WorkloadInstance>? candidates;
        if (selector.Count == 0)
        {
            candidates = _byNamespace.GetValueOrDefault(@namespace);
        }
        else
        {
            var (key, value) = selector.First();
            candidates = _byLabel.GetValueOrDefault((@namespace, key, value));
        }

        return candidates is null ? [] : candidates.Where(w => HostNames.LabelsMatch(selector, w.Labels));
    }

    private static void Add<TKey>(Dictionary<TKey, List<WorkloadInstance>> index, TKey key, WorkloadInstance workload)
        where TKey : notnull
    {
        if (!index.TryGetValue(key, out var list))
        {
            index[key] = list = [];
        }

        list.Add(workload);
    }
}
