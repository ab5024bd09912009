using System.Collections.Immutable;
using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Common.Fault.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
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

    /// <summary>Envoy's name of the retry host predicate that avoids hosts already tried.</summary>
    public const string PreviousHostsPredicateName = "envoy.retry_host_predicates.previous_hosts";

    private const string RetriableStatusCodes = "retriable-status-codes";

    private readonly Dictionary<string, ImmutableArray<ServicePort>> _ports = new(StringComparer.Ordinal);
    private readonly Dictionary<string, VirtualServiceModel> _virtualServices = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ResolvedService> _services = new(StringComparer.Ordinal);

    /// <summary>Gets the cluster domain the services' short-name aliases (RDS domains) are made in.</summary>
    public string ClusterDomain { get; init; } = HostNames.DefaultClusterDomain;

    public RouteTranslator(IEnumerable<ResolvedService> services, IEnumerable<VirtualServiceModel> virtualServices)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(virtualServices);
        foreach (var service in services)
        {
            _ports.TryAdd(service.Host, service.Entry.Ports);
            _services.TryAdd(service.Host, service);
        }

        foreach (var group in virtualServices.SelectMany(vs => vs.Hosts.Select(host => (Host: host, VirtualService: vs))).GroupBy(p => p.Host, StringComparer.Ordinal))
        {
            var all = group.Select(p => p.VirtualService).ToList();
            _virtualServices.Add(group.Key, all.Count == 1 || !all.All(a => all.All(b => ReferenceEquals(a, b) || YamlConfigLoader.ApartByExportTo(a, b)))
                ? all[0]
                : Merge(group.Key, all));
        }
    }

    /// <summary>
    /// VirtualServices of one host, each exported to its own namespace (the loader allows no other set): each route's
    /// matches carry its namespace as sourceNamespace, so one list gives every caller exactly the routes of its own
    /// namespace's VirtualService, and callers of other namespaces the default route, as istiod. A new model each snapshot,
    /// so such a host is translated again each time (what comes out unchanged keeps its instances).
    /// </summary>
    private static VirtualServiceModel Merge(string host, List<VirtualServiceModel> virtualServices)
    {
        var ordered = virtualServices.OrderBy(vs => vs.Namespace, StringComparer.Ordinal).ToList();
        return new VirtualServiceModel(
            ordered[0].Namespace,
            string.Join(',', ordered.Select(vs => $"{vs.Namespace}/{vs.Name}")),
            [host],
            [.. ordered.SelectMany(vs => vs.Http)]);
    }

    public VirtualServiceModel? Find(string host) => _virtualServices.GetValueOrDefault(host);

    /// <summary>
    /// The hosts whose services <see cref="BuildRoutes"/> looks up for <paramref name="virtualService"/> (route and mirror
    /// destinations): its routes depend on those services' ports and DestinationRules (see <see cref="DestinationInputs(string)"/>).
    /// </summary>
    public static IEnumerable<string> DestinationHosts(VirtualServiceModel virtualService)
    {
        ArgumentNullException.ThrowIfNull(virtualService);
        return virtualService.Http
            .SelectMany(h => h.Destinations.Concat(h.Mirrors.Select(m => m.Destination)))
            .Select(d => d.Host)
            .Distinct(StringComparer.Ordinal);
    }

    /// <summary>What routes to <paramref name="host"/> are built from: the service <see cref="ClusterFor"/> and <see cref="ConsistentHashOf"/> read.</summary>
    public DestinationInputs DestinationInputs(string host) => new(host, _services.GetValueOrDefault(host));

    /// <summary>Whether any match block of <paramref name="virtualService"/> selects callers (<c>sourceLabels</c>/<c>sourceNamespace</c>).</summary>
    public static bool IsSourceScoped(VirtualServiceModel virtualService)
    {
        ArgumentNullException.ThrowIfNull(virtualService);
        return virtualService.Http.Any(h => h.Matches.Any(m => m.Source is not null));
    }

    /// <summary>
    /// The routes of <paramref name="virtualService"/> for requests to service port <paramref name="port"/>, as a caller
    /// that <paramref name="selects"/> describes gets them: a match block whose <c>port</c> is another port, or whose source
    /// selector does not select the caller, is left out (istiod's TranslateRoute); <paramref name="selects"/> null is a
    /// caller no selector selects. Empty when nothing is left: then the service's default route applies, as in istiod.
    /// </summary>
    public List<Route> BuildRoutes(VirtualServiceModel virtualService, uint port, Func<SourceSelector, bool>? selects = null)
    {
        ArgumentNullException.ThrowIfNull(virtualService);
        var routes = new List<Route>();
        foreach (var http in virtualService.Http)
        {
            var template = BuildRoute(http, port);
            if (http.Matches.IsEmpty)
            {
                template.Name = http.Name ?? string.Empty;
                template.Match = new RouteMatch { Prefix = "/" };
                routes.Add(template);

                // Like istiod: nothing after a catch-all can ever match.
                break;
            }

            var catchAll = false;
            foreach (var match in http.Matches)
            {
                if ((match.Port is { } matchPort && matchPort != port) || (match.Source is { } source && selects?.Invoke(source) != true))
                {
                    continue;
                }

                var route = template.Clone();
                route.Name = RouteName(http.Name, match.Name);
                route.Match = BuildMatch(match);
                routes.Add(route);
                if (IsCatchAll(route.Match))
                {
                    catchAll = true;
                    break;
                }
            }

            if (catchAll)
            {
                break;
            }
        }

        return routes;
    }

    /// <summary>istiod's IsCatchAllRoute: prefix "/" (or a regex "*" or ".*") without header or query conditions.</summary>
    private static bool IsCatchAll(RouteMatch match) =>
        match.Headers.Count == 0 && match.QueryParameters.Count == 0
        && (match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.Prefix
            ? match.Prefix == "/"
            : match.PathSpecifierCase == RouteMatch.PathSpecifierOneofCase.SafeRegex && match.SafeRegex.Regex is "*" or ".*");

    /// <summary>The route without its match: the action (forward, redirect or direct response), fault, mirrors, rewrites, header mutations.</summary>
    private Route BuildRoute(HttpRouteModel http, uint port)
    {
        var route = new Route();
        if (http.Redirect is { } redirect)
        {
            route.Redirect = BuildRedirect(redirect);
        }
        else if (http.DirectResponse is { } direct)
        {
            route.DirectResponse = new DirectResponseAction
            {
                Status = direct.Status,
                Body = direct.Body is null ? null : new DataSource { InlineBytes = ByteString.CopyFrom(direct.Body) },
            };
        }
        else
        {
            route.Route_ = BuildAction(http, port);
        }

        if (http.Fault is { } fault)
        {
            route.TypedPerFilterConfig[XdsWire.FaultFilter] = Any.Pack(BuildFault(fault));
        }

        if (http.Headers is { } headers)
        {
            AddHeaderMutations(route.RequestHeadersToAdd, route.RequestHeadersToRemove, headers.Request);
            AddHeaderMutations(route.ResponseHeadersToAdd, route.ResponseHeadersToRemove, headers.Response);
        }

        return route;
    }

    /// <summary>
    /// Always with a <c>percentage</c> on both parts: grpc-js NACKs an abort without one (with the whole route config), and
    /// Istio's "unset means no request is affected" is 0 %, which is what Envoy reads from an empty FractionalPercent.
    /// </summary>
    public static HTTPFault BuildFault(HttpFaultModel fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        var result = new HTTPFault();
        if (fault.Delay is { } delay)
        {
            result.Delay = new FaultDelay { FixedDelay = Duration.FromTimeSpan(delay.FixedDelay), Percentage = Fraction(delay.Percent) };
        }

        if (fault.Abort is { } abort)
        {
            result.Abort = new FaultAbort { Percentage = Fraction(abort.Percent) };
            if (abort.HttpStatus is { } http)
            {
                result.Abort.HttpStatus = http;
            }
            else
            {
                result.Abort.GrpcStatus = abort.GrpcStatus!.Value;
            }
        }

        return result;
    }

    /// <summary>A percentage as istiod sends it: per million, so 0.0001 % is the smallest share.</summary>
    public static FractionalPercent Fraction(double percent) => new()
    {
        Numerator = (uint)Math.Round(percent * 10_000, MidpointRounding.AwayFromZero),
        Denominator = FractionalPercent.Types.DenominatorType.Million,
    };

    private static RedirectAction BuildRedirect(HttpRedirectModel redirect)
    {
        var action = new RedirectAction
        {
            ResponseCode = redirect.Code switch
            {
                302 => RedirectAction.Types.RedirectResponseCode.Found,
                303 => RedirectAction.Types.RedirectResponseCode.SeeOther,
                307 => RedirectAction.Types.RedirectResponseCode.TemporaryRedirect,
                308 => RedirectAction.Types.RedirectResponseCode.PermanentRedirect,
                _ => RedirectAction.Types.RedirectResponseCode.MovedPermanently,
            },
        };
        if (redirect.Uri is { } uri)
        {
            action.PathRedirect = uri;
        }
        else if (redirect.PrefixRewrite is { } prefix)
        {
            action.PrefixRewrite = prefix;
        }

        if (redirect.Authority is { } authority)
        {
            action.HostRedirect = authority;
        }

        // As istiod: no explicit :80 for http or :443 for https (the scheme is http unless the redirect sets it).
        if (redirect.Port is { } port && !(port == 80 && (redirect.Scheme ?? "http") == "http") && !(port == 443 && redirect.Scheme == "https"))
        {
            action.PortRedirect = port;
        }

        if (redirect.Scheme is { } scheme)
        {
            action.SchemeRedirect = scheme;
        }

        return action;
    }

    private static void AddHeaderMutations(
        Google.Protobuf.Collections.RepeatedField<HeaderValueOption> add,
        Google.Protobuf.Collections.RepeatedField<string> remove,
        HeaderOperationsModel? operations)
    {
        if (operations is null)
        {
            return;
        }

        // As istiod: set overwrites (or adds), add appends (or adds).
        foreach (var (name, value) in operations.Set)
        {
            add.Add(new HeaderValueOption { Header = new HeaderValue { Key = name, Value = value }, AppendAction = HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExistsOrAdd });
        }

        foreach (var (name, value) in operations.Add)
        {
            add.Add(new HeaderValueOption { Header = new HeaderValue { Key = name, Value = value }, AppendAction = HeaderValueOption.Types.HeaderAppendAction.AppendIfExistsOrAdd });
        }

        remove.AddRange(operations.Remove);
    }

    /// <summary>
    /// The routes a standard gRPC client (grpc-js-xds and the like) gets. It NACKs the whole route configuration for one
    /// redirect or direct response, and it cannot follow a redirect anyway; so such a route keeps its match (the request
    /// never falls through to a later route) and becomes a forward to <paramref name="cluster"/> that a 100 % fault abort
    /// answers with the HTTP status the route would have sent: the client maps it to a gRPC status (gRFC A33: 404 is
    /// UNIMPLEMENTED, 503 UNAVAILABLE, a 3xx or 200 UNKNOWN), exactly as for that HTTP answer from an Envoy. Returns null
    /// when no route needs it.
    /// </summary>
    /// <remarks>
    /// A route with <c>query_parameters</c> is left out: an RPC has no query string, so gRFC A28 tells clients to ignore such a
    /// route, but grpc-js-xds ignores only the condition and would send every matching RPC there.
    /// </remarks>
    public static List<Route>? ForStandardGrpcClients(IReadOnlyList<Route> routes, string cluster)
    {
        ArgumentNullException.ThrowIfNull(routes);
        if (!routes.Any(r => r.ActionCase is Route.ActionOneofCase.Redirect or Route.ActionOneofCase.DirectResponse || r.Match.QueryParameters.Count > 0))
        {
            return null;
        }

        var result = new List<Route>(routes.Count);
        foreach (var route in routes)
        {
            if (route.Match.QueryParameters.Count > 0)
            {
                continue;
            }

            if (route.ActionCase is not (Route.ActionOneofCase.Redirect or Route.ActionOneofCase.DirectResponse))
            {
                result.Add(route);
                continue;
            }

            var status = route.ActionCase == Route.ActionOneofCase.DirectResponse
                ? route.DirectResponse.Status
                : route.Redirect.ResponseCode switch
                {
                    RedirectAction.Types.RedirectResponseCode.Found => 302u,
                    RedirectAction.Types.RedirectResponseCode.SeeOther => 303u,
                    RedirectAction.Types.RedirectResponseCode.TemporaryRedirect => 307u,
                    RedirectAction.Types.RedirectResponseCode.PermanentRedirect => 308u,
                    _ => 301u,
                };
            var replaced = new Route { Name = route.Name, Match = route.Match.Clone(), Route_ = new RouteAction { Cluster = cluster } };
            replaced.TypedPerFilterConfig[XdsWire.FaultFilter] = Any.Pack(new HTTPFault
            {
                Abort = new FaultAbort { HttpStatus = status, Percentage = Fraction(100) },
            });
            result.Add(replaced);
        }

        return result;
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

        // As istiod: method, authority and scheme as pseudo-header matchers after the (sorted) headers; {} is a present_match.
        foreach (var (name, value) in new[] { (":method", match.Method), (":authority", match.Authority), (":scheme", match.Scheme) })
        {
            if (value is not null || match.PresentPseudoHeaders.Contains(name))
            {
                result.Headers.Add(BuildHeader(name, value, invert: false));
            }
        }

        foreach (var query in match.QueryParams)
        {
            var matcher = new QueryParameterMatcher { Name = query.Name };
            if (query.Value is null)
            {
                matcher.PresentMatch = true;
            }
            else
            {
                matcher.StringMatch = ToStringMatcher(query.Value);
            }

            result.QueryParameters.Add(matcher);
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

        matcher.StringMatch = ToStringMatcher(value);

        // Istio: "without header x = v" also holds when x is absent.
        matcher.TreatMissingHeaderAsEmpty = invert;
        return matcher;
    }

    private static StringMatcher ToStringMatcher(RouteStringMatch value) => value.Kind switch
    {
        RouteStringMatchKind.Exact => new StringMatcher { Exact = value.Value },
        RouteStringMatchKind.Prefix => new StringMatcher { Prefix = value.Value },
        _ => new StringMatcher { SafeRegex = new RegexMatcher { Regex = value.Value } },
    };

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
            if (XdsTranslator.BuildHashPolicy(ConsistentHashOf(destination, port)) is { } hashPolicy && !action.HashPolicy.Contains(hashPolicy))
            {
                action.HashPolicy.Add(hashPolicy);
            }
        }

        foreach (var mirror in http.Mirrors)
        {
            // Istio ≥ 1.28 no longer appends "-shadow" to the mirrored authority (DISABLE_SHADOW_HOST_SUFFIX).
            action.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy
            {
                Cluster = ClusterFor(mirror.Destination, port),
                RuntimeFraction = new RuntimeFractionalPercent { DefaultValue = Fraction(mirror.Percent) },
                TraceSampled = false,
                DisableShadowHostSuffixAppend = true,
            });
        }

        if (http.Rewrite is { Uri: { } uri })
        {
            action.PrefixRewrite = uri;
        }

        if (http.Rewrite is { RegexMatch: { } pattern, RegexSubstitution: { } substitution })
        {
            action.RegexRewrite = new RegexMatchAndSubstitute { Pattern = new RegexMatcher { Regex = pattern }, Substitution = substitution };
        }

        if ((http.Rewrite?.Authority ?? http.Headers?.Authority) is { } authority)
        {
            action.HostRewriteLiteral = authority;
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

        // Without retryOn, istiod's default policy: retriable-status-codes with no codes (it dropped [503] in Istio 1.24,
        // and the EXCLUDE_503_FROM_DEFAULT_RETRIES switch back in 1.27: a 503 may have been processed, and resending it
        // amplifies an overload).
        var tokens = new List<string>();
        foreach (var raw in (retries.RetryOn ?? DefaultRetryOn).Split(','))
        {
            var token = raw.Trim();
            if (YamlConfigLoader.TryParseHttpStatus(token, out var code))
            {
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
        if (retries.Backoff is { } backoff)
        {
            // As istiod: the base interval only; Envoy and Mesh clients cap the back-off at 10 × base.
            policy.RetryBackOff = new RetryPolicy.Types.RetryBackOff { BaseInterval = Duration.FromTimeSpan(backoff) };
        }

        if (retries.IgnorePreviousHosts)
        {
            // istiod sets the predicate for an explicit true even where a consistent hash would leave it out.
            policy.RetryHostPredicate.Add(PreviousHostsPredicate());
        }

        return policy;
    }

    private ConsistentHashModel? ConsistentHashOf(RouteDestinationModel destination, uint routePort)
    {
        if (!_services.TryGetValue(destination.Host, out var service))
        {
            return null;
        }

        var port = destination.Port
            ?? (_ports.TryGetValue(destination.Host, out var ports) && ports.Length == 1 ? ports[0].Number : routePort);
        var subset = destination.Subset is null ? null : service.Subsets.FirstOrDefault(s => s.Name == destination.Subset);
        return XdsTranslator.ConsistentHashFor(service, subset, port);
    }

    /// <summary>
    /// The route configuration for standard xDS clients (grpc-js-xds, Envoy): every forwarding route that carries no
    /// retry policy gets istiod's default (retry/retry.go DefaultPolicy: 2 retries on connect-failure, refused-stream,
    /// unavailable, cancelled; host_selection_retry_max_attempts 5; the previous_hosts predicate unless the single
    /// destination hashes consistently). A VirtualService's <c>retries</c> starts from that default too, as istiod's
    /// newRetryPolicy: its own fields plus host_selection_retry_max_attempts and the predicate; <c>attempts: 0</c> (an
    /// empty retry_on) is kept as it is. Mesh clients get the configuration without these: for them a route without a
    /// policy means "Mesh:Resilience decides", and every retry already avoids the endpoints earlier attempts took.
    /// </summary>
    public static RouteConfiguration WithIstioDefaultRetries(RouteConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var result = configuration.Clone();
        foreach (var virtualHost in result.VirtualHosts)
        {
            foreach (var route in virtualHost.Routes)
            {
                if (route.Route_ is not { } action)
                {
                    continue;
                }

                // istiod's "consistent hash": a single destination (not a split) with a hash policy (route.go
                // applyHTTPRouteDestination); then no previous_hosts predicate, so a retry may return to the same host.
                var consistentHash = action.ClusterSpecifierCase == RouteAction.ClusterSpecifierOneofCase.Cluster && action.HashPolicy.Count > 0;
                if (action.RetryPolicy is null)
                {
                    action.RetryPolicy = IstioDefaultRetryPolicy(consistentHash);
                }
                else if (action.RetryPolicy.NumRetries is not null)
                {
                    var defaults = IstioDefaultRetryPolicy(consistentHash);
                    action.RetryPolicy.HostSelectionRetryMaxAttempts = defaults.HostSelectionRetryMaxAttempts;
                    if (action.RetryPolicy.RetryHostPredicate.Count == 0)
                    {
                        action.RetryPolicy.RetryHostPredicate.Add(defaults.RetryHostPredicate);
                    }
                }
            }
        }

        return result;
    }

    /// <summary>istiod's default retry policy (retry/retry.go DefaultPolicy and DefaultConsistentHashPolicy).</summary>
    public static RetryPolicy IstioDefaultRetryPolicy(bool consistentHash)
    {
        var policy = new RetryPolicy
        {
            NumRetries = 2,
            RetryOn = DefaultRetryOn,
            HostSelectionRetryMaxAttempts = 5,
        };

        if (!consistentHash)
        {
            // An empty PreviousHostsPredicate; clients that do not know it ignore it (grpc-js, per gRFC A44).
            policy.RetryHostPredicate.Add(PreviousHostsPredicate());
        }

        return policy;
    }

    private static RetryPolicy.Types.RetryHostPredicate PreviousHostsPredicate() => new()
    {
        Name = PreviousHostsPredicateName,
        TypedConfig = new Any { TypeUrl = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate" },
    };

    private string ClusterFor(RouteDestinationModel destination, uint routePort)
    {
        // As istiod's GetDestinationCluster: the destination's port, else its only port, else the request's (route's) port;
        // the loader checks that a multi-port destination has every port its VirtualService's hosts are called on.
        var port = destination.Port
            ?? (_ports.TryGetValue(destination.Host, out var ports) && ports.Length == 1 ? ports[0].Number : routePort);
        return XdsTranslator.ClusterName(port, destination.Host, destination.Subset);
    }
}
