using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Google.Protobuf;
using Mesh.Client.Security;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;
using Mesh.Xds.Wire;
using JwtAuthentication = Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;
using LocalRateLimiter = Mesh.Client.Authorization.RateLimit.LocalRateLimiter;

namespace Mesh.Client.Authorization;

/// <summary>
/// Decodes a server-side listener <c>xds.istio.io/grpc/lds/inbound/&lt;ip&gt;:&lt;port&gt;</c> into an <see cref="InboundPolicy"/>:
/// a TLS chain only = STRICT, TLS and plaintext chains = PERMISSIVE, plaintext only = DISABLE; the RBAC filters of the
/// HttpConnectionManager become the DENY and ALLOW engines. Every problem is reported with its field path (for the NACK).
/// </summary>
internal static class InboundPolicyDecoder
{
    public const string NamePrefix = XdsWire.InboundListenerPrefix;
    public const string RbacFilterName = XdsWire.RbacFilter;
    public const string RouterFilterName = XdsWire.RouterFilter;
    public const string TlsTransportSocketName = XdsWire.TlsTransportSocket;

    public static bool IsInboundListenerName(string name) => name is not null && name.StartsWith(NamePrefix, StringComparison.Ordinal);

    public static bool TryDecode(Listener listener, [NotNullWhen(true)] out InboundPolicy? policy, out IReadOnlyList<string> errors, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(listener);
        time ??= TimeProvider.System;
        var list = new List<string>();
        errors = list;
        policy = null;
        var where = $"Listener {listener.Name}";
        if (listener.ApiListener is not null)
        {
            list.Add($"{where}: api_listener: must not be set on a server (inbound) listener");
        }

        if (listener.ListenerFilters.Count > 0)
        {
            list.Add($"{where}: listener_filters: must be empty");
        }

        var port = listener.Address?.SocketAddress?.PortValue ?? 0;
        if (port is < 1 or > 65535)
        {
            list.Add($"{where}: address.socket_address.port_value: must be 1-65535 (got {port.ToString(CultureInfo.InvariantCulture)})");
        }

        var chains = listener.FilterChains.ToList();
        if (listener.DefaultFilterChain is { } defaultChain)
        {
            chains.Add(defaultChain);
        }

        if (chains.Count == 0)
        {
            list.Add($"{where}: filter_chains: must contain at least one filter chain");
        }

        bool tls = false, plaintext = false;
        HttpConnectionManager? first = null;
        for (var i = 0; i < chains.Count; i++)
        {
            var path = i < listener.FilterChains.Count ? $"{where}: filter_chains[{i.ToString(CultureInfo.InvariantCulture)}]" : $"{where}: default_filter_chain";
            var chain = chains[i];
            if (chain.TransportSocket is { } socket)
            {
                tls = true;
                CheckTls(socket, $"{path}.transport_socket", list);
            }
            else
            {
                plaintext = true;
            }

            var manager = Manager(chain, path, list);
            if (manager is null)
            {
                continue;
            }

            if (first is null)
            {
                first = manager;
            }
            else if (!first.HttpFilters.Equals(manager.HttpFilters))
            {
                // One port has one policy: chains differing in their filters would make the decision depend on TLS.
                list.Add($"{path}.filters[0].typed_config.http_filters: must equal those of the first filter chain");
            }
            else if (!Equals(first.NormalizePath, manager.NormalizePath) || first.MergeSlashes != manager.MergeSlashes
                || first.PathWithEscapedSlashesAction != manager.PathWithEscapedSlashesAction)
            {
                list.Add($"{path}.filters[0].typed_config: normalize_path, merge_slashes and path_with_escaped_slashes_action must equal those of the first filter chain");
            }
        }

        RbacEngine? deny = null, allow = null;
        var paths = PathNormalizationOptions.Default;
        Jwt.JwtAuthenticator? jwt = null;
        var rateLimit = new RateLimitSlot(time);
        if (first is not null)
        {
            var path = $"{where}: filter_chains[0].filters[0].typed_config";
            DecodeHttpFilters(first, path + ".http_filters", list, ref deny, ref allow, ref jwt, rateLimit);
            paths = DecodePathOptions(first, path, list);
        }

        if (list.Count > 0)
        {
            return false;
        }

        var mode = tls && plaintext ? PeerAuthenticationMode.Permissive : tls ? PeerAuthenticationMode.Strict : PeerAuthenticationMode.Disable;
        policy = new InboundPolicy(listener.Name, (int)port, mode, deny, allow, paths, jwt, rateLimit.Limiter);
        return true;
    }

    /// <summary>
    /// Envoy's path fields. An unset normalize_path means normalize here (Envoy's own default is off): a listener that
    /// forgets it must not silently turn a DENY on <c>/admin</c> into one that <c>/x/../admin</c> passes.
    /// </summary>
    private static PathNormalizationOptions DecodePathOptions(HttpConnectionManager manager, string path, List<string> errors)
    {
        var escaped = manager.PathWithEscapedSlashesAction switch
        {
            HttpConnectionManager.Types.PathWithEscapedSlashesAction.ImplementationSpecificDefault => EscapedSlashAction.Reject,
            HttpConnectionManager.Types.PathWithEscapedSlashesAction.RejectRequest => EscapedSlashAction.Reject,
            HttpConnectionManager.Types.PathWithEscapedSlashesAction.KeepUnchanged => EscapedSlashAction.Keep,
            HttpConnectionManager.Types.PathWithEscapedSlashesAction.UnescapeAndForward => EscapedSlashAction.Unescape,
            _ => (EscapedSlashAction?)null,
        };
        if (escaped is null)
        {
            // UNESCAPE_AND_REDIRECT (or a value from a newer API): a library inside the app cannot redirect for the proxy.
            errors.Add($"{path}.path_with_escaped_slashes_action: {manager.PathWithEscapedSlashesAction} is not supported; use KEEP_UNCHANGED, REJECT_REQUEST or UNESCAPE_AND_FORWARD");
            escaped = EscapedSlashAction.Reject;
        }

        return new PathNormalizationOptions(manager.NormalizePath ?? true, manager.MergeSlashes, escaped.Value);
    }

    /// <summary>RequestAuthentication: one jwt_authn filter, before the RBAC filters (which read the claims it validates).</summary>
    private static void DecodeJwtFilter(HttpFilter filter, string filterPath, List<string> errors, bool afterRbac, ref Jwt.JwtAuthenticator? jwt)
    {
        if (afterRbac)
        {
            errors.Add($"{filterPath}: the jwt_authn filter must come before the RBAC filters");
        }

        if (jwt is not null)
        {
            errors.Add($"{filterPath}: a second jwt_authn filter is not supported; merge the providers into one filter");
            return;
        }

        try
        {
            jwt = Jwt.JwtAuthenticator.Compile(filter.TypedConfig.Unpack<JwtAuthentication>(), $"{filterPath}.typed_config", errors);
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{filterPath}.typed_config: cannot be decoded: {ex.Message}");
        }
    }

    private static HttpConnectionManager? Manager(FilterChain chain, string path, List<string> errors)
    {
        if (chain.Filters.Count != 1)
        {
            errors.Add($"{path}.filters: must contain exactly one HttpConnectionManager filter (got {chain.Filters.Count.ToString(CultureInfo.InvariantCulture)} filters)");
            return null;
        }

        var filter = chain.Filters[0];
        if (filter.TypedConfig is null || !filter.TypedConfig.Is(HttpConnectionManager.Descriptor))
        {
            errors.Add($"{path}.filters[0].typed_config: must be an HttpConnectionManager (got {filter.TypedConfig?.TypeUrl ?? "nothing"})");
            return null;
        }

        try
        {
            return filter.TypedConfig.Unpack<HttpConnectionManager>();
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{path}.filters[0].typed_config: cannot be decoded: {ex.Message}");
            return null;
        }
    }

    private static void CheckTls(Mesh.Xds.Envoy.Config.Core.V3.TransportSocket socket, string path, List<string> errors)
    {
        if (socket.TypedConfig is null || !socket.TypedConfig.Is(DownstreamTlsContext.Descriptor))
        {
            errors.Add($"{path}.typed_config: must be a DownstreamTlsContext (got {socket.TypedConfig?.TypeUrl ?? "nothing"})");
            return;
        }

        try
        {
            var context = socket.TypedConfig.Unpack<DownstreamTlsContext>();
            if (context.RequireClientCertificate != true)
            {
                errors.Add($"{path}.typed_config.require_client_certificate: must be true (only mTLS is supported on mesh ports)");
            }
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{path}.typed_config: cannot be decoded: {ex.Message}");
        }
    }

    /// <summary>The local_ratelimit filter of the listener while its filters are decoded (one at most).</summary>
    private sealed class RateLimitSlot(TimeProvider time)
    {
        public TimeProvider Time { get; } = time;

        public bool Seen { get; set; }

        public LocalRateLimiter? Limiter { get; set; }
    }

    /// <summary>
    /// Local rate limiting: one local_ratelimit filter, after the RBAC filters (Mesh enforces it after authorization, so
    /// requests RBAC denies never take a token from the callers it allows).
    /// </summary>
    private static void DecodeRateLimitFilter(HttpFilter filter, string filterPath, List<string> errors, RateLimitSlot slot)
    {
        if (slot.Seen)
        {
            errors.Add($"{filterPath}: a second local_ratelimit filter is not supported; merge the limits into one filter");
            return;
        }

        slot.Seen = true;
        try
        {
            slot.Limiter = LocalRateLimiter.Compile(filter.TypedConfig.Unpack<LocalRateLimit>(), $"{filterPath}.typed_config", errors, slot.Time);
        }
        catch (InvalidProtocolBufferException ex)
        {
            errors.Add($"{filterPath}.typed_config: cannot be decoded: {ex.Message}");
        }
    }

    private static void DecodeHttpFilters(HttpConnectionManager manager, string path, List<string> errors, ref RbacEngine? deny, ref RbacEngine? allow, ref Jwt.JwtAuthenticator? jwt, RateLimitSlot rateLimit)
    {
        var filters = manager.HttpFilters;
        if (filters.Count == 0 || filters[^1].Name != RouterFilterName || filters[^1].TypedConfig?.Is(Router.Descriptor) != true)
        {
            errors.Add($"{path}: the last filter must be the router ({RouterFilterName})");
        }

        for (var i = 0; i < filters.Count - 1; i++)
        {
            var filter = filters[i];
            var filterPath = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
            if (filter.TypedConfig?.Is(JwtAuthentication.Descriptor) == true)
            {
                DecodeJwtFilter(filter, filterPath, errors, deny is not null || allow is not null || rateLimit.Seen, ref jwt);
                continue;
            }

            if (filter.TypedConfig?.Is(LocalRateLimit.Descriptor) == true)
            {
                DecodeRateLimitFilter(filter, filterPath, errors, rateLimit);
                continue;
            }

            if (rateLimit.Seen && filter.TypedConfig?.Is(HttpRbac.Descriptor) == true)
            {
                errors.Add($"{filterPath}: the RBAC filters must come before the local_ratelimit filter");
                continue;
            }

            if (filter.TypedConfig?.Is(HttpRbac.Descriptor) != true)
            {
                if (!filter.IsOptional)
                {
                    errors.Add($"{filterPath}: filter {filter.Name} ({filter.TypedConfig?.TypeUrl ?? "no typed_config"}) is not supported on inbound listeners");
                }

                continue;
            }

            HttpRbac config;
            try
            {
                config = filter.TypedConfig.Unpack<HttpRbac>();
            }
            catch (InvalidProtocolBufferException ex)
            {
                errors.Add($"{filterPath}.typed_config: cannot be decoded: {ex.Message}");
                continue;
            }

            // A field this client does not model (matcher: "present and empty, deny all") must not be read as "no rules".
            if (!XdsResourceDecoder.RejectUnknownFields(config, $"{filterPath}.typed_config", errors, RbacEngine.EnvoyHttpRbacFields))
            {
                continue;
            }

            if (config.Rules is null)
            {
                // Envoy: an RBAC filter without rules (and without matcher) does not filter.
                continue;
            }

            var engine = RbacEngine.Compile(config.Rules, $"{filterPath}.typed_config.rules", errors);
            if (engine is null)
            {
                continue;
            }

            if (engine.IsDeny ? deny is not null : allow is not null)
            {
                errors.Add($"{filterPath}: a second {(engine.IsDeny ? "DENY" : "ALLOW")} RBAC filter is not supported; merge the policies into one filter");
            }
            else if (engine.IsDeny)
            {
                deny = engine;
            }
            else
            {
                allow = engine;
            }
        }
    }
}
