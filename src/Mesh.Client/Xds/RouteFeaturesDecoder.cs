using System.Collections.Immutable;
using System.Net;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using HTTPFault = Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.HTTPFault;
using FaultAbort = Mesh.Client.Routing.FaultAbort;
using FaultDelay = Mesh.Client.Routing.FaultDelay;
using Mesh.Xds.Envoy.Type.V3;
using Mesh.Xds.Wire;
using EnvoyRoute = Mesh.Xds.Envoy.Config.Route.V3.Route;
using HeaderAppendAction = Mesh.Client.Routing.HeaderAppendAction;

namespace Mesh.Client.Xds;

/// <summary>
/// An RDS route's fault override, mirrors, rewrites, header mutations, redirect and direct response: validated (every
/// part this client cannot apply is an error naming its field, so the route configuration is NACKed rather than applied
/// without it) and turned into <see cref="RouteFeatures"/>.
/// </summary>
internal static class RouteFeaturesDecoder
{
    private static readonly System.Buffers.SearchValues<char> NotInAuthority = System.Buffers.SearchValues.Create("\r\n\0 /@?#\\");

    /// <summary>
    /// Decodes the features of <paramref name="route"/>; null when it has none. With <paramref name="clusters"/> null only
    /// validates; otherwise a mirror whose cluster <paramref name="clusters"/> does not know is left out (Envoy skips a
    /// shadow to an unknown cluster) and the first such cluster is returned in <paramref name="missing"/>.
    /// </summary>
    public static RouteFeatures? Decode(EnvoyRoute route, string where, List<string> errors, ClusterLookup? clusters, out string? missing)
    {
        ArgumentNullException.ThrowIfNull(route);
        ArgumentNullException.ThrowIfNull(errors);
        missing = null;
        var start = errors.Count;
        FaultDelay? delay = null;
        FaultAbort? abort = null;
        foreach (var (name, config) in route.TypedPerFilterConfig)
        {
            DecodeFilterConfig(name, config, $"{where}.typed_per_filter_config['{name}']", errors, ref delay, ref abort);
        }

        var mirrors = ImmutableArray.CreateBuilder<RouteMirror>();
        string? prefixRewrite = null;
        Regex? regexRewrite = null;
        string? substitution = null;
        string? hostRewrite = null;
        if (route.ActionCase == EnvoyRoute.ActionOneofCase.Route_)
        {
            var action = route.Route_;
            for (var i = 0; i < action.RequestMirrorPolicies.Count; i++)
            {
                var policy = action.RequestMirrorPolicies[i];
                var path = $"{where}.route.request_mirror_policies[{i}]";
                if (!string.IsNullOrEmpty(policy.ClusterHeader))
                {
                    errors.Add($"{path}.cluster_header is not supported by this client (name the cluster)");
                }

                if (string.IsNullOrEmpty(policy.Cluster))
                {
                    errors.Add($"{path}.cluster is required");
                    continue;
                }

                // Envoy: without runtime_fraction every request is mirrored; a client without a runtime uses default_value.
                var share = policy.RuntimeFraction is { } fraction ? Share(fraction.DefaultValue, $"{path}.runtime_fraction.default_value", errors) : PerMillion.All;
                if (clusters is null)
                {
                    continue;
                }

                if (!clusters(policy.Cluster, out var cluster))
                {
                    missing ??= policy.Cluster;
                    continue;
                }

                mirrors.Add(new RouteMirror(cluster, share));
            }

            if (action.PrefixRewrite.Length > 0)
            {
                prefixRewrite = action.PrefixRewrite;
            }

            if (action.RegexRewrite is { } regex)
            {
                if (prefixRewrite is not null)
                {
                    errors.Add($"{where}.route: prefix_rewrite and regex_rewrite cannot both be set");
                }

                if (regex.Pattern is null)
                {
                    errors.Add($"{where}.route.regex_rewrite.pattern is required");
                }
                else if (Mesh.Xds.Matching.Re2Regex.TryCompile(regex.Pattern.Regex, ignoreCase: false, fullMatch: false, out var regexError) is { } compiled)
                {
                    // Every match is replaced, as Envoy's regex_rewrite; the pattern is read as RE2 like every other regex.
                    regexRewrite = compiled;
                    substitution = RouteFeatures.ToDotNetSubstitution(regex.Substitution);
                }
                else
                {
                    errors.Add($"{where}.route.regex_rewrite.pattern.regex: {regexError}");
                }
            }

            switch (action.HostRewriteSpecifierCase)
            {
                case RouteAction.HostRewriteSpecifierOneofCase.HostRewriteLiteral:
                    hostRewrite = action.HostRewriteLiteral;
                    // Exactly a host or host:port, as the request's Host header will carry it: "a@b", a bad port or a path
                    // would make every request on the route fail when the header is set.
                    if (hostRewrite.Length == 0 || hostRewrite.AsSpan().IndexOfAny(NotInAuthority) >= 0
                        || !Uri.TryCreate($"http://{hostRewrite}/", UriKind.Absolute, out var parsed)
                        || !string.Equals(parsed.Authority, hostRewrite, StringComparison.OrdinalIgnoreCase) && !string.Equals($"{parsed.Authority}:80", hostRewrite, StringComparison.OrdinalIgnoreCase))
                    {
                        errors.Add($"{where}.route.host_rewrite_literal '{hostRewrite}' is not a host or host:port");
                    }

                    break;
                case RouteAction.HostRewriteSpecifierOneofCase.AutoHostRewrite:
                    errors.Add($"{where}.route.auto_host_rewrite is not supported by this client");
                    break;
                case RouteAction.HostRewriteSpecifierOneofCase.HostRewriteHeader:
                    errors.Add($"{where}.route.host_rewrite_header is not supported by this client");
                    break;
            }
        }

        var requestHeaders = Mutations(route.RequestHeadersToAdd, route.RequestHeadersToRemove, $"{where}.request_headers_to", errors);
        var responseHeaders = Mutations(route.ResponseHeadersToAdd, route.ResponseHeadersToRemove, $"{where}.response_headers_to", errors);
        var redirect = route.ActionCase == EnvoyRoute.ActionOneofCase.Redirect ? DecodeRedirect(route.Redirect, $"{where}.redirect", errors) : null;
        var direct = route.ActionCase == EnvoyRoute.ActionOneofCase.DirectResponse ? DecodeDirectResponse(route.DirectResponse, $"{where}.direct_response", errors) : null;

        if (errors.Count != start)
        {
            return null;
        }

        if (delay is null && abort is null && mirrors.Count == 0 && prefixRewrite is null && regexRewrite is null && hostRewrite is null
            && requestHeaders is null && responseHeaders is null && redirect is null && direct is null)
        {
            return null;
        }

        return new RouteFeatures
        {
            Delay = delay,
            Abort = abort,
            Mirrors = mirrors.ToImmutable(),
            PrefixRewrite = prefixRewrite,
            RegexRewrite = regexRewrite,
            RegexSubstitution = substitution,
            HostRewrite = hostRewrite,
            RequestHeaders = requestHeaders,
            ResponseHeaders = responseHeaders,
            Redirect = redirect,
            DirectResponse = direct,
        };
    }

    private static void DecodeFilterConfig(string name, Any config, string path, List<string> errors, ref FaultDelay? delay, ref FaultAbort? abort)
    {
        var optional = false;
        if (string.Equals(config.TypeUrl, XdsWire.FilterConfigType, StringComparison.Ordinal))
        {
            var wrapper = config.Unpack<FilterConfig>();
            if (wrapper.Disabled)
            {
                return;
            }

            optional = wrapper.IsOptional;
            config = wrapper.Config ?? new Any();
            path += ".config";
        }

        if (!string.Equals(config.TypeUrl, XdsWire.HttpFaultType, StringComparison.Ordinal))
        {
            if (!optional)
            {
                // As grpc-js: an override for a filter this client does not run would be ignored, so it is refused.
                errors.Add($"{path}: type {config.TypeUrl} is not supported by this client (wrap it in a FilterConfig with is_optional to let clients skip it)");
            }

            return;
        }

        var fault = config.Unpack<HTTPFault>();
        XdsResourceDecoder.RejectUnknownFields(fault, path, errors);
        if (fault.Delay is { } faultDelay)
        {
            if (faultDelay.FaultDelaySecifierCase != Mesh.Xds.Envoy.Extensions.Filters.Common.Fault.V3.FaultDelay.FaultDelaySecifierOneofCase.FixedDelay)
            {
                errors.Add($"{path}.delay: only fixed_delay is supported by this client");
            }
            else if (faultDelay.FixedDelay.ToTimeSpan() is var value && value <= TimeSpan.Zero)
            {
                errors.Add($"{path}.delay.fixed_delay must be above 0");
            }
            else
            {
                delay = new FaultDelay(value, Share(faultDelay.Percentage, $"{path}.delay.percentage", errors));
            }
        }

        if (fault.Abort is { } faultAbort)
        {
            var share = Share(faultAbort.Percentage, $"{path}.abort.percentage", errors);
            switch (faultAbort.ErrorTypeCase)
            {
                case Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.FaultAbort.ErrorTypeOneofCase.HttpStatus when faultAbort.HttpStatus is >= 200 and < 600:
                    abort = new FaultAbort((int)faultAbort.HttpStatus, null, share);
                    break;
                case Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.FaultAbort.ErrorTypeOneofCase.HttpStatus:
                    errors.Add($"{path}.abort.http_status {faultAbort.HttpStatus} is not in [200, 600)");
                    break;
                case Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.FaultAbort.ErrorTypeOneofCase.GrpcStatus when faultAbort.GrpcStatus <= 16:
                    abort = new FaultAbort(RouteFeatures.GrpcToHttpStatus((int)faultAbort.GrpcStatus), (int)faultAbort.GrpcStatus, share);
                    break;
                case Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.FaultAbort.ErrorTypeOneofCase.GrpcStatus:
                    errors.Add($"{path}.abort.grpc_status {faultAbort.GrpcStatus} is not a gRPC status code (0-16)");
                    break;
                case Mesh.Xds.Envoy.Extensions.Filters.Http.Fault.V3.FaultAbort.ErrorTypeOneofCase.HeaderAbort:
                    errors.Add($"{path}.abort.header_abort is not supported by this client");
                    break;
                default:
                    errors.Add($"{path}.abort needs http_status or grpc_status");
                    break;
            }
        }

        // Parts that narrow or change the fault: applying it without them would inject where the control plane did not mean to.
        if (fault.UpstreamCluster.Length > 0)
        {
            errors.Add($"{path}.upstream_cluster is not supported by this client");
        }

        if (fault.Headers.Count > 0)
        {
            errors.Add($"{path}.headers is not supported by this client");
        }

        if (fault.DownstreamNodes.Count > 0)
        {
            errors.Add($"{path}.downstream_nodes is not supported by this client");
        }

        if (fault.MaxActiveFaults is not null)
        {
            errors.Add($"{path}.max_active_faults is not supported by this client");
        }

        if (fault.ResponseRateLimit is not null)
        {
            errors.Add($"{path}.response_rate_limit is not supported by this client");
        }

        foreach (var (field, value) in new[]
        {
            ("delay_percent_runtime", fault.DelayPercentRuntime), ("abort_percent_runtime", fault.AbortPercentRuntime),
            ("delay_duration_runtime", fault.DelayDurationRuntime), ("abort_http_status_runtime", fault.AbortHttpStatusRuntime),
            ("max_active_faults_runtime", fault.MaxActiveFaultsRuntime), ("response_rate_limit_percent_runtime", fault.ResponseRateLimitPercentRuntime),
            ("abort_grpc_status_runtime", fault.AbortGrpcStatusRuntime),
        })
        {
            if (value.Length > 0)
            {
                errors.Add($"{path}.{field} is not supported by this client (it has no runtime)");
            }
        }
    }

    /// <summary>
    /// A FractionalPercent as parts per million. A missing one is an error, as in grpc-js: Envoy would read it as 0 % while
    /// a control plane that left it out may have meant every request.
    /// </summary>
    private static PerMillion Share(FractionalPercent? percent, string path, List<string> errors)
    {
        if (percent is null)
        {
            errors.Add($"{path} is required");
            return default;
        }

        ulong scale = percent.Denominator switch
        {
            FractionalPercent.Types.DenominatorType.Hundred => 10_000,
            FractionalPercent.Types.DenominatorType.TenThousand => 100,
            FractionalPercent.Types.DenominatorType.Million => 1,
            _ => 0,
        };
        if (scale == 0)
        {
            errors.Add($"{path}.denominator {percent.Denominator} is not HUNDRED, TEN_THOUSAND or MILLION");
            return default;
        }

        // Envoy: a numerator above the denominator means 100 %.
        return new PerMillion((uint)Math.Min(percent.Numerator * scale, PerMillion.Million));
    }

    private static HeaderMutations? Mutations(
        Google.Protobuf.Collections.RepeatedField<HeaderValueOption> add,
        Google.Protobuf.Collections.RepeatedField<string> remove,
        string path,
        List<string> errors)
    {
        if (add.Count == 0 && remove.Count == 0)
        {
            return null;
        }

        var mutations = ImmutableArray.CreateBuilder<HeaderMutation>(add.Count);
        for (var i = 0; i < add.Count; i++)
        {
            var option = add[i];
            var itemPath = $"{path}_add[{i}]";
            if (option.Header is null || !IsMutableHeader(option.Header.Key))
            {
                errors.Add($"{itemPath}.header.key '{option.Header?.Key}' cannot be set (empty, a pseudo-header, host, or not a header name)");
                continue;
            }

            if (option.Header.Value.AsSpan().IndexOfAny('\r', '\n', '\0') >= 0)
            {
                errors.Add($"{itemPath}.header.value must not contain CR, LF or NUL");
                continue;
            }

            if (FormatHeaderValue(option.Header.Value, $"{itemPath}.header.value", errors) is not { } value)
            {
                continue;
            }

            if (option.Append is not null && option.AppendAction != HeaderValueOption.Types.HeaderAppendAction.AppendIfExistsOrAdd)
            {
                errors.Add($"{itemPath}: append and append_action cannot both be set");
                continue;
            }

            var action = option.Append is { } append
                ? append ? HeaderAppendAction.AppendIfExistsOrAdd : HeaderAppendAction.OverwriteIfExistsOrAdd
                : option.AppendAction switch
                {
                    HeaderValueOption.Types.HeaderAppendAction.AddIfAbsent => HeaderAppendAction.AddIfAbsent,
                    HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExistsOrAdd => HeaderAppendAction.OverwriteIfExistsOrAdd,
                    HeaderValueOption.Types.HeaderAppendAction.OverwriteIfExists => HeaderAppendAction.OverwriteIfExists,
                    _ => HeaderAppendAction.AppendIfExistsOrAdd,
                };
            if (value.Length == 0 && !option.KeepEmptyValue)
            {
                // Envoy drops an empty value unless keep_empty_value.
                continue;
            }

            mutations.Add(new HeaderMutation(option.Header.Key.ToLowerInvariant(), value, action));
        }

        for (var i = 0; i < remove.Count; i++)
        {
            if (!IsMutableHeader(remove[i]))
            {
                errors.Add($"{path}_remove[{i}] '{remove[i]}' cannot be removed (empty, a pseudo-header, host, or not a header name)");
            }
        }

        return new HeaderMutations(mutations.ToImmutable(), [.. remove.Select(r => r.ToLowerInvariant())]);
    }

    /// <summary>
    /// An Envoy header value format read once per snapshot: <c>%%</c> becomes <c>%</c> and <c>%HOSTNAME%</c> this host's
    /// name, as Envoy's formatter; any other operator needs the request or connection, which this client does not
    /// format, so it is an error rather than text Envoy would never send. Null after adding the error.
    /// </summary>
    private static string? FormatHeaderValue(string format, string path, List<string> errors)
    {
        if (!HeaderValueFormat.TryParse(format, out var parts, out var problem))
        {
            errors.Add($"{path} '{format}' is not a valid header value format: {problem}");
            return null;
        }

        var unsupported = parts.Where(p => p.IsOperator && p.Text != HeaderValueFormat.Hostname).Select(p => $"%{p.Text}%").ToList();
        if (unsupported.Count > 0)
        {
            errors.Add($"{path} '{format}': {string.Join(", ", unsupported)} not supported by this client (it expands only %{HeaderValueFormat.Hostname}%)");
            return null;
        }

        return parts.Count == 1 && !parts[0].IsOperator ? parts[0].Text : string.Concat(parts.Select(p => p.IsOperator ? HostName.Value : p.Text));
    }

    /// <summary>Envoy's %HOSTNAME%: gethostname(), the full name (Environment.MachineName stops at the first dot).</summary>
    private static readonly Lazy<string> HostName = new(Dns.GetHostName);

    /// <summary>Envoy refuses to mutate pseudo-headers and Host through these lists (host_rewrite_* changes the authority).</summary>
    private static bool IsMutableHeader(string? name) =>
        !string.IsNullOrEmpty(name) && name[0] != ':' && !string.Equals(name, "host", StringComparison.OrdinalIgnoreCase)
        && name.All(c => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal));

    private static RouteRedirect? DecodeRedirect(RedirectAction redirect, string path, List<string> errors)
    {
        var start = errors.Count;
        string? scheme = redirect.SchemeRewriteSpecifierCase switch
        {
            RedirectAction.SchemeRewriteSpecifierOneofCase.HttpsRedirect when redirect.HttpsRedirect => "https",
            RedirectAction.SchemeRewriteSpecifierOneofCase.SchemeRedirect => redirect.SchemeRedirect.ToLowerInvariant(),
            _ => null,
        };
        if (scheme is not (null or "http" or "https"))
        {
            errors.Add($"{path}.scheme_redirect '{scheme}' is not http or https");
        }

        if (redirect.PortRedirect > 65535)
        {
            errors.Add($"{path}.port_redirect {redirect.PortRedirect} is not a port");
        }

        if (redirect.HostRedirect.Length > 0 && Uri.CheckHostName(redirect.HostRedirect) == UriHostNameType.Unknown)
        {
            errors.Add($"{path}.host_redirect '{redirect.HostRedirect}' is not a host name");
        }

        if (redirect.PathRewriteSpecifierCase == RedirectAction.PathRewriteSpecifierOneofCase.RegexRewrite)
        {
            errors.Add($"{path}.regex_rewrite is not supported by this client (use path_redirect or prefix_rewrite)");
        }

        if (redirect.PathRewriteSpecifierCase == RedirectAction.PathRewriteSpecifierOneofCase.PathRedirect && !redirect.PathRedirect.StartsWith('/'))
        {
            errors.Add($"{path}.path_redirect '{redirect.PathRedirect}' must start with '/'");
        }

        var status = redirect.ResponseCode switch
        {
            RedirectAction.Types.RedirectResponseCode.MovedPermanently => HttpStatusCode.MovedPermanently,
            RedirectAction.Types.RedirectResponseCode.Found => HttpStatusCode.Found,
            RedirectAction.Types.RedirectResponseCode.SeeOther => HttpStatusCode.SeeOther,
            RedirectAction.Types.RedirectResponseCode.TemporaryRedirect => HttpStatusCode.TemporaryRedirect,
            RedirectAction.Types.RedirectResponseCode.PermanentRedirect => HttpStatusCode.PermanentRedirect,
            _ => (HttpStatusCode)0,
        };
        if (status == 0)
        {
            errors.Add($"{path}.response_code {redirect.ResponseCode} is not a known redirect code");
        }

        return errors.Count != start ? null : new RouteRedirect(
            scheme,
            redirect.HostRedirect.Length > 0 ? redirect.HostRedirect : null,
            (int)redirect.PortRedirect,
            redirect.PathRewriteSpecifierCase == RedirectAction.PathRewriteSpecifierOneofCase.PathRedirect ? redirect.PathRedirect : null,
            redirect.PathRewriteSpecifierCase == RedirectAction.PathRewriteSpecifierOneofCase.PrefixRewrite ? redirect.PrefixRewrite : null,
            redirect.StripQuery,
            status);
    }

    private static RouteDirectResponse? DecodeDirectResponse(DirectResponseAction direct, string path, List<string> errors)
    {
        if (direct.Status is < 200 or >= 600)
        {
            errors.Add($"{path}.status {direct.Status} is not in [200, 600)");
            return null;
        }

        byte[]? body = null;
        switch (direct.Body?.SpecifierCase)
        {
            case null or DataSource.SpecifierOneofCase.None:
                break;
            case DataSource.SpecifierOneofCase.InlineBytes:
                body = direct.Body.InlineBytes.ToByteArray();
                break;
            case DataSource.SpecifierOneofCase.InlineString:
                body = System.Text.Encoding.UTF8.GetBytes(direct.Body.InlineString);
                break;
            default:
                errors.Add($"{path}.body: only inline_bytes and inline_string are supported by this client");
                return null;
        }

        return new RouteDirectResponse((HttpStatusCode)direct.Status, body);
    }
}

/// <summary>Finds a cluster of the snapshot being built by name (CDS, or retained from the previous snapshot).</summary>
internal delegate bool ClusterLookup(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out MeshCluster? cluster);
