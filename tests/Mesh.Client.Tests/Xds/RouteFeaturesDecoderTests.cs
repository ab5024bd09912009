using System.Net;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Common.Fault.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
using static Mesh.Client.Tests.Support.XdsResources;

namespace Mesh.Client.Tests.Xds;

/// <summary>What the client accepts of an RDS route's fault, mirrors, rewrites, header mutations, redirect and direct response, and what it NACKs by name.</summary>
public class RouteFeaturesDecoderTests
{
    private const string Where = "RouteConfiguration outbound|80||orders.default.svc.cluster.local: virtual_hosts[0].routes[0]";

    private static FractionalPercent Percent(uint numerator, FractionalPercent.Types.DenominatorType denominator = FractionalPercent.Types.DenominatorType.Hundred) =>
        new() { Numerator = numerator, Denominator = denominator };

    private static RouteConfiguration WithRoute(Action<Route> configure)
    {
        var routes = Routes("orders");
        configure(routes.VirtualHosts[0].Routes[0]);
        return routes;
    }

    private static List<string> Decode(RouteConfiguration routes)
    {
        var errors = new List<string>();
        XdsResourceDecoder.DecodeAll(XdsTypeUrls.RouteConfiguration, [Any.Pack(routes)], errors);
        return errors;
    }

    private static Any Fault(HTTPFault fault) => Any.Pack(fault);

    [Fact]
    public void Decode_EveryFeature_IsAccepted()
    {
        var routes = WithRoute(route =>
        {
            route.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault
            {
                Delay = new FaultDelay { FixedDelay = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(5)), Percentage = Percent(10) },
                Abort = new FaultAbort { GrpcStatus = 14, Percentage = Percent(1, FractionalPercent.Types.DenominatorType.TenThousand) },
            });
            route.Route_.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy { Cluster = "mirror", RuntimeFraction = new RuntimeFractionalPercent { DefaultValue = Percent(50) } });
            route.Route_.RegexRewrite = new RegexMatchAndSubstitute { Pattern = new RegexMatcher { Regex = "^/a/(.*)$" }, Substitution = "/b/\\1" };
            route.Route_.HostRewriteLiteral = "other:8080";
            route.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x-a", Value = "1" }, AppendAction = HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExistsOrAdd });
            route.RequestHeadersToRemove.Add("x-secret");
            route.ResponseHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x-b", Value = "2" } });
            route.ResponseHeadersToRemove.Add("server");
        });
        routes.VirtualHosts[0].Routes.Add(new Route { Match = new RouteMatch { Prefix = "/old" }, Redirect = new RedirectAction { PathRedirect = "/new", ResponseCode = RedirectAction.Types.RedirectResponseCode.Found } });
        routes.VirtualHosts[0].Routes.Add(new Route { Match = new RouteMatch { Prefix = "/down" }, DirectResponse = new DirectResponseAction { Status = 503, Body = new DataSource { InlineString = "down" } } });

        Assert.Empty(Decode(routes));
    }

    [Fact]
    public void Decode_FeaturesOfARoute_AreParsedOnce()
    {
        var route = WithRoute(route =>
        {
            route.TypedPerFilterConfig[XdsWire.FaultFilter] = Any.Pack(new FilterConfig
            {
                Config = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(125_000, FractionalPercent.Types.DenominatorType.Million) } }),
            });
            route.Route_.PrefixRewrite = "/v2";
        }).VirtualHosts[0].Routes[0];
        var errors = new List<string>();

        var features = RouteFeaturesDecoder.Decode(route, "r", errors, new Dictionary<string, Mesh.Client.Discovery.MeshCluster>().TryGetValue, out var missing);

        Assert.Empty(errors);
        Assert.Null(missing);
        Assert.Equal(503, features!.Abort!.HttpStatus);
        Assert.Equal(125_000u, features.Abort.Share.Value);
        Assert.Equal("/v2", features.PrefixRewrite);
        Assert.Null(features.Delay);
    }

    [Theory]
    [InlineData("100%%", "100%")]
    [InlineData("%%HOSTNAME%%", "%HOSTNAME%")]
    [InlineData("pod=%HOSTNAME%;", "pod={host};")]
    [InlineData("plain", "plain")]
    public void Decode_HeaderValue_IsAnEnvoyFormatString(string format, string expected)
    {
        var route = WithRoute(route =>
        {
            route.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x-a", Value = format } });
            route.ResponseHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x-b", Value = format } });
        }).VirtualHosts[0].Routes[0];
        var errors = new List<string>();

        var features = RouteFeaturesDecoder.Decode(route, "r", errors, new Dictionary<string, Mesh.Client.Discovery.MeshCluster>().TryGetValue, out _);

        Assert.Empty(errors);
        var value = expected.Replace("{host}", Dns.GetHostName(), StringComparison.Ordinal);
        Assert.Equal(value, Assert.Single(features!.RequestHeaders!.Add).Value);
        Assert.Equal(value, Assert.Single(features.ResponseHeaders!.Add).Value);
    }

    [Fact]
    public void Decode_RouteWithoutFeatures_HasNone()
    {
        var errors = new List<string>();

        Assert.Null(RouteFeaturesDecoder.Decode(Routes("orders").VirtualHosts[0].Routes[0], "r", errors, new Dictionary<string, Mesh.Client.Discovery.MeshCluster>().TryGetValue, out _));
        Assert.Empty(errors);
    }

    public static TheoryData<string, object> Unsupported => new()
    {
        // grpc-js NACKs a fault without percentage; Envoy would read 0 % where the control plane may have meant all.
        { "typed_per_filter_config['envoy.filters.http.fault'].abort.percentage is required", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503 } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].delay.percentage is required", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Delay = new FaultDelay { FixedDelay = Duration.FromTimeSpan(TimeSpan.FromSeconds(1)) } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].abort.header_abort is not supported", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HeaderAbort = new(), Percentage = Percent(1) } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].delay: only fixed_delay is supported", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Delay = new FaultDelay { HeaderDelay = new(), Percentage = Percent(1) } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].abort.http_status 99 is not in [200, 600)", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 99, Percentage = Percent(1) } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].abort.grpc_status 17 is not a gRPC status code", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { GrpcStatus = 17, Percentage = Percent(1) } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].headers is not supported", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(1) }, Headers = { new HeaderMatcher { Name = "x", PresentMatch = true } } }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].max_active_faults is not supported", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(1) }, MaxActiveFaults = 3 }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].abort_percent_runtime is not supported", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(1) }, AbortPercentRuntime = "k" }) ) },
        { "typed_per_filter_config['envoy.filters.http.fault'].abort.percentage.denominator 7 is not", (Action<Route>)(r => r.TypedPerFilterConfig[XdsWire.FaultFilter] = Fault(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(1, (FractionalPercent.Types.DenominatorType)7) } }) ) },

        // Istio's CORS override is not optional: grpc-js NACKs it, and so does this client, which has no CORS filter.
        { "typed_per_filter_config['envoy.filters.http.cors']: type type.googleapis.com/envoy.config.route.v3.CorsPolicy is not supported", (Action<Route>)(r => r.TypedPerFilterConfig["envoy.filters.http.cors"] = new Any { TypeUrl = "type.googleapis.com/envoy.config.route.v3.CorsPolicy" } ) },
        { "route.request_mirror_policies[0].cluster_header is not supported", (Action<Route>)(r => r.Route_.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy { Cluster = "m", ClusterHeader = "x-cluster" }) ) },
        { "route.request_mirror_policies[0].cluster is required", (Action<Route>)(r => r.Route_.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy()) ) },
        { "route.request_mirror_policies[0].runtime_fraction.default_value is required", (Action<Route>)(r => r.Route_.RequestMirrorPolicies.Add(new RouteAction.Types.RequestMirrorPolicy { Cluster = "m", RuntimeFraction = new RuntimeFractionalPercent { RuntimeKey = "k" } }) ) },
        { "route.host_rewrite_header is not supported", (Action<Route>)(r => r.Route_.HostRewriteHeader = "x-host" ) },
        { "route.auto_host_rewrite is not supported", (Action<Route>)(r => r.Route_.AutoHostRewrite = true ) },
        { "route.host_rewrite_literal 'a@b' is not a host or host:port", (Action<Route>)(r => r.Route_.HostRewriteLiteral = "a@b" ) },
        { "route.host_rewrite_literal 'b:99999' is not a host or host:port", (Action<Route>)(r => r.Route_.HostRewriteLiteral = "b:99999" ) },
        { "route: prefix_rewrite and regex_rewrite cannot both be set", (Action<Route>)(r => { r.Route_.PrefixRewrite = "/a"; r.Route_.RegexRewrite = new RegexMatchAndSubstitute { Pattern = new RegexMatcher { Regex = "a" } }; } ) },
        { "route.regex_rewrite.pattern.regex: '(a' is not a valid RE2 regex", (Action<Route>)(r => r.Route_.RegexRewrite = new RegexMatchAndSubstitute { Pattern = new RegexMatcher { Regex = "(a" } } ) },
        { "request_headers_to_add[0].header.key ':path' cannot be set", (Action<Route>)(r => r.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = ":path", Value = "/x" } }) ) },
        { "response_headers_to_remove[0] 'host' cannot be removed", (Action<Route>)(r => r.ResponseHeadersToRemove.Add("host") ) },
        { "request_headers_to_add[0].header.value must not contain CR, LF or NUL", (Action<Route>)(r => r.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x", Value = "a\r\nb: c" } }) ) },
        // Header values are Envoy format strings: a lone % is invalid, and operators other than %HOSTNAME% need the request.
        { "request_headers_to_add[0].header.value '50%' is not a valid header value format: un-escaped %", (Action<Route>)(r => r.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x", Value = "50%" } }) ) },
        { "response_headers_to_add[0].header.value 'a%REQ(x-id)' is not a valid header value format: un-terminated", (Action<Route>)(r => r.ResponseHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x", Value = "a%REQ(x-id)" } }) ) },
        { "request_headers_to_add[0].header.value 'by %DOWNSTREAM_PEER_URI_SAN%': %DOWNSTREAM_PEER_URI_SAN% not supported by this client", (Action<Route>)(r => r.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x", Value = "by %DOWNSTREAM_PEER_URI_SAN%" } }) ) },
        { "request_headers_to_add[0]: append and append_action cannot both be set", (Action<Route>)(r => r.RequestHeadersToAdd.Add(new HeaderValueOption { Header = new HeaderValue { Key = "x", Value = "1" }, Append = true, AppendAction = HeaderValueOption.Types.HeaderAppendAction.AddIfAbsent }) ) },
        { "redirect.regex_rewrite is not supported", (Action<Route>)(r => r.Redirect = new RedirectAction { RegexRewrite = new RegexMatchAndSubstitute { Pattern = new RegexMatcher { Regex = "a" } } } ) },
        { "redirect.scheme_redirect 'ftp' is not http or https", (Action<Route>)(r => r.Redirect = new RedirectAction { SchemeRedirect = "ftp" } ) },
        { "direct_response.status 600 is not in [200, 600)", (Action<Route>)(r => r.DirectResponse = new DirectResponseAction { Status = 600 } ) },
        { "direct_response.body: only inline_bytes and inline_string are supported", (Action<Route>)(r => r.DirectResponse = new DirectResponseAction { Status = 200, Body = new DataSource { Filename = "/etc/passwd" } } ) },
    };

    [Theory]
    [MemberData(nameof(Unsupported))]
    public void Decode_PartTheClientCannotApply_IsNackedNamingTheField(string expected, object configure)
    {
        var errors = Decode(WithRoute((Action<Route>)configure));

        Assert.Contains(errors, e => e.StartsWith($"{Where}.{expected}", StringComparison.Ordinal) || e.StartsWith($"{Where}: {expected}", StringComparison.Ordinal));
    }

    [Fact]
    public void Decode_OptionalOverrideOfAnUnknownFilter_IsSkipped()
    {
        var errors = Decode(WithRoute(r => r.TypedPerFilterConfig["envoy.filters.http.cors"] = Any.Pack(new FilterConfig
        {
            Config = new Any { TypeUrl = "type.googleapis.com/envoy.config.route.v3.CorsPolicy" },
            IsOptional = true,
        })));

        Assert.Empty(errors);
    }

    [Fact]
    public void DecodeListener_FaultFilterBeforeRouter_IsAccepted_AndAListenerWideFaultIsNot()
    {
        var listener = Listener("orders");
        var manager = listener.ApiListener.ApiListener_.Unpack<HttpConnectionManager>();
        manager.HttpFilters.Clear();
        manager.HttpFilters.Add(new HttpFilter { Name = XdsWire.FaultFilter, TypedConfig = Any.Pack(new HTTPFault()) });
        manager.HttpFilters.Add(new HttpFilter { Name = XdsWire.RouterFilter, TypedConfig = Any.Pack(new Router()) });
        listener.ApiListener.ApiListener_ = Any.Pack(manager);
        var errors = new List<string>();
        Assert.NotNull(XdsResourceDecoder.DecodeAll(XdsTypeUrls.Listener, [Any.Pack(listener)], errors));
        Assert.Empty(errors);

        manager.HttpFilters[0].TypedConfig = Any.Pack(new HTTPFault { Abort = new FaultAbort { HttpStatus = 503, Percentage = Percent(1) } });
        listener.ApiListener.ApiListener_ = Any.Pack(manager);

        Assert.Null(XdsResourceDecoder.DecodeAll(XdsTypeUrls.Listener, [Any.Pack(listener)], errors));
        Assert.Contains("a listener-wide fault is not supported by this client", Assert.Single(errors), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/b/\\1", "/b/${1}")]
    [InlineData("/cost$\\2", "/cost$$${2}")]
    [InlineData("a\\\\b", "a\\b")]
    public void ToDotNetSubstitution_Re2CaptureReferences_BecomeDotNet(string re2, string expected) =>
        Assert.Equal(expected, Mesh.Client.Routing.RouteFeatures.ToDotNetSubstitution(re2));

    [Fact]
    public void DirectResponse_InlineBytes_KeepTheBody()
    {
        var route = new Route { Match = new RouteMatch { Prefix = "/" }, DirectResponse = new DirectResponseAction { Status = 418, Body = new DataSource { InlineBytes = ByteString.CopyFromUtf8("teapot") } } };
        var errors = new List<string>();

        var features = RouteFeaturesDecoder.Decode(route, "r", errors, new Dictionary<string, Mesh.Client.Discovery.MeshCluster>().TryGetValue, out _);

        Assert.Equal((HttpStatusCode)418, features!.DirectResponse!.Status);
        Assert.Equal("teapot"u8.ToArray(), features.DirectResponse.Body);
        Assert.True(features.AnswersLocally);
    }
}
