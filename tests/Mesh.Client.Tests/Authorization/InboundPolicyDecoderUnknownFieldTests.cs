using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Mesh.Client.Authorization;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Rbac.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// RBAC fields the client's proto subset does not model are NACKed with the field named, never skipped. Found in review
/// 2026-12-05: an HTTP RBAC filter with only <c>matcher</c> (Envoy: present and empty = deny all) was read as "no rules"
/// and filtered nothing, and a Policy's <c>condition</c> (ANDed by Envoy) was dropped, widening an ALLOW. Our control plane
/// never sends these; another xDS server might.
/// </summary>
public sealed class InboundPolicyDecoderUnknownFieldTests
{
    private const string Rbac = "Listener xds.istio.io/grpc/lds/inbound/127.0.0.1:8080: filter_chains[0].filters[0].typed_config.http_filters[0].typed_config";

    // Unknown fields as they arrive on the wire: a tag and an (empty) value.
    private static readonly byte[] Field3Empty = [0x1A, 0x00];
    private static readonly byte[] Field4Empty = [0x22, 0x00];
    private static readonly byte[] Field5Empty = [0x2A, 0x00];
    private static readonly byte[] Field11Empty = [0x5A, 0x00];
    private static readonly byte[] Field12Empty = [0x62, 0x00];
    private static readonly byte[] Field14Empty = [0x72, 0x00];
    private static readonly byte[] Field99Varint = [0x98, 0x06, 0x01];

    // Policy.condition = Expr{const_expr{bool_value: false}}: Envoy would never let this ALLOW match.
    private static readonly byte[] ConditionFalse = [0x1A, 0x04, 0x1A, 0x02, 0x10, 0x00];

    public static TheoryData<string, string> Cases => new()
    {
        { "http.matcher", $"{Rbac} (envoy.extensions.filters.http.rbac.v3.RBAC) sets field(s) 4 (matcher)" },
        { "http.shadow_matcher", $"{Rbac} (envoy.extensions.filters.http.rbac.v3.RBAC) sets field(s) 5 (shadow_matcher)" },
        { "rbac.audit_logging_options", $"{Rbac}.rules (envoy.config.rbac.v3.RBAC) sets field(s) 3 (audit_logging_options)" },
        { "policy.condition", $"{Rbac}.rules.policies[p] (envoy.config.rbac.v3.Policy) sets field(s) 3 (condition)" },
        { "policy.checked_condition", $"{Rbac}.rules.policies[p] (envoy.config.rbac.v3.Policy) sets field(s) 4 (checked_condition)" },
        { "permission.matcher", $"{Rbac}.rules.policies[p].permissions[0] (envoy.config.rbac.v3.Permission) sets field(s) 12 (matcher)" },
        { "permission.and_rules.destination_port_range", $"{Rbac}.rules.policies[p].permissions[0].and_rules.rules[0] (envoy.config.rbac.v3.Permission) sets field(s) 11 (destination_port_range)" },
        { "principal.custom", $"{Rbac}.rules.policies[p].principals[0] (envoy.config.rbac.v3.Principal) sets field(s) 14 (custom)" },
        { "principal.not_id.filter_state", $"{Rbac}.rules.policies[p].principals[0].not_id (envoy.config.rbac.v3.Principal) sets field(s) 12 (filter_state)" },
        { "principal.field99", $"{Rbac}.rules.policies[p].principals[0] (envoy.config.rbac.v3.Principal) sets field(s) 99 that this client cannot honour" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void TryDecode_RbacFieldTheClientDoesNotModel_NackNamesTheField(string where, string expected)
    {
        Assert.False(InboundPolicyDecoder.TryDecode(Build(where), out _, out var errors));
        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void TryDecode_SameListenersWithoutTheUnknownFields_Decode()
    {
        // The cases differ from these only by the unknown field, so each NACK above is that field's.
        foreach (var where in new[] { "none", "none.not_id", "none.and_rules" })
        {
            Assert.True(InboundPolicyDecoder.TryDecode(Build(where), out var policy, out var errors), string.Join("; ", errors));
            Assert.NotNull(policy.Allow);
        }
    }

    private static Listener Build(string where)
    {
        var permission = new Permission { Any = true };
        var principal = new Principal { Any = true };
        if (where.EndsWith("and_rules", StringComparison.Ordinal) || where == "permission.and_rules.destination_port_range")
        {
            var inner = where == "permission.and_rules.destination_port_range" ? With(permission, Field11Empty) : permission;
            permission = new Permission { AndRules = new Permission.Types.Set { Rules = { inner } } };
        }
        else if (where == "permission.matcher")
        {
            permission = With(permission, Field12Empty);
        }

        if (where.EndsWith("not_id", StringComparison.Ordinal) || where == "principal.not_id.filter_state")
        {
            var inner = where == "principal.not_id.filter_state" ? With(new Principal { Any = true }, Field12Empty) : new Principal { Any = true };
            principal = new Principal { NotId = inner };
        }
        else if (where == "principal.custom")
        {
            principal = With(principal, Field14Empty);
        }
        else if (where == "principal.field99")
        {
            principal = With(principal, Field99Varint);
        }

        var policy = new Policy { Permissions = { permission }, Principals = { principal } };
        policy = where switch
        {
            "policy.condition" => With(policy, ConditionFalse),
            "policy.checked_condition" => With(policy, Field4Empty),
            _ => policy,
        };
        var rules = new RBAC { Action = RBAC.Types.Action.Allow, Policies = { ["p"] = policy } };
        if (where == "rbac.audit_logging_options")
        {
            rules = With(rules, Field3Empty);
        }

        var http = where switch
        {
            "http.matcher" => With(new HttpRbac(), Field4Empty),
            "http.shadow_matcher" => With(new HttpRbac { Rules = rules }, Field5Empty),
            _ => new HttpRbac { Rules = rules },
        };

        var listener = IstioPolicies.Listener(deny: null, allow: null, tls: true, plaintext: false);
        var chain = listener.FilterChains[0];
        var manager = chain.Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        manager.HttpFilters.Insert(0, new HttpFilter { Name = "envoy.filters.http.rbac", TypedConfig = Any.Pack(http) });
        chain.Filters[0].TypedConfig = Any.Pack(manager);
        return listener;
    }

    private static T With<T>(T message, byte[] unknown)
        where T : IMessage<T>, new() =>
        new MessageParser<T>(() => new T()).ParseFrom([.. message.ToByteArray(), .. unknown]);
}
