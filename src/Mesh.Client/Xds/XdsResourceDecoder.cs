using System.Collections.Immutable;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using LoadBalancingPolicy = Mesh.Client.Discovery.LoadBalancingPolicy;
using Mesh.Xds.Envoy.Config.Cluster.V3;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Endpoint.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Mesh.Client.Security;
using Mesh.Xds.Wire;

namespace Mesh.Client.Xds;

/// <summary>
/// Validates xDS resources and turns them into the client's resource records. Every problem of a
/// response is reported (kind, name, field path), so that one NACK tells the operator everything.
/// </summary>
internal static class XdsResourceDecoder
{
    /// <summary>
    /// Decodes every resource of a response; returns null and fills <paramref name="errors"/> when any is invalid. Equal
    /// parts of the decoded resources are one instance per <paramref name="shared"/> (one per call when null: pass one
    /// for the resources of one response decoded a few at a time). <paramref name="location"/> names the resource in
    /// errors that cannot name it by its own name (default: <c>&lt;kind&gt; resources[i]</c>).
    /// </summary>
    public static Dictionary<string, object>? DecodeAll(
        string typeUrl, IEnumerable<Any> resources, List<string> errors, SharedValues? shared = null, Func<int, string>? location = null)
    {
        ArgumentNullException.ThrowIfNull(resources);
        ArgumentNullException.ThrowIfNull(errors);
        var kind = XdsTypeUrls.KindOf(typeUrl);
        var decoded = new Dictionary<string, object>(StringComparer.Ordinal);
        shared ??= new SharedValues();
        location ??= i => $"{kind} resources[{i.ToString(System.Globalization.CultureInfo.InvariantCulture)}]";
        var index = 0;
        foreach (var any in resources)
        {
            var before = errors.Count;
            if (!string.Equals(any.TypeUrl, typeUrl, StringComparison.Ordinal))
            {
                errors.Add($"{location(index)}: type {any.TypeUrl} does not match the response type {typeUrl}");
                index++;
                continue;
            }

            (string Name, object? Value) result;
            try
            {
                result = typeUrl switch
                {
                    XdsTypeUrls.Listener => Decode(any.Unpack<Listener>(), errors),
                    XdsTypeUrls.RouteConfiguration => Decode(any.Unpack<RouteConfiguration>(), errors, shared),
                    XdsTypeUrls.Cluster => Decode(any.Unpack<Cluster>(), errors, shared),
                    XdsTypeUrls.ClusterLoadAssignment => Decode(any.Unpack<ClusterLoadAssignment>(), errors, shared),
                    _ => throw new ArgumentException($"type {typeUrl} is not supported", nameof(typeUrl)),
                };
            }
            catch (InvalidProtocolBufferException ex)
            {
                errors.Add($"{location(index)}: cannot be decoded: {ex.Message}");
                index++;
                continue;
            }

            if (errors.Count == before && result.Value is not null && !decoded.TryAdd(result.Name, result.Value))
            {
                errors.Add($"{kind} {result.Name}: the name appears more than once in the response");
            }

            index++;
        }

        return errors.Count == 0 ? decoded : null;
    }

    public static (string Name, object? Value) Decode(Listener listener, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(listener);
        var name = listener.Name;
        if (Authorization.InboundPolicyDecoder.IsInboundListenerName(name))
        {
            // This workload's own inbound listener (gRFC A36): PeerAuthentication mode and RBAC of one port.
            if (Authorization.InboundPolicyDecoder.TryDecode(listener, out var policy, out var inboundErrors))
            {
                return (name, policy);
            }

            errors.AddRange(inboundErrors.Select(e => $"Listener {name}: {e}"));
            return (name, null);
        }

        var where = $"Listener {name}";
        var start = errors.Count;
        if (string.IsNullOrEmpty(name))
        {
            errors.Add("Listener: name is required");
        }

        if (listener.ListenerFilters.Count > 0)
        {
            errors.Add($"{where}: listener_filters are not supported");
        }

        if (listener.ApiListener?.ApiListener_ is not { } hcmAny)
        {
            errors.Add($"{where}: api_listener is required (only API listeners of proxyless clients are supported)");
            return (name, null);
        }

        if (!string.Equals(hcmAny.TypeUrl, XdsTypeUrls.HttpConnectionManager, StringComparison.Ordinal))
        {
            errors.Add($"{where}: api_listener.api_listener has type {hcmAny.TypeUrl}, expected {XdsTypeUrls.HttpConnectionManager}");
            return (name, null);
        }

        var hcm = hcmAny.Unpack<HttpConnectionManager>();
        string? rdsName = null;
        RouteConfiguration? inline = null;
        const string hcmPath = "api_listener.api_listener";
        switch (hcm.RouteSpecifierCase)
        {
            case HttpConnectionManager.RouteSpecifierOneofCase.Rds:
                var source = hcm.Rds.ConfigSource;
                if (source is null || source.ConfigSourceSpecifierCase is ConfigSource.ConfigSourceSpecifierOneofCase.None)
                {
                    errors.Add($"{where}: {hcmPath}.rds.config_source must be ads or self");
                }

                if (string.IsNullOrEmpty(hcm.Rds.RouteConfigName))
                {
                    errors.Add($"{where}: {hcmPath}.rds.route_config_name is required");
                }

                rdsName = hcm.Rds.RouteConfigName;
                break;
            case HttpConnectionManager.RouteSpecifierOneofCase.RouteConfig:
                inline = hcm.RouteConfig;
                ValidateRoutes(inline, $"{where}: {hcmPath}.route_config.", errors);
                break;
            default:
                errors.Add($"{where}: {hcmPath} needs exactly one of rds or route_config");
                break;
        }

        ValidateHttpFilters(hcm, where, hcmPath, errors);
        var (host, port) = SplitHostPort(name);
        return errors.Count == start ? (name, new ListenerResource(name, host, port, rdsName, inline)) : (name, null);
    }

    public static (string Name, object? Value) Decode(RouteConfiguration routes, List<string> errors) => Decode(routes, errors, new SharedValues());

    private static (string Name, object? Value) Decode(RouteConfiguration routes, List<string> errors, SharedValues shared)
    {
        ArgumentNullException.ThrowIfNull(routes);
        var start = errors.Count;
        if (string.IsNullOrEmpty(routes.Name))
        {
            errors.Add("RouteConfiguration: name is required");
        }

        ValidateRoutes(routes, $"RouteConfiguration {routes.Name}: ", errors);
        if (errors.Count != start)
        {
            return (routes.Name, null);
        }

        ShareParts(routes, shared);
        return (routes.Name, routes);
    }

    /// <summary>
    /// The client keeps each accepted route configuration: names it repeats (istiod names it after its cluster, and the
    /// virtual host after one of its domains) become one string, and parts equal to another configuration's of the same
    /// response (the match of a catch-all route, istiod's default retry policy) one message, so a snapshot of thousands
    /// of services holds one copy. Nothing changes a configuration once decoded: shared messages are only read.
    /// </summary>
    private static void ShareParts(RouteConfiguration routes, SharedValues shared)
    {
        var name = routes.Name;
        foreach (var host in routes.VirtualHosts)
        {
            host.RetryPolicy = shared.Share(host.RetryPolicy);
            var domains = host.Domains;
            for (var d = 0; d < domains.Count; d++)
            {
                if (string.Equals(domains[d], host.Name, StringComparison.Ordinal))
                {
                    domains[d] = host.Name;
                }
            }

            foreach (var route in host.Routes)
            {
                route.Match = shared.Share(route.Match);
                if (route.Route_ is not { } action)
                {
                    continue;
                }

                action.RetryPolicy = shared.Share(action.RetryPolicy);
                action.Timeout = shared.Share(action.Timeout);
                if (action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.Cluster)
                {
                    if (string.Equals(action.Cluster, name, StringComparison.Ordinal))
                    {
                        action.Cluster = name;
                    }
                }
                else if (action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.WeightedClusters)
                {
                    foreach (var weighted in action.WeightedClusters.Clusters)
                    {
                        if (string.Equals(weighted.Name, name, StringComparison.Ordinal))
                        {
                            weighted.Name = name;
                        }
                    }
                }
            }
        }
    }

    public static (string Name, object? Value) Decode(Cluster cluster, List<string> errors) => Decode(cluster, errors, new SharedValues());

    private static (string Name, object? Value) Decode(Cluster cluster, List<string> errors, SharedValues shared)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        var name = cluster.Name;
        var where = $"Cluster {name}";
        var start = errors.Count;
        if (string.IsNullOrEmpty(name))
        {
            errors.Add("Cluster: name is required");
        }

        string? edsName = null;
        EndpointsResource? staticEndpoints = null;
        if (cluster.ClusterDiscoveryTypeCase != Cluster.ClusterDiscoveryTypeOneofCase.Type)
        {
            errors.Add($"{where}: type is required (EDS or STATIC)");
        }
        else if (cluster.Type == Cluster.Types.DiscoveryType.Eds)
        {
            var source = cluster.EdsClusterConfig?.EdsConfig;
            if (source is null || source.ConfigSourceSpecifierCase is ConfigSource.ConfigSourceSpecifierOneofCase.None)
            {
                errors.Add($"{where}: eds_cluster_config.eds_config must be ads or self");
            }

            // Istio names the EDS resource after the cluster: one string for both.
            edsName = string.IsNullOrEmpty(cluster.EdsClusterConfig?.ServiceName) || string.Equals(cluster.EdsClusterConfig.ServiceName, name, StringComparison.Ordinal)
                ? name
                : cluster.EdsClusterConfig.ServiceName;
        }
        else if (cluster.Type == Cluster.Types.DiscoveryType.Static)
        {
            if (cluster.LoadAssignment is null)
            {
                errors.Add($"{where}: load_assignment is required for a STATIC cluster");
            }
            else
            {
                staticEndpoints = DecodeEndpoints(cluster.LoadAssignment, name, $"{where}: load_assignment.", errors, shared);
            }
        }
        else
        {
            errors.Add($"{where}: type {EnumName(Cluster.Descriptor, "DiscoveryType", (int)cluster.Type)} is not supported (use EDS or STATIC)");
        }

        var policy = DecodePolicy(cluster, where, errors);
        var ringHash = policy == LoadBalancingPolicy.RingHash ? DecodeRingHash(cluster.RingHashLbConfig, where, errors) : null;
        // Clusters of one response mostly carry equal settings (istiod's defaults): they share one instance.
        var outlier = shared.Share(ClusterPolicyDecoder.DecodeOutlierDetection(cluster, where, errors));
        var limits = shared.Share(ClusterPolicyDecoder.DecodeLimits(cluster, where, errors));
        var tls = cluster.TransportSocket is { } socket ? DecodeTransportSocket(socket, where, errors) : null;
        return errors.Count == start
            ? (name, new ClusterResource(name, edsName, policy, outlier, staticEndpoints, tls, limits, ringHash))
            : (name, null);
    }

    public static (string Name, object? Value) Decode(ClusterLoadAssignment assignment, List<string> errors) => Decode(assignment, errors, new SharedValues());

    private static (string Name, object? Value) Decode(ClusterLoadAssignment assignment, List<string> errors, SharedValues shared)
    {
        ArgumentNullException.ThrowIfNull(assignment);
        var start = errors.Count;
        if (string.IsNullOrEmpty(assignment.ClusterName))
        {
            errors.Add("ClusterLoadAssignment: cluster_name is required");
        }

        var endpoints = DecodeEndpoints(assignment, assignment.ClusterName, $"ClusterLoadAssignment {assignment.ClusterName}: ", errors, shared);
        return errors.Count == start ? (assignment.ClusterName, endpoints) : (assignment.ClusterName, null);
    }

    /// <summary>Splits a listener name <c>host:port</c>; a name without a port means port 80.</summary>
    public static (string Host, int Port) SplitHostPort(string name)
    {
        var colon = name.LastIndexOf(':');
        if (colon > 0 && !name.EndsWith(']') && int.TryParse(name.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) && port is > 0 and <= 65535)
        {
            return (name[..colon], port);
        }

        return (name, 80);
    }

    private static void ValidateHttpFilters(HttpConnectionManager hcm, string where, string hcmPath, List<string> errors)
    {
        var filters = hcm.HttpFilters;
        if (filters.Count == 0)
        {
            errors.Add($"{where}: {hcmPath}.http_filters must end with the router filter");
            return;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < filters.Count; i++)
        {
            var filter = filters[i];
            if (!names.Add(filter.Name))
            {
                errors.Add($"{where}: {hcmPath}.http_filters[{i}].name '{filter.Name}' is not unique");
            }

            var isRouter = IsRouter(filter);
            if (!isRouter && string.Equals(filter.TypedConfig?.TypeUrl, XdsWire.HttpFaultType, StringComparison.Ordinal))
            {
                // The fault filter: routes say what to inject (typed_per_filter_config), MeshRouteFeaturesHandler injects it.
                // A listener-wide fault (a non-empty HTTPFault here) would apply to every route; this client does not run that.
                if (filter.TypedConfig!.Unpack<Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.HTTPFault>() is { Delay: not null } or { Abort: not null })
                {
                    errors.Add($"{where}: {hcmPath}.http_filters[{i}] '{filter.Name}': a listener-wide fault is not supported by this client (put it on the routes)");
                }

                if (i == filters.Count - 1)
                {
                    errors.Add($"{where}: {hcmPath}.http_filters[{i}] must be the router filter ({XdsTypeUrls.Router})");
                }

                continue;
            }

            if (isRouter && i != filters.Count - 1)
            {
                errors.Add($"{where}: {hcmPath}.http_filters[{i}] is the router, which must be the last filter");
            }
            else if (!isRouter && i == filters.Count - 1)
            {
                errors.Add($"{where}: {hcmPath}.http_filters[{i}] must be the router filter ({XdsTypeUrls.Router})");
            }
            else if (!isRouter && !filter.IsOptional)
            {
                errors.Add($"{where}: {hcmPath}.http_filters[{i}] '{filter.Name}' is not supported (mark it is_optional to let clients skip it)");
            }
        }
    }

    private static bool IsRouter(HttpFilter filter) =>
        filter.TypedConfig is { } config
            ? string.Equals(config.TypeUrl, XdsTypeUrls.Router, StringComparison.Ordinal)
            : string.Equals(filter.Name, XdsWire.RouterFilter, StringComparison.Ordinal);

    private static void ValidateRoutes(RouteConfiguration routes, string where, List<string> errors)
    {
        for (var h = 0; h < routes.VirtualHosts.Count; h++)
        {
            var host = routes.VirtualHosts[h];
            var hostPath = $"virtual_hosts[{h}]";
            if (host.Domains.Count == 0)
            {
                errors.Add($"{where}{hostPath}.domains must not be empty");
            }

            for (var d = 0; d < host.Domains.Count; d++)
            {
                var domain = host.Domains[d];
                var stars = domain.AsSpan().Count('*');
                if (domain.Length == 0 || stars > 1 || (stars == 1 && domain[0] != '*' && domain[^1] != '*'))
                {
                    errors.Add($"{where}{hostPath}.domains[{d}] '{domain}' is not a valid domain pattern (one '*' at either end at most)");
                }
            }

            for (var r = 0; r < host.Routes.Count; r++)
            {
                ValidateRoute(host.Routes[r], $"{where}{hostPath}.routes[{r}]", errors);
            }

            if (host.RetryPolicy is { } retry)
            {
                Resilience.RouteRetryPolicy.Decode(retry, $"{where}{hostPath}.retry_policy", errors);
            }
        }
    }

    private static void ValidateRoute(Route route, string where, List<string> errors)
    {
        if (route.Match is null || route.Match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.None)
        {
            errors.Add($"{where}.match needs prefix, path or safe_regex");
        }
        else
        {
            // Conditions this subset of the proto does not know (tls_context, filter_state, …) would be dropped on parsing
            // and the route would match more than meant: refused by field number, as the matchers below.
            RejectUnknownFields(route.Match, $"{where}.match", errors);
            for (var i = 0; i < route.Match.QueryParameters.Count; i++)
            {
                RejectUnknownFields(route.Match.QueryParameters[i], $"{where}.match.query_parameters[{i}]", errors);
                DecodeQueryParameter(route.Match.QueryParameters[i], $"{where}.match.query_parameters[{i}]", errors);
            }

            // Conditions this client does not evaluate: applying the route without them would send it more traffic than meant.
            if (route.Match.Grpc is not null)
            {
                errors.Add($"{where}.match.grpc is not supported by this client");
            }

            if (route.Match.RuntimeFraction is not null)
            {
                errors.Add($"{where}.match.runtime_fraction is not supported by this client");
            }

            if (route.Match.DynamicMetadata.Count > 0)
            {
                errors.Add($"{where}.match.dynamic_metadata is not supported by this client");
            }

            if (route.Match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.SafeRegex)
            {
                StringMatch.SafeRegex(route.Match.SafeRegex.Regex, $"{where}.match.safe_regex.regex", errors);
            }

            for (var i = 0; i < route.Match.Headers.Count; i++)
            {
                var header = route.Match.Headers[i];
                if (string.IsNullOrEmpty(header.Name))
                {
                    errors.Add($"{where}.match.headers[{i}].name is required");
                }
                else if (header.Name[0] == ':' && !HeaderMatch.IsRequestPseudoHeader(header.Name))
                {
                    // Matching it against request headers would never succeed and silently skip the route.
                    errors.Add($"{where}.match.headers[{i}].name '{header.Name}': this client matches no pseudo-header but :method, :authority, :scheme and :path");
                }

                RejectUnknownFields(header, $"{where}.match.headers[{i}]", errors);
                StringMatch.TryDecodeHeader(header, $"{where}.match.headers[{i}]", errors, out _, out _, allowRegex: true);
            }
        }

        RouteFeaturesDecoder.Decode(route, where, errors, clusters: null, out _);
        if (route.ActionCase is Route.ActionOneofCase.Redirect or Route.ActionOneofCase.DirectResponse)
        {
            return;
        }

        if (route.ActionCase != Route.ActionOneofCase.Route_)
        {
            errors.Add($"{where}.route is required (only forwarding, redirect and direct response routes are supported)");
            return;
        }

        var action = route.Route_;

        // A forwarding instruction this client would not see (a rewrite, an upgrade, a cluster specifier of a newer Envoy)
        // would send the request somewhere or somehow other than meant.
        RejectUnknownFields(action, $"{where}.route", errors);

        // The virtual host's policy is checked once, by ValidateRoutes.
        Resilience.RouteResilience.Decode(action, hostPolicy: null, $"{where}.route", errors);
        DecodeHashPolicy(action, $"{where}.route", errors);
        switch (action.ClusterSpecifierCase)
        {
            case RouteAction.ClusterSpecifierOneofCase.Cluster:
                if (string.IsNullOrEmpty(action.Cluster))
                {
                    errors.Add($"{where}.route.cluster must not be empty");
                }

                break;
            case RouteAction.ClusterSpecifierOneofCase.WeightedClusters:
                ulong sum = 0;
                var clusters = action.WeightedClusters.Clusters;
                for (var i = 0; i < clusters.Count; i++)
                {
                    RejectUnknownFields(clusters[i], $"{where}.route.weighted_clusters.clusters[{i}]", errors);
                    if (string.IsNullOrEmpty(clusters[i].Name))
                    {
                        errors.Add($"{where}.route.weighted_clusters.clusters[{i}].name must not be empty");
                    }

                    sum += clusters[i].Weight ?? 0;
                }

                if (sum == 0 || sum > uint.MaxValue)
                {
                    errors.Add($"{where}.route.weighted_clusters weights add up to {sum}; the sum must be between 1 and {uint.MaxValue}");
                }

                break;
            case RouteAction.ClusterSpecifierOneofCase.ClusterHeader:
                errors.Add($"{where}.route.cluster_header is not supported (use cluster or weighted_clusters)");
                break;
            default:
                errors.Add($"{where}.route needs cluster or weighted_clusters");
                break;
        }
    }

    /// <summary>
    /// Envoy's QueryParameterMatcher: a string_match on the parameter's first value, or present_match (false: the parameter
    /// must be absent, Envoy's current behaviour); neither set is a presence test, as in Envoy. Null, with an error naming
    /// <paramref name="where"/>, when invalid.
    /// </summary>
    internal static QueryParameterMatch? DecodeQueryParameter(QueryParameterMatcher matcher, string where, List<string> errors)
    {
        if (string.IsNullOrEmpty(matcher.Name))
        {
            errors.Add($"{where}.name is required");
            return null;
        }

        switch (matcher.QueryParameterMatchSpecifierCase)
        {
            case QueryParameterMatcher.QueryParameterMatchSpecifierOneofCase.StringMatch:
                var match = StringMatch.Decode(matcher.StringMatch, $"{where}.string_match", errors, allowRegex: true);
                return match is null ? null : new QueryParameterMatch(matcher.Name, match, Present: true);
            case QueryParameterMatcher.QueryParameterMatchSpecifierOneofCase.PresentMatch:
                return new QueryParameterMatch(matcher.Name, Match: null, matcher.PresentMatch);
            default:
                return new QueryParameterMatch(matcher.Name, Match: null, Present: true);
        }
    }

    private static LoadBalancingPolicy DecodePolicy(Cluster cluster, string where, List<string> errors)
    {
        if (cluster.LoadBalancingPolicy is { Policies.Count: > 0 } configured)
        {
            // As gRFC A52: the first policy this client supports wins.
            foreach (var policy in configured.Policies)
            {
                switch (policy.TypedExtensionConfig?.TypedConfig?.TypeUrl)
                {
                    case XdsTypeUrls.RoundRobinPolicy:
                        return LoadBalancingPolicy.RoundRobin;
                    case XdsTypeUrls.LeastRequestPolicy:
                        return LoadBalancingPolicy.LeastRequest;
                    case XdsTypeUrls.RandomPolicy:
                        return LoadBalancingPolicy.Random;
                }
            }

            errors.Add($"{where}: load_balancing_policy has no supported policy (supported: {XdsTypeUrls.RoundRobinPolicy}, {XdsTypeUrls.LeastRequestPolicy}, {XdsTypeUrls.RandomPolicy})");
            return LoadBalancingPolicy.RoundRobin;
        }

        switch (cluster.LbPolicy)
        {
            case Cluster.Types.LbPolicy.RoundRobin:
                return LoadBalancingPolicy.RoundRobin;
            case Cluster.Types.LbPolicy.LeastRequest:
                return LoadBalancingPolicy.LeastRequest;
            case Cluster.Types.LbPolicy.Random:
                return LoadBalancingPolicy.Random;
            case Cluster.Types.LbPolicy.RingHash:
                return LoadBalancingPolicy.RingHash;
            default:
                // MAGLEV too: gRPC NACKs it as well; a control plane sends RING_HASH, the consistent hash both implement.
                errors.Add($"{where}: lb_policy {EnumName(Cluster.Descriptor, "LbPolicy", (int)cluster.LbPolicy)} is not supported (use {string.Join(", ", LoadBalancing.LoadBalancerRegistry.Names.Order(StringComparer.Ordinal))})");
                return LoadBalancingPolicy.RoundRobin;
        }
    }

    /// <summary>CDS <c>ring_hash_lb_config</c>, checked as Envoy and gRPC (A42) check it.</summary>
    private static LoadBalancing.RingHashSettings? DecodeRingHash(RingHashLbConfig? config, string where, List<string> errors)
    {
        if (config is null)
        {
            return LoadBalancing.RingHashSettings.Default;
        }

        var path = $"{where}: ring_hash_lb_config";
        if (config.HashFunction != RingHashLbConfig.Types.HashFunction.XxHash)
        {
            errors.Add($"{path}.hash_function {config.HashFunction} is not supported (only XX_HASH)");
        }

        var max = LoadBalancing.RingHashSettings.MaxRingSize;
        var minimum = config.MinimumRingSize ?? 1024;
        var maximum = config.MaximumRingSize ?? max;
        if (minimum is 0 || minimum > max)
        {
            errors.Add($"{path}.minimum_ring_size {minimum} must be between 1 and {max}");
        }

        if (maximum is 0 || maximum > max)
        {
            errors.Add($"{path}.maximum_ring_size {maximum} must be between 1 and {max}");
        }

        if (minimum > maximum && minimum <= max)
        {
            errors.Add($"{path}.minimum_ring_size {minimum} is above maximum_ring_size {maximum}");
        }

        return new LoadBalancing.RingHashSettings(minimum, maximum);
    }

    private static readonly ulong ProcessSourceKey = LoadBalancing.XxHash64.HashUtf8(Environment.MachineName);

    /// <summary>
    /// RDS <c>hash_policy</c>: header, cookie, query parameter and source IP keys; null when the route has none. A cookie's
    /// <c>ttl</c> asks Envoy to generate the cookie when absent; a client cannot set a cookie on its own requests for the next
    /// ones, so a request without it hashes like one without a key (a random endpoint), as in gRPC (A42).
    /// </summary>
    internal static Routing.RouteHashPolicy? DecodeHashPolicy(RouteAction action, string where, List<string> errors)
    {
        if (action.HashPolicy.Count == 0)
        {
            return null;
        }

        var keys = ImmutableArray.CreateBuilder<Routing.HashKey>();
        for (var i = 0; i < action.HashPolicy.Count; i++)
        {
            var policy = action.HashPolicy[i];
            var path = $"{where}.hash_policy[{i}]";
            switch (policy.PolicySpecifierCase)
            {
                case HashPolicy.PolicySpecifierOneofCase.Header:
                    if (string.IsNullOrEmpty(policy.Header.HeaderName))
                    {
                        errors.Add($"{path}.header.header_name is required");
                    }
                    else
                    {
                        keys.Add(new(Routing.HashKeyKind.Header, policy.Header.HeaderName, policy.Terminal));
                    }

                    break;
                case HashPolicy.PolicySpecifierOneofCase.Cookie:
                    if (string.IsNullOrEmpty(policy.Cookie.Name))
                    {
                        errors.Add($"{path}.cookie.name is required");
                    }
                    else
                    {
                        keys.Add(new(Routing.HashKeyKind.Cookie, policy.Cookie.Name, policy.Terminal));
                    }

                    break;
                case HashPolicy.PolicySpecifierOneofCase.QueryParameter:
                    if (string.IsNullOrEmpty(policy.QueryParameter.Name))
                    {
                        errors.Add($"{path}.query_parameter.name is required");
                    }
                    else
                    {
                        keys.Add(new(Routing.HashKeyKind.QueryParameter, policy.QueryParameter.Name, policy.Terminal));
                    }

                    break;
                case HashPolicy.PolicySpecifierOneofCase.ConnectionProperties:
                    // source_ip false hashes nothing, as in Envoy.
                    if (policy.ConnectionProperties.SourceIp)
                    {
                        keys.Add(new(Routing.HashKeyKind.SourceIp, string.Empty, policy.Terminal));
                    }

                    break;
                case HashPolicy.PolicySpecifierOneofCase.FilterState:
                    errors.Add($"{path}.filter_state is not supported (use header, cookie, query_parameter or connection_properties)");
                    break;
                default:
                    errors.Add($"{path} sets no hash key");
                    break;
            }
        }

        return new Routing.RouteHashPolicy(keys.ToImmutable(), ProcessSourceKey);
    }

    /// <summary>
    /// Decodes the UpstreamTlsContext Istio sends proxyless clients (gRFC A29). Certificates always come from this
    /// workload's SVID and the mesh bundle, so provider instance names are not checked; any field this client does not
    /// know (verify_certificate_hash, spki pins, CRLs, custom validators, safe_regex SAN matchers…) is a NACK, since
    /// ignoring it would weaken what the control plane asked for.
    /// </summary>
    private static UpstreamTlsSettings? DecodeTransportSocket(TransportSocket socket, string where, List<string> errors)
    {
        const string path = "transport_socket";
        var start = errors.Count;
        if (socket.TypedConfig is not { } config)
        {
            errors.Add($"{where}: {path}.typed_config is required");
            return null;
        }

        if (!string.Equals(config.TypeUrl, XdsTypeUrls.UpstreamTlsContext, StringComparison.Ordinal))
        {
            errors.Add($"{where}: {path}.typed_config has type {config.TypeUrl}; only {XdsTypeUrls.UpstreamTlsContext} is supported");
            return null;
        }

        var upstream = config.Unpack<UpstreamTlsContext>();
        RejectUnknownFields(upstream, $"{where}: {path}.typed_config", errors);
        var common = upstream.CommonTlsContext;
        if (common is null)
        {
            errors.Add($"{where}: {path}.typed_config.common_tls_context is required");
            return null;
        }

        var commonPath = $"{where}: {path}.typed_config.common_tls_context";
        RejectUnknownFields(common, commonPath, errors);
        if (common.TlsParams is { } tlsParams)
        {
            RejectUnknownFields(tlsParams, $"{commonPath}.tls_params", errors);
            if (tlsParams.TlsMaximumProtocolVersion is TlsParameters.Types.TlsProtocol.Tlsv10 or TlsParameters.Types.TlsProtocol.Tlsv11)
            {
                errors.Add($"{commonPath}.tls_params.tls_maximum_protocol_version below TLSv1_2 is not supported (the mesh speaks TLS 1.2 and 1.3)");
            }
        }

        CertificateValidationContext? validation = null;
        var validationPath = commonPath;
        switch (common.ValidationContextTypeCase)
        {
            case CommonTlsContext.ValidationContextTypeOneofCase.ValidationContext:
                validation = common.ValidationContext;
                validationPath += ".validation_context";
                break;
            case CommonTlsContext.ValidationContextTypeOneofCase.CombinedValidationContext:
                RejectUnknownFields(common.CombinedValidationContext, $"{commonPath}.combined_validation_context", errors);
                validation = common.CombinedValidationContext.DefaultValidationContext;
                validationPath += ".combined_validation_context.default_validation_context";
                break;
        }

        var matchers = ImmutableArray.CreateBuilder<StringMatch>();
        if (validation is not null)
        {
            RejectUnknownFields(validation, validationPath, errors);
            for (var i = 0; i < validation.MatchSubjectAltNames.Count; i++)
            {
                var matcher = validation.MatchSubjectAltNames[i];
                var matcherPath = $"{validationPath}.match_subject_alt_names[{i}]";
                var unknown = !RejectUnknownFields(matcher, matcherPath, errors);
                if (unknown && matcher.MatchPatternCase == StringMatcher.MatchPatternOneofCase.None)
                {
                    // The unknown field (e.g. safe_regex) is already reported.
                    continue;
                }

                var san = StringMatch.Decode(matcher, matcherPath, errors);
                if (san is { Kind: not StringMatchKind.Exact, Value.Length: 0 })
                {
                    errors.Add($"{matcherPath}: an empty {san.Kind.ToString().ToLowerInvariant()} pattern would match any identity");
                }
                else if (san is not null)
                {
                    matchers.Add(san);
                }
            }
        }

        return errors.Count == start ? new UpstreamTlsSettings(matchers.ToImmutable()) : null;
    }

    /// <summary>
    /// Adds an error naming the field numbers on the wire that this client's proto subset does not know (with Envoy's name
    /// for those in <paramref name="names"/>); true when there are none.
    /// </summary>
    internal static bool RejectUnknownFields(IMessage message, string where, List<string> errors, IReadOnlyDictionary<int, string>? names = null)
    {
        var known = message.Descriptor.Fields.InFieldNumberOrder().Select(f => f.FieldNumber).ToHashSet();
        var input = new CodedInputStream(message.ToByteArray());
        var unknown = new SortedSet<int>();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var number = WireFormat.GetTagFieldNumber(tag);
            if (!known.Contains(number))
            {
                unknown.Add(number);
            }

            input.SkipLastField();
        }

        if (unknown.Count > 0)
        {
            var fields = unknown.Select(n => names is not null && names.TryGetValue(n, out var name) ? $"{n} ({name})" : n.ToString(System.Globalization.CultureInfo.InvariantCulture));
            errors.Add($"{where} ({message.Descriptor.FullName}) sets field(s) {string.Join(", ", fields)} that this client cannot honour");
        }

        return unknown.Count == 0;
    }

    private static EndpointsResource DecodeEndpoints(ClusterLoadAssignment assignment, string name, string where, List<string> errors, SharedValues shared)
    {
        var endpoints = ImmutableArray.CreateBuilder<EndpointSpec>();
        var seen = new HashSet<(string, int)>();
        for (var l = 0; l < assignment.Endpoints.Count; l++)
        {
            var locality = assignment.Endpoints[l];

            // As gRPC does: a locality without a weight takes no traffic.
            if (locality.LoadBalancingWeight is null or 0)
            {
                continue;
            }

            // Every endpoint of a locality, and every assignment in that locality, names it with one string.
            var localityName = locality.Locality is { } loc ? shared.Share($"{loc.Region}/{loc.Zone}/{loc.SubZone}") : string.Empty;
            for (var e = 0; e < locality.LbEndpoints.Count; e++)
            {
                var lbEndpoint = locality.LbEndpoints[e];
                var path = $"{where}endpoints[{l}].lb_endpoints[{e}]";
                var socket = lbEndpoint.Endpoint?.Address?.SocketAddress;
                if (socket is null)
                {
                    errors.Add($"{path}.endpoint.address.socket_address is required");
                    continue;
                }

                if (string.IsNullOrEmpty(socket.Address))
                {
                    errors.Add($"{path}.endpoint.address.socket_address.address is required");
                    continue;
                }

                if (socket.PortSpecifierCase != SocketAddress.PortSpecifierOneofCase.PortValue || socket.PortValue is 0 or > 65535)
                {
                    errors.Add($"{path}.endpoint.address.socket_address.port_value must be between 1 and 65535");
                    continue;
                }

                var port = (int)socket.PortValue;
                if (!seen.Add((socket.Address, port)))
                {
                    errors.Add($"{path}: address {socket.Address}:{port} appears more than once");
                    continue;
                }

                var healthy = lbEndpoint.HealthStatus is HealthStatus.Unknown or HealthStatus.Healthy;
                var weight = lbEndpoint.LoadBalancingWeight is { } w ? (int)Math.Clamp(w, 1u, int.MaxValue) : 1;
                endpoints.Add(new EndpointSpec(socket.Address, port, weight, healthy, localityName, (int)Math.Min(locality.Priority, int.MaxValue),
                    (int)Math.Min(locality.LoadBalancingWeight.Value, int.MaxValue), WorkloadOf(lbEndpoint, shared)));
            }
        }

        return new EndpointsResource(name, endpoints.ToImmutable());
    }

    /// <summary>istiod's telemetry metadata of an endpoint (<c>filter_metadata.istio.workload</c>), shared across the response; null without it.</summary>
    private static Discovery.EndpointWorkload? WorkloadOf(LbEndpoint endpoint, SharedValues shared) =>
        endpoint.Metadata?.FilterMetadata.TryGetValue(Mesh.Xds.Wire.EndpointWorkloadMetadata.FilterName, out var istio) == true
        && istio.Fields.TryGetValue(Mesh.Xds.Wire.EndpointWorkloadMetadata.WorkloadField, out var workload)
        && workload.KindCase == Google.Protobuf.WellKnownTypes.Value.KindOneofCase.StringValue
            ? shared.Share(Discovery.EndpointWorkload.Parse(workload.StringValue))
            : null;

    private static string EnumName(Google.Protobuf.Reflection.MessageDescriptor message, string enumName, int value) =>
        message.EnumTypes.FirstOrDefault(e => e.Name == enumName)?.FindValueByNumber(value)?.Name
            ?? value.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Equal values decoded from one response (locality names, cluster settings, route matches and policies), kept once:
    /// the client holds every resource it accepted, and a response of thousands repeats a few values thousands of times.
    /// Shared parts include protobuf messages, which are mutable: nothing may change a decoded resource in place.
    /// </summary>
    internal sealed class SharedValues
    {
        private readonly HashSet<object> _values = [];

        [return: System.Diagnostics.CodeAnalysis.NotNullIfNotNull(nameof(value))]
        public T? Share<T>(T? value)
            where T : class
        {
            if (value is null)
            {
                return null;
            }

            if (_values.TryGetValue(value, out var existing) && existing is T same)
            {
                return same;
            }

            _values.Add(value);
            return value;
        }
    }
}
