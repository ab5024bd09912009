using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Authorization;
using Mesh.Client.Security;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

public sealed class InboundPolicyDecoderTests
{
    [Theory]
    [InlineData(true, false, "Strict")]
    [InlineData(true, true, "Permissive")]
    [InlineData(false, true, "Disable")]
    public void TryDecode_FilterChains_GiveMode(bool tls, bool plaintext, string mode)
    {
        var expected = System.Enum.Parse<PeerAuthenticationMode>(mode);
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([], 9000, tls, plaintext), out var policy, out var errors), string.Join("; ", errors));
        Assert.Equal(expected, policy.Mode);
        Assert.Equal(9000, policy.Port);
        Assert.False(policy.HasRules);
    }

    [Fact]
    public void TryDecode_DenyAndAllowFilters_BuildsBothEngines()
    {
        var listener = Listener([Deny("d", Rule()), Allow("a", Rule(), Rule())]);
        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out _));
        Assert.Equal(["ns[default]-policy[d]-rule[0]"], policy.Deny!.PolicyNames.ToArray());
        Assert.Equal(["ns[default]-policy[a]-rule[0]", "ns[default]-policy[a]-rule[1]"], policy.Allow!.PolicyNames.ToArray());
    }

    [Fact]
    public void TryDecode_UnsupportedPrincipal_ErrorNamesFieldPath()
    {
        var allow = new RBAC { Action = RBAC.Types.Action.Allow };
        allow.Policies["p"] = new Policy
        {
            Permissions = { new Permission { Any = true } },
            Principals = { new Principal { OrIds = new Principal.Types.Set { Ids = { new Principal { SourceIp = new Mesh.Xds.Envoy.Config.Core.V3.CidrRange { AddressPrefix = "10.0.0.0" } } } } } },
        };

        Assert.False(InboundPolicyDecoder.TryDecode(Listener(null, allow), out var policy, out var errors));
        Assert.Null(policy);
        var error = Assert.Single(errors);
        Assert.Contains("filter_chains[0].filters[0].typed_config.http_filters[0].typed_config.rules.policies[p].principals[0].or_ids.ids[0]: identifier SourceIp is not supported", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryDecode_EmptyStringMatcher_Rejected()
    {
        var deny = new RBAC { Action = RBAC.Types.Action.Deny };
        deny.Policies["p"] = new Policy
        {
            Permissions = { new Permission { UrlPath = new Mesh.Xds.Envoy.Type.Matcher.V3.PathMatcher { Path = new Mesh.Xds.Envoy.Type.Matcher.V3.StringMatcher() } } },
            Principals = { new Principal { Any = true } },
        };

        Assert.False(InboundPolicyDecoder.TryDecode(Listener(deny, null), out _, out var errors));
        Assert.Contains(errors, e => e.Contains("policies[p].permissions[0].url_path.path: no supported match_pattern", StringComparison.Ordinal));
    }

    [Fact]
    public void TryDecode_NoRouterAndOneWayTls_ReportsEveryError()
    {
        var listener = Listener([], tls: true, plaintext: false);
        var chain = listener.FilterChains[0];
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        manager.HttpFilters.Clear();
        chain.Filters[0].TypedConfig = Any.Pack(manager);
        var tls = chain.TransportSocket.TypedConfig.Unpack<DownstreamTlsContext>();
        tls.RequireClientCertificate = false;
        chain.TransportSocket.TypedConfig = Any.Pack(tls);

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.Contains("filter_chains[0].transport_socket.typed_config.require_client_certificate: must be true", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Contains("http_filters: the last filter must be the router", StringComparison.Ordinal));
    }

    [Fact]
    public void TryDecode_ChainsWithDifferentFilters_Rejected()
    {
        var listener = Listener([Deny("d", Rule())]);
        listener.FilterChains[1] = Listener([]).FilterChains[1];

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.Contains("filter_chains[1].filters[0].typed_config.http_filters: must equal those of the first filter chain", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("NONE", false, false, "Reject")]
    [InlineData("BASE", true, false, "Reject")]
    [InlineData("MERGE_SLASHES", true, true, "Reject")]
    [InlineData("DECODE_AND_MERGE_SLASHES", true, true, "Unescape")]
    public void TryDecode_PathNormalizationMode_ReadFromHttpConnectionManager(string mode, bool normalize, bool merge, string escaped)
    {
        Assert.True(Mesh.ControlPlane.Xds.InboundPathSettings.TryParseMode(mode, out var parsed));
        var listener = Listener([Deny("d", Rule())], paths: new Mesh.ControlPlane.Xds.InboundPathSettings(parsed));

        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out var errors), string.Join("; ", errors));
        Assert.Equal(new PathNormalizationOptions(normalize, merge, System.Enum.Parse<EscapedSlashAction>(escaped)), policy.Paths);
    }

    [Fact]
    public void TryDecode_PathFieldsUnset_NormalizesAndRejectsEscapedSlashes()
    {
        var listener = Listener([Deny("d", Rule())]);
        foreach (var chain in listener.FilterChains)
        {
            var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
            manager.NormalizePath = null;
            manager.MergeSlashes = false;
            manager.PathWithEscapedSlashesAction = HttpConnectionManager.Types.PathWithEscapedSlashesAction.ImplementationSpecificDefault;
            chain.Filters[0].TypedConfig = Any.Pack(manager);
        }

        Assert.True(InboundPolicyDecoder.TryDecode(listener, out var policy, out _));
        Assert.Equal(PathNormalizationOptions.Default, policy.Paths);
        Assert.Equal(AuthorizationOutcome.Denied, policy.Authorize("GET", "/x/../y", null, null, null, null).Outcome);
        Assert.Equal(AuthorizationOutcome.BadRequest, policy.Authorize("GET", "/x%2F..", null, null, null, null).Outcome);
    }

    [Fact]
    public void TryDecode_UnescapeAndRedirect_RejectedWithFieldPath()
    {
        var listener = Listener([], tls: false);
        var chain = listener.FilterChains[0];
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        manager.PathWithEscapedSlashesAction = HttpConnectionManager.Types.PathWithEscapedSlashesAction.UnescapeAndRedirect;
        chain.Filters[0].TypedConfig = Any.Pack(manager);

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.Contains("filter_chains[0].filters[0].typed_config.path_with_escaped_slashes_action: UnescapeAndRedirect is not supported", StringComparison.Ordinal));
    }

    [Fact]
    public void TryDecode_ChainsWithDifferentPathNormalization_Rejected()
    {
        var listener = Listener([Deny("d", Rule())]);
        listener.FilterChains[1] = Listener([Deny("d", Rule())], paths: new Mesh.ControlPlane.Xds.InboundPathSettings(Mesh.ControlPlane.Xds.PathNormalizationMode.None)).FilterChains[1];

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.Contains("filter_chains[1].filters[0].typed_config: normalize_path, merge_slashes and path_with_escaped_slashes_action must equal those of the first filter chain", StringComparison.Ordinal));
    }

    [Fact]
    public void TryDecode_NoFilterChains_Rejected()
    {
        var listener = Listener([]);
        listener.FilterChains.Clear();

        Assert.False(InboundPolicyDecoder.TryDecode(listener, out _, out var errors));
        Assert.Contains(errors, e => e.EndsWith("filter_chains: must contain at least one filter chain", StringComparison.Ordinal));
    }

    [Fact]
    public void Store_Replace_SwapsPoliciesAndModes()
    {
        var store = new InboundPolicyStore();
        Assert.Equal(PeerAuthenticationMode.Unset, store.GetMode(8080));
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([], 8080, tls: true, plaintext: false), out var strict, out _));
        Assert.True(InboundPolicyDecoder.TryDecode(Listener([], 9090, tls: false, plaintext: true), out var disabled, out _));

        store.Replace([strict, disabled]);
        Assert.Equal(PeerAuthenticationMode.Strict, store.GetMode(8080));
        Assert.Equal(PeerAuthenticationMode.Disable, ((IPeerAuthenticationModeSource)store).GetMode(9090));

        store.Replace([disabled]);
        Assert.Equal(PeerAuthenticationMode.Unset, store.GetMode(8080));
    }
}
