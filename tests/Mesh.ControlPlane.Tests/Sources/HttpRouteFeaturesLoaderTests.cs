using System.Text;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using static Mesh.ControlPlane.Tests.Support.OrdersNames;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>VirtualService http[] fault, mirror(s), rewrite, headers, redirect and directResponse: read, and refused as Istio refuses them.</summary>
public sealed class HttpRouteFeaturesLoaderTests
{
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
          subsets:
          - name: v1
            labels: {version: v1}
          - name: v2
            labels: {version: v2}
        """;

    // Line numbers count from line 1 = apiVersion.
    private const string Features = """
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata: {name: orders}
        spec:
          hosts: [orders]
          http:
          - name: faulty
            match:
            - uri: {prefix: /api}
            fault:
              delay: {fixedDelay: 250ms, percentage: {value: 10}}
              abort: {httpStatus: 503, percentage: {value: 12.5}}
            mirror: {host: orders, subset: v2}
            mirrorPercentage: {value: 50}
            rewrite: {uri: /v2/api, authority: orders-v2.internal}
            headers:
              request:
                set: {x-b: "2", X-A: "1"}
                add: {x-c: "3"}
                remove: [x-secret]
              response:
                set: {x-served-by: mesh}
                remove: [server]
            route:
            - destination: {host: orders, subset: v1}
          - name: moved
            match:
            - uri: {prefix: /old}
            redirect: {uri: /new, authority: new.example, port: 8443, scheme: https, redirectCode: 308}
          - name: maintenance
            match:
            - uri: {prefix: /admin}
            directResponse: {status: 503, body: {string: "down for maintenance"}}
          - name: grpc-fault
            match:
            - uri: {prefix: /demo.Echo/}
            fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
            mirrors:
            - destination: {host: orders, subset: v2}
              percentage: {value: 0.5}
            - destination: {host: orders}
            rewrite:
              uriRegexRewrite: {match: "^/demo.Echo/(.*)$", rewrite: "/demo.Echo2/\\1"}
            route:
            - destination: {host: orders}
          - route:
            - destination: {host: orders}
        """;

    private static YamlLoadResult Load(string virtualService) => YamlConfigLoader.Load([("services.yaml", Services), ("vs.yaml", virtualService)]);

    private static ConfigError SingleError(string virtualService)
    {
        var result = Load(virtualService);
        Assert.True(result.HasErrors);
        return Assert.Single(result.Errors, e => !e.IsWarning);
    }

    [Fact]
    public void Load_EveryFeature_ReadsEveryField()
    {
        var result = Load(Features);

        Assert.Empty(result.Errors);
        var http = Assert.Single(result.Config.VirtualServices).Http;
        var faulty = http[0];
        Assert.Equal(new HttpFaultModel(new FaultDelayModel(TimeSpan.FromMilliseconds(250), 10), new FaultAbortModel(503, null, 12.5)), faulty.Fault);
        Assert.Equal([new HttpMirrorModel(new RouteDestinationModel(Fqdn, "v2", null, 0), 50)], faulty.Mirrors.ToArray());
        Assert.Equal(new HttpRewriteModel("/v2/api", null, null, "orders-v2.internal"), faulty.Rewrite);
        var request = faulty.Headers!.Request!;
        Assert.Equal([new("x-a", "1"), new KeyValuePair<string, string>("x-b", "2")], request.Set.ToArray());
        Assert.Equal([new KeyValuePair<string, string>("x-c", "3")], request.Add.ToArray());
        Assert.Equal(["x-secret"], request.Remove.ToArray());
        Assert.Equal(["server"], faulty.Headers.Response!.Remove.ToArray());
        Assert.Null(faulty.Headers.Authority);

        var moved = http[1];
        Assert.Empty(moved.Destinations);
        Assert.Equal(new HttpRedirectModel("/new", "new.example", 8443, "https", 308), moved.Redirect);

        var maintenance = http[2];
        Assert.Equal(503u, maintenance.DirectResponse!.Status);
        Assert.Equal("down for maintenance", Encoding.UTF8.GetString(maintenance.DirectResponse.Body!));

        var grpc = http[3];
        Assert.Equal(new FaultAbortModel(null, 14, 100), grpc.Fault!.Abort);
        Assert.Equal([0.5, 100], grpc.Mirrors.Select(m => m.Percent).ToArray());
        Assert.Equal(new HttpRewriteModel(null, "^/demo.Echo/(.*)$", "/demo.Echo2/\\1", null), grpc.Rewrite);
    }

    [Fact]
    public void Load_RequestAuthorityHeader_IsAHostRewrite()
    {
        var yaml = Features.Replace("rewrite: {uri: /v2/api, authority: orders-v2.internal}", "rewrite: {uri: /v2/api}", StringComparison.Ordinal)
            .Replace("add: {x-c: \"3\"}", "add: {x-c: \"3\", \":authority\": \"orders-v2.internal\"}", StringComparison.Ordinal);

        var result = Load(yaml);

        Assert.Empty(result.Errors);
        Assert.Equal("orders-v2.internal", result.Config.VirtualServices[0].Http[0].Headers!.Authority);
    }

    [Fact]
    public void Load_HeaderValueFormat_EscapesAndHostnameAreKeptForTheClientToExpand()
    {
        var yaml = Features.Replace("set: {x-served-by: mesh}", "set: {x-served-by: \"%HOSTNAME%\", x-discount: \"100%%\", x-tab: \"a\\tb\"}", StringComparison.Ordinal);

        var result = Load(yaml);

        Assert.Empty(result.Errors);
        Assert.Equal(
            [new("x-discount", "100%%"), new("x-served-by", "%HOSTNAME%"), new KeyValuePair<string, string>("x-tab", "a\tb")],
            result.Config.VirtualServices[0].Http[0].Headers!.Response!.Set.ToArray());
    }

    [Fact]
    public void Load_RedirectPrefixRewrite_ReplacesTheMatchedPrefix()
    {
        var yaml = Features.Replace("redirect: {uri: /new,", "redirect: {prefixRewrite: /new,", StringComparison.Ordinal);

        var result = Load(yaml);

        Assert.Empty(result.Errors);
        Assert.Equal(new HttpRedirectModel(null, "new.example", 8443, "https", 308, "/new"), result.Config.VirtualServices[0].Http[1].Redirect);
    }

    [Fact]
    public void Load_FaultWithoutPercentage_AffectsNoRequestAndWarns()
    {
        var yaml = Features.Replace("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 503}", StringComparison.Ordinal);

        var result = Load(yaml);

        Assert.False(result.HasErrors);
        Assert.Equal(0, result.Config.VirtualServices[0].Http[0].Fault!.Abort!.Percent);
        var warning = Assert.Single(result.Errors);
        Assert.Equal(12, warning.Line);
        Assert.Contains("spec.http[0].fault.abort.percentage: is not set, so no request is affected", warning.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {percentage: {value: 12.5}}", 12, "spec.http[0].fault.abort: needs httpStatus or grpcStatus")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 503, grpcStatus: UNAVAILABLE, percentage: {value: 1}}", 12, "spec.http[0].fault.abort: must set exactly one of httpStatus, grpcStatus and http2Error")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 99, percentage: {value: 12.5}}", 12, "spec.http[0].fault.abort.httpStatus: HTTP status '99' is not in range 200-599")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 600, percentage: {value: 12.5}}", 12, "spec.http[0].fault.abort.httpStatus: HTTP status '600' is not in range 200-599")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 503, percentage: {value: 100.5}}", 12, "spec.http[0].fault.abort.percentage.value: percentage '100.5' is not in range [0, 100]")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 503, percentage: {value: -1}}", 12, "spec.http[0].fault.abort.percentage.value: percentage '-1' is not in range [0, 100]")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {httpStatus: 503, percentage: {value: 0.00001}}", 12, "below 0.0001")]
    [InlineData("abort: {httpStatus: 503, percentage: {value: 12.5}}", "abort: {http2Error: REFUSED_STREAM, percentage: {value: 1}}", 12, "spec.http[0].fault.abort.http2Error: HTTP/2 abort fault injection is not supported")]
    [InlineData("grpcStatus: UNAVAILABLE", "grpcStatus: NOT_A_CODE", 37, "spec.http[3].fault.abort.grpcStatus: gRPC status 'NOT_A_CODE' is not a status name")]
    [InlineData("delay: {fixedDelay: 250ms, percentage: {value: 10}}", "delay: {percentage: {value: 10}}", 11, "spec.http[0].fault.delay.fixedDelay: is required")]
    [InlineData("delay: {fixedDelay: 250ms, percentage: {value: 10}}", "delay: {fixedDelay: 0s, percentage: {value: 10}}", 11, "spec.http[0].fault.delay.fixedDelay: must be at least 1ms")]
    [InlineData("delay: {fixedDelay: 250ms, percentage: {value: 10}}", "delay: {fixedDelay: 1s, exponentialDelay: 1s, percentage: {value: 10}}", 11, "spec.http[0].fault.delay.exponentialDelay: is not supported")]
    [InlineData("delay: {fixedDelay: 250ms, percentage: {value: 10}}", "delay: {fixedDelay: 1s, percent: 101}", 11, "spec.http[0].fault.delay.percent: must be an integer in [0, 100]")]
    [InlineData("    fault:\n      delay: {fixedDelay: 250ms, percentage: {value: 10}}\n      abort: {httpStatus: 503, percentage: {value: 12.5}}", "    fault: {}", 10, "spec.http[0].fault: HTTP fault injection must have an abort and/or a delay")]
    [InlineData("mirrorPercentage: {value: 50}", "mirrorPercentage: {value: 101}", 14, "spec.http[0].mirrorPercentage.value: percentage '101' is not in range [0, 100]")]
    [InlineData("mirrorPercentage: {value: 50}", "mirrorPercentage: {value: 50}\n    mirrors: [{destination: {host: orders}}]", 15, "spec.http[0].mirrors: cannot be used together with mirror")]
    [InlineData("mirror: {host: orders, subset: v2}", "mirror: {host: orders, subset: v9}", 13, "spec.http[0].mirror: subset v9 is not defined by any DestinationRule")]
    [InlineData("mirror: {host: orders, subset: v2}", "mirror: {host: payments}", 13, "spec.http[0].mirror: host payments.default.svc.cluster.local is not declared by any ServiceEntry")]
    [InlineData("mirror: {host: orders, subset: v2}\n    mirrorPercentage: {value: 50}", "mirrorPercentage: {value: 50}", 13, "spec.http[0].mirrorPercentage: applies to mirror, which is not set")]
    [InlineData("    - destination: {host: orders}\n    rewrite:", "    - destination: {host: orders, subset: nope}\n    rewrite:", 41, "spec.http[3].mirrors[1].destination: subset nope is not defined")]
    [InlineData("rewrite: {uri: /v2/api, authority: orders-v2.internal}", "rewrite: {}", 15, "spec.http[0].rewrite: must specify at least one of uri, uriRegexRewrite or authority")]
    [InlineData("rewrite: {uri: /v2/api, authority: orders-v2.internal}", "rewrite: {uri: /v2, uriRegexRewrite: {match: a, rewrite: b}}", 15, "spec.http[0].rewrite: may only contain one of uri and uriRegexRewrite")]
    [InlineData("rewrite: {uri: /v2/api, authority: orders-v2.internal}", "rewrite: {authority: \"bad host!\"}", 15, "spec.http[0].rewrite.authority: 'bad host!' is not a host or host:port")]
    [InlineData("uriRegexRewrite: {match: \"^/demo.Echo/(.*)$\", rewrite: \"/demo.Echo2/\\\\1\"}", "uriRegexRewrite: {match: \"^/demo.Echo/(.*)$\"}", 43, "spec.http[3].rewrite.uriRegexRewrite: requires both match and rewrite")]
    [InlineData("uriRegexRewrite: {match: \"^/demo.Echo/(.*)$\"", "uriRegexRewrite: {match: \"^/demo.Echo/(.*$\"", 43, "spec.http[3].rewrite.uriRegexRewrite.match: '^/demo.Echo/(.*$' is not a valid RE2 regex")]
    [InlineData("remove: [x-secret]", "remove: [\":path\"]", 20, "spec.http[0].headers.request.remove[0]: ':path' cannot be changed here")]
    [InlineData("remove: [server]", "remove: [host]", 23, "spec.http[0].headers.response.remove[0]: 'host' cannot be changed here")]
    [InlineData("set: {x-served-by: mesh}", "set: {\"bad header\": mesh}", 22, "spec.http[0].headers.response.set.bad header: 'bad header' is not a valid HTTP header name")]
    [InlineData("set: {x-served-by: mesh}", "set: {x-served-by: \"a\\r\\nx-evil: 1\"}", 22, "spec.http[0].headers.response.set.x-served-by: header values must not contain control characters")]
    [InlineData("set: {x-served-by: mesh}", "set: {x-served-by: \"a\\x01\"}", 22, "spec.http[0].headers.response.set.x-served-by: header values must not contain control characters")]
    [InlineData("set: {x-served-by: mesh}", "set: {x-discount: 50%}", 22, "spec.http[0].headers.response.set.x-discount: '50%' is not a valid Envoy header value: un-escaped %")]
    [InlineData("add: {x-c: \"3\"}", "add: {x-c: \"abc%123\"}", 19, "spec.http[0].headers.request.add.x-c: 'abc%123' is not a valid Envoy header value: un-terminated %OPERATOR% expression")]
    [InlineData("add: {x-c: \"3\"}", "add: {x-c: \"%START_TIME%%\"}", 19, "spec.http[0].headers.request.add.x-c: '%START_TIME%%' is not a valid Envoy header value: un-escaped %")]
    [InlineData("add: {x-c: \"3\"}", "add: {x-c: \"%DYNAMIC_METADATA([\\\"a\\\" x])%\"}", 19, "spec.http[0].headers.request.add.x-c: '%DYNAMIC_METADATA([\"a\" x])%' is not a valid Envoy header value: expecting ',', ']' or a space")]
    [InlineData("set: {x-b: \"2\", X-A: \"1\"}", "set: {x-b: \"%REQ(x-id)% on %DOWNSTREAM_PEER_URI_SAN%\"}", 18, "spec.http[0].headers.request.set.x-b: %REQ(x-id)%, %DOWNSTREAM_PEER_URI_SAN%: Mesh clients expand only %HOSTNAME% in header values")]
    [InlineData("add: {x-c: \"3\"}", "add: {x-c: \"3\", host: other.example}", 17, "spec.http[0].headers.request: sets :authority/host while rewrite.authority also sets it")]
    [InlineData("redirect: {uri: /new, authority: new.example, port: 8443, scheme: https, redirectCode: 308}", "redirect: {}", 29, "spec.http[1].redirect: redirect must specify uri, prefixRewrite, authority, scheme, or port")]
    [InlineData("redirectCode: 308", "redirectCode: 200", 29, "spec.http[1].redirect.redirectCode: '200' is not a valid redirect code, must be 3xx")]
    [InlineData("redirectCode: 308", "redirectCode: 399", 29, "spec.http[1].redirect.redirectCode: 399 cannot be sent; use one of 301, 302, 303, 307, 308")]
    [InlineData("redirect: {uri: /new,", "redirect: {uri: /new, prefixRewrite: /new,", 29, "spec.http[1].redirect.prefixRewrite: redirect may only specify one of uri or prefixRewrite")]
    [InlineData("redirect: {uri: /new,", "redirect: {prefixRewrite: new,", 29, "spec.http[1].redirect.prefixRewrite: 'new' must start with '/'")]
    [InlineData("- uri: {prefix: /old}\n    redirect: {uri: /new,", "- uri: {exact: /old}\n    redirect: {prefixRewrite: /new,", 29, "spec.http[1].redirect.prefixRewrite: redirect prefixRewrite requires all URI matches to use prefix match type")]
    [InlineData("scheme: https", "scheme: ftp", 29, "spec.http[1].redirect.scheme: invalid redirect scheme, must be \"http\" or \"https\"")]
    [InlineData("port: 8443", "port: 70000", 29, "spec.http[1].redirect.port: must be 1-65535")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    route:\n    - destination: {host: orders}", 29, "spec.http[1].redirect: cannot be used together with route")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}", 29, "spec.http[1].redirect: cannot be used together with fault")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    rewrite: {uri: /x}", 29, "spec.http[1].redirect: cannot be used together with rewrite")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    mirror: {host: orders}", 29, "spec.http[1].redirect: cannot be used together with mirror")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    timeout: 1s", 29, "spec.http[1].redirect: cannot be used together with timeout")]
    [InlineData("redirectCode: 308}", "redirectCode: 308}\n    directResponse: {status: 200}", 30, "spec.http[1].directResponse: cannot be used together with redirect")]
    [InlineData("directResponse: {status: 503, body: {string: \"down for maintenance\"}}", "directResponse: {body: {string: x}}", 33, "spec.http[2].directResponse.status: is required")]
    [InlineData("directResponse: {status: 503,", "directResponse: {status: 600,", 33, "spec.http[2].directResponse.status: HTTP status '600' is not in range 200-599")]
    [InlineData("body: {string: \"down for maintenance\"}", "body: {string: a, bytes: YQ==}", 33, "spec.http[2].directResponse.body: must set exactly one of string and bytes")]
    [InlineData("body: {string: \"down for maintenance\"}", "body: {bytes: \"not base64!\"}", 33, "spec.http[2].directResponse.body.bytes: must be base64")]
    [InlineData("body: {string: \"down for maintenance\"}}", "body: {string: x}}\n    route:\n    - destination: {host: orders}", 33, "spec.http[2].directResponse: cannot be used together with route")]
    [InlineData("    redirect: {uri: /new, authority: new.example, port: 8443, scheme: https, redirectCode: 308}\n", "", 26, "spec.http[1].route: is required (or redirect, or directResponse)")]
    public void Load_BadFeature_IsErrorAtItsLineNamingItsPath(string find, string replace, int line, string expected)
    {
        var yaml = Features.Replace(find, replace, StringComparison.Ordinal);
        Assert.NotEqual(Features, yaml);

        var error = SingleError(yaml);

        Assert.Equal("vs.yaml", error.File);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Equal(line, error.Line);
    }

    [Fact]
    public void Load_DirectResponseBodyOver1MB_IsError()
    {
        var body = new string('x', YamlConfigLoader.MaxDirectResponseBody + 1);
        var yaml = Features.Replace("body: {string: \"down for maintenance\"}", $"body: {{string: \"{body}\"}}", StringComparison.Ordinal);

        var error = SingleError(yaml);

        Assert.Contains("spec.http[2].directResponse.body: is 1048577 bytes; large direct_responses may impact control plane performance, must be less than 1MB", error.Message, StringComparison.Ordinal);
    }
}
