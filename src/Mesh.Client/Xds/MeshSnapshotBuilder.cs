using System.Collections.Immutable;
using Mesh.Client.Discovery;
using Mesh.Xds.Envoy.Config.Route.V3;
using WeightedCluster = Mesh.Client.Discovery.WeightedCluster;

namespace Mesh.Client.Xds;

/// <summary>
/// Builds a <see cref="MeshSnapshot"/> from accepted LDS, RDS, CDS and EDS state. A listener whose
/// route configuration or clusters are missing is left out (and named in <c>incomplete</c>) without
/// holding back the others. A cluster that CDS no longer lists but the routes still name is kept from
/// <c>previous</c>: servers push CDS before RDS (make before break), so when a subset and the route to
/// it go in one change, the old routes meet the new clusters for a moment, and requests must not fail.
/// </summary>
internal static class MeshSnapshotBuilder
{
    public static MeshSnapshot Build(
        string version,
        IReadOnlyDictionary<string, ListenerResource> listeners,
        IReadOnlyDictionary<string, RouteConfiguration> routeConfigs,
        IReadOnlyDictionary<string, ClusterResource> clusters,
        IReadOnlyDictionary<string, EndpointsResource> endpoints,
        MeshSnapshot previous,
        List<string> incomplete,
        Func<int, int>? random = null,
        Func<string, ServiceUsage?>? usage = null)
    {
        ArgumentNullException.ThrowIfNull(listeners);
        ArgumentNullException.ThrowIfNull(routeConfigs);
        ArgumentNullException.ThrowIfNull(clusters);
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(previous);
        ArgumentNullException.ThrowIfNull(incomplete);

        // A cluster's service host is a listener's host: one string for both (a snapshot holds thousands).
        var listenerHosts = new HashSet<string>(StringComparer.Ordinal);
        foreach (var listener in listeners.Values)
        {
            listenerHosts.Add(listener.Host);
        }

        var hostLookup = listenerHosts.GetAlternateLookup<ReadOnlySpan<char>>();
        var built = new Dictionary<string, MeshCluster>(StringComparer.Ordinal);
        foreach (var cluster in clusters.Values)
        {
            var assignment = cluster.StaticEndpoints
                ?? (cluster.EdsServiceName is { } eds && endpoints.TryGetValue(eds, out var found) ? found : null);
            if (assignment is null)
            {
                incomplete.Add($"cluster {cluster.Name} waits for endpoints {cluster.EdsServiceName}");
                continue;
            }

            previous.Clusters.TryGetValue(cluster.Name, out var before);
            built[cluster.Name] = new MeshCluster(
                cluster.Name,
                hostLookup.TryGetValue(ServiceHostSpan(cluster.Name), out var host) ? host : ServiceHostOf(cluster.Name),
                cluster.Policy,
                ReuseEndpoints(assignment.Endpoints, before),
                cluster.OutlierDetection,
                random,
                cluster.Tls,
                cluster.Limits,
                before?.Traffic,
                cluster.RingHash);
        }

        var bindings = new List<KeyValuePair<string, MeshService>>();
        var retained = new Dictionary<string, MeshCluster>(StringComparer.Ordinal);
        foreach (var listener in listeners.Values)
        {
            var routes = listener.InlineRoutes
                ?? (listener.RouteConfigName is { } rds && routeConfigs.TryGetValue(rds, out var config) ? config : null);
            if (routes is null)
            {
                incomplete.Add($"listener {listener.Name} waits for route configuration {listener.RouteConfigName}");
                continue;
            }

            var virtualHost = SelectVirtualHost(routes, listener);
            if (virtualHost is null)
            {
                incomplete.Add($"listener {listener.Name}: route configuration {routes.Name} has no virtual host for {listener.Host}");
                continue;
            }

            var meshRoutes = BuildRoutes(listener.Name, virtualHost, built, previous, retained, incomplete, out var missing);
            if (missing is not null)
            {
                incomplete.Add($"listener {listener.Name} waits for cluster {missing}");
                continue;
            }

            var names = new List<string> { listener.Host };
            foreach (var domain in virtualHost.Domains)
            {
                if (!domain.Contains('*', StringComparison.Ordinal))
                {
                    names.Add(StripPort(domain));
                }
            }

            var fqdn = names.MaxBy(n => n.Length)!;
            var service = new MeshService(listener.Name, fqdn, listener.Port, meshRoutes) { Usage = usage?.Invoke(listener.Name) };
            foreach (var name in names.Distinct(StringComparer.OrdinalIgnoreCase))
            {
                bindings.Add(new(name, service));
            }
        }

        return new MeshSnapshot(version, bindings, [.. built.Values, .. retained.Values]);
    }

    /// <summary>Gets the FQDN of an Istio cluster name <c>outbound|port|subset|fqdn</c>, else the name itself.</summary>
    public static string ServiceHostOf(string clusterName)
    {
        var host = ServiceHostSpan(clusterName);
        return host.Length == clusterName.Length ? clusterName : host.ToString();
    }

    private static ReadOnlySpan<char> ServiceHostSpan(string clusterName)
    {
        // Exactly four '|'-separated parts with a non-empty last one.
        var span = clusterName.AsSpan();
        if (span.Count('|') != 3)
        {
            return span;
        }

        var host = span[(span.LastIndexOf('|') + 1)..];
        return host.IsEmpty ? span : host;
    }

    private static ImmutableArray<MeshEndpoint> ReuseEndpoints(ImmutableArray<EndpointSpec> specs, MeshCluster? before)
    {
        Dictionary<(string, int, int, bool, int, string, int, EndpointWorkload?), MeshEndpoint>? old = null;
        Dictionary<(string, int), MeshEndpoint>? servers = null;
        if (before is not null)
        {
            old = [];
            servers = [];
            foreach (var endpoint in before.Endpoints)
            {
                old.TryAdd((endpoint.Address, endpoint.Port, endpoint.Weight, endpoint.IsHealthy, endpoint.Priority, endpoint.Locality, endpoint.LocalityWeight, endpoint.Workload), endpoint);
                servers.TryAdd((endpoint.Address, endpoint.Port), endpoint);
            }
        }

        var result = ImmutableArray.CreateBuilder<MeshEndpoint>(specs.Length);
        foreach (var spec in specs)
        {
            // The same instance keeps its in-flight count and ejection state across config pushes.
            if (old is not null && old.TryGetValue((spec.Address, spec.Port, Math.Max(1, spec.Weight), spec.IsHealthy, spec.Priority, spec.Locality, Math.Max(1, spec.LocalityWeight), spec.Workload), out var same))
            {
                result.Add(same);
                continue;
            }

            // The same server with another weight, priority, locality weight or workload metadata (a pod added to its locality changes the
            // locality's weight, a locality appearing renumbers failover priorities): a new instance, same outlier state.
            var endpoint = new MeshEndpoint(spec.Address, spec.Port, spec.Weight, spec.IsHealthy, spec.Locality) { Priority = spec.Priority, LocalityWeight = spec.LocalityWeight, Workload = spec.Workload };
            if (servers is not null && servers.TryGetValue((spec.Address, spec.Port), out var previous))
            {
                endpoint.CarryOutlierStateFrom(previous);
            }

            result.Add(endpoint);
        }

        return result.MoveToImmutable();
    }

    private static VirtualHost? SelectVirtualHost(RouteConfiguration routes, ListenerResource listener)
    {
        VirtualHost? wildcard = null;
        foreach (var host in routes.VirtualHosts)
        {
            foreach (var domain in host.Domains)
            {
                if (string.Equals(domain, listener.Host, StringComparison.OrdinalIgnoreCase)
                    || string.Equals(domain, listener.Name, StringComparison.OrdinalIgnoreCase))
                {
                    return host;
                }

                if (domain == "*")
                {
                    wildcard ??= host;
                }
            }
        }

        return wildcard ?? (routes.VirtualHosts.Count > 0 ? routes.VirtualHosts[0] : null);
    }

    private static ImmutableArray<MeshRoute> BuildRoutes(
        string listener,
        VirtualHost host,
        Dictionary<string, MeshCluster> built,
        MeshSnapshot previous,
        Dictionary<string, MeshCluster> retained,
        List<string> incomplete,
        out string? missing)
    {
        bool TryGetCluster(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out MeshCluster? cluster)
        {
            if (built.TryGetValue(name, out cluster) || retained.TryGetValue(name, out cluster))
            {
                return true;
            }

            if (previous.Clusters.TryGetValue(name, out cluster))
            {
                retained[name] = cluster;
                return true;
            }

            return false;
        }

        missing = null;
        var routes = ImmutableArray.CreateBuilder<MeshRoute>(host.Routes.Count);
        foreach (var route in host.Routes)
        {
            var weighted = ImmutableArray.CreateBuilder<WeightedCluster>();
            var action = route.Route_;

            // Validated by XdsResourceDecoder.ValidateRoute; decoded here once so requests only read it. Mirror clusters
            // are retained as route clusters are; a mirror to a cluster never seen is left out rather than holding the
            // listener back, which would take the caller's own service out of the mesh (its requests would go by DNS).
            var features = RouteFeaturesDecoder.Decode(route, string.Empty, [], TryGetCluster, out var missingMirror);
            if (missingMirror is not null)
            {
                incomplete.Add($"listener {listener}: route '{route.Name}' is served without its mirror to unknown cluster {missingMirror}");
            }

            if (action is null)
            {
                // A redirect or direct response: no cluster.
            }
            else if (action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.Cluster)
            {
                if (!TryGetCluster(action.Cluster, out var cluster))
                {
                    missing = action.Cluster;
                    return [];
                }

                weighted.Add(new WeightedCluster(cluster, 1));
            }
            else
            {
                foreach (var entry in action.WeightedClusters.Clusters)
                {
                    if (!TryGetCluster(entry.Name, out var cluster))
                    {
                        missing = entry.Name;
                        return [];
                    }

                    if (entry.Weight is { } weight && weight > 0)
                    {
                        weighted.Add(new WeightedCluster(cluster, weight));
                    }
                }
            }

            var match = route.Match;
            var headers = match.Headers.Select(ToHeaderMatch).ToImmutableArray();
            routes.Add(new MeshRoute(
                match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.Prefix ? match.Prefix : null,
                match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.Path ? match.Path : null,
                match.CaseSensitive ?? true,
                weighted.ToImmutable(),
                headers,
                route.Name,
                match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.SafeRegex ? ToPathRegex(match.SafeRegex) : null,
                features)
            {
                QueryParameters = [.. match.QueryParameters.Select(q => XdsResourceDecoder.DecodeQueryParameter(q, string.Empty, [])!)],
                // Validated by XdsResourceDecoder.ValidateRoute; parsed here once so requests only read it.
                Resilience = action is null ? null : Resilience.RouteResilience.Decode(action, host.RetryPolicy, string.Empty, []),
                HashPolicy = action is null ? null : XdsResourceDecoder.DecodeHashPolicy(action, string.Empty, []),
            });
        }

        return routes.MoveToImmutable();
    }

    // Validated by XdsResourceDecoder.ValidateRoute before a snapshot is built; compiled here, once per snapshot.
    private static StringMatch? ToPathRegex(Mesh.Xds.Envoy.Type.Matcher.V3.RegexMatcher regex) => StringMatch.SafeRegex(regex.Regex, "safe_regex", []);

    // Validated by XdsResourceDecoder.ValidateRoute before a snapshot is built.
    private static HeaderMatch ToHeaderMatch(HeaderMatcher matcher)
    {
        StringMatch.TryDecodeHeader(matcher, matcher.Name, [], out var match, out var invert, allowRegex: true);
        return new HeaderMatch(matcher.Name, match, invert, matcher.TreatMissingHeaderAsEmpty);
    }

    private static string StripPort(string domain)
    {
        var colon = domain.LastIndexOf(':');
        return colon > 0 && domain.AsSpan(colon + 1).ContainsAnyExceptInRange('0', '9') is false && colon < domain.Length - 1
            ? domain[..colon]
            : domain;
    }
}
