using System.Collections.Immutable;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Route = Mesh.Xds.Envoy.Config.Route.V3.Route;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// A VirtualService's <c>http</c> routes as Envoy routes, the way istiod translates them (route/route.go): one Envoy
/// route per match block, in order, so the first match wins; Istio's subset cluster names; weights verbatim.
/// </summary>
internal sealed class RouteTranslator
{
    /// <summary>istiod's retry_on when a VirtualService sets <c>retries</c> without <c>retryOn</c> (retry/retry.go).</summary>
    public const string DefaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";

    private const string RetriableStatusCodes = "retriable-status-codes";

    private readonly Dictionary<string, ImmutableArray<ServicePort>> _ports = new(StringComparer.Ordinal);
    private readonly Dictionary<string, VirtualServiceModel> _virtualServices = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ResolvedService> _services = new(StringComparer.Ordinal);

    public RouteTranslator(IEnumerable<ResolvedService> services, IEnumerable<VirtualServiceModel> virtualServices)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(virtualServices);
        foreach (var service in services)
        {
            _ports.TryAdd(service.Host, service.Entry.Ports);
            _services.TryAdd(service.Host, service);
        }

        foreach (var virtualService in virtualServices)
        {
            foreach (var host in virtualService.Hosts)
            {
                _virtualServices.TryAdd(host, virtualService);
            }
        }
    }

    public VirtualServiceModel? Find(string host) => _virtualServices.GetValueOrDefault(host);

    /// <summary>The routes of <paramref name="virtualService"/> for requests to service port <paramref name="port"/>.</summary>
    public List<Route> BuildRoutes(VirtualServiceModel virtualService, uint port)
    {
        ArgumentNullException.ThrowIfNull(virtualService);
        var routes = new List<Route>();
        foreach (var http in virtualService.Http)
        {
            var action = BuildAction(http, port);
            if (http.Matches.IsEmpty)
            {
                routes.Add(new Route { Name = http.Name ?? string.Empty, Match = new RouteMatch { Prefix = "/" }, Route_ = action });

                // Like istiod: nothing after a catch-all can ever match.
                break;
            }

            foreach (var match in http.Matches)
            {
                routes.Add(new Route { Name = RouteName(http.Name, match.Name), Match = BuildMatch(match), Route_ = action.Clone() });
            }
        }

        return routes;
    }

    private static string RouteName(string? route, string? match) => (route, match) switch
    {
        ({ Length: > 0 }, { Length: > 0 }) => $"{route}.{match}",
        ({ Length: > 0 }, _) => route,
        (_, { Length: > 0 }) => match,
        _ => string.Empty,
    };

    public static RouteMatch BuildMatch(HttpMatchModel match)
    {
        ArgumentNullException.ThrowIfNull(match);
        var result = new RouteMatch { CaseSensitive = !match.IgnoreUriCase };
        switch (match.Uri)
        {
            case null:
                result.Prefix = "/";
                break;
            case { Kind: RouteStringMatchKind.Exact } exact:
                result.Path = exact.Value;
                break;
            case { Kind: RouteStringMatchKind.Prefix } prefix:
                result.Prefix = prefix.Value;
                break;
            case var regex:
                result.SafeRegex = new RegexMatcher { Regex = regex.Value };
                break;
        }

        foreach (var header in match.Headers)
        {
            result.Headers.Add(BuildHeader(header.Name, header.Value, invert: false));
        }

        if (match.Method is { } method)
        {
            result.Headers.Add(BuildHeader(":method", method, invert: false));
        }

        foreach (var header in match.WithoutHeaders)
        {
            result.Headers.Add(BuildHeader(header.Name, header.Value, invert: true));
        }

        return result;
    }

    private static HeaderMatcher BuildHeader(string name, RouteStringMatch? value, bool invert)
    {
        var matcher = new HeaderMatcher { Name = name, InvertMatch = invert };
        if (value is null)
        {
            matcher.PresentMatch = true;
            return matcher;
        }

        matcher.StringMatch = value.Kind switch
        {
            RouteStringMatchKind.Exact => new StringMatcher { Exact = value.Value },
            RouteStringMatchKind.Prefix => new StringMatcher { Prefix = value.Value },
            _ => new StringMatcher { SafeRegex = new RegexMatcher { Regex = value.Value } },
        };

        // Istio: "without header x = v" also holds when x is absent.
        matcher.TreatMissingHeaderAsEmpty = invert;
        return matcher;
    }

    private RouteAction BuildAction(HttpRouteModel http, uint port)
    {
        var action = new RouteAction();
        if (http.Destinations.Length == 1)
        {
            action.Cluster = ClusterFor(http.Destinations[0], port);
        }
        else
        {
            // Weights go out verbatim (no total_weight, no normalising); a weight-0 destination gets no traffic, so it is left out.
            var weighted = new WeightedCluster();
            foreach (var destination in http.Destinations.Where(d => d.Weight > 0))
            {
                weighted.Clusters.Add(new WeightedCluster.Types.ClusterWeight { Name = ClusterFor(destination, port), Weight = destination.Weight });
            }

            action.WeightedClusters = weighted;
        }

        if (http.Timeout is { } timeout)
        {
            // timeout for Envoy-style clients, max_stream_duration for gRPC (gRFC A31); the same deadline.
            action.Timeout = Duration.FromTimeSpan(timeout);
            action.MaxStreamDuration = new RouteAction.Types.MaxStreamDuration { MaxStreamDuration_ = Duration.FromTimeSpan(timeout) };
        }

        if (http.Retries is { } retries)
        {
            action.RetryPolicy = BuildRetryPolicy(retries);
        }

        // Istio: the consistentHash of each destination (its subset's when that subset sets a load balancer) becomes the
        // route's hash_policy; distinct keys of a split all go out (Envoy folds them into one hash), duplicates once.
        foreach (var destination in http.Destinations)
        {
            if (XdsTranslator.BuildHashPolicy(ConsistentHashOf(destination)) is { } hashPolicy && !action.HashPolicy.Contains(hashPolicy))
            {
                action.HashPolicy.Add(hashPolicy);
            }
        }

        return action;
    }

    /// <summary>
    /// <c>attempts: 0</c> becomes a policy with an empty <c>retry_on</c>: no condition, so no retries, and the client does
    /// not fall back to its own defaults. Not <c>num_retries: 0</c>, which grpc-js NACKs (with the whole route config).
    /// HTTP codes in retryOn move to retriable_status_codes, as istiod does.
    /// </summary>
    public static RetryPolicy BuildRetryPolicy(HttpRetryModel retries)
    {
        ArgumentNullException.ThrowIfNull(retries);
        var policy = new RetryPolicy();
        if (retries.Attempts == 0)
        {
            return policy;
        }

        policy.NumRetries = retries.Attempts;

        if (retries.PerTryTimeout is { } perTry)
        {
            policy.PerTryTimeout = Duration.FromTimeSpan(perTry);
        }

        var tokens = new List<string>();
        if (retries.RetryOn is null)
        {
            // istiod starts from its default policy, whose retriable-status-codes is [503] (unless EXCLUDE_503_FROM_DEFAULT_RETRIES).
            policy.RetriableStatusCodes.Add(503);
        }

        foreach (var raw in (retries.RetryOn ?? DefaultRetryOn).Split(','))
        {
            var token = raw.Trim();
            if (YamlConfigLoader.IsHttpStatus(token))
            {
                var code = uint.Parse(token, CultureInfo.InvariantCulture);
                if (!policy.RetriableStatusCodes.Contains(code))
                {
                    policy.RetriableStatusCodes.Add(code);
                }
            }
            else if (token.Length > 0 && !tokens.Contains(token))
            {
                tokens.Add(token);
            }
        }

        if (policy.RetriableStatusCodes.Count > 0 && !tokens.Contains(RetriableStatusCodes))
        {
            tokens.Add(RetriableStatusCodes);
        }

        policy.RetryOn = string.Join(',', tokens);
        return policy;
    }

    private ConsistentHashModel? ConsistentHashOf(RouteDestinationModel destination)
    {
        if (!_services.TryGetValue(destination.Host, out var service))
        {
            return null;
        }

        // A subset's loadBalancer replaces the top-level one as a whole (Istio merges per block).
        var subset = destination.Subset is null ? null : service.Subsets.FirstOrDefault(s => s.Name == destination.Subset);
        return subset?.LoadBalancer is not null ? subset.ConsistentHash : service.ConsistentHash;
    }

    private string ClusterFor(RouteDestinationModel destination, uint routePort)
    {
        // The loader requires port.number when the destination has several ports; otherwise its only port.
        var port = destination.Port
            ?? (_ports.TryGetValue(destination.Host, out var ports) && ports.Length == 1 ? ports[0].Number : routePort);
        return XdsTranslator.ClusterName(port, destination.Host, destination.Subset);
    }
}
