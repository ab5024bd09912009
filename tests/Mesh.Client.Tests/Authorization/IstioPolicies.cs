using System.Collections.Immutable;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.Client.Tests.Authorization;

/// <summary>
/// Builds AuthorizationPolicies as the control plane models them, translates them with the control plane's own
/// <see cref="RbacTranslator"/> (source-linked) and wraps the result in an inbound listener shaped like the one
/// the control plane's InboundListenerTranslator sends.
/// </summary>
internal static class IstioPolicies
{
    public static AuthorizationPolicyModel Allow(string name, params AuthorizationRule[] rules) =>
        new("default", name, null, AuthorizationAction.Allow, [.. rules], "test.yaml", 1);

    public static AuthorizationPolicyModel Deny(string name, params AuthorizationRule[] rules) =>
        new("default", name, null, AuthorizationAction.Deny, [.. rules], "test.yaml", 1);

    public static AuthorizationRule Rule(RuleSource[]? from = null, RuleOperation[]? to = null, RuleCondition[]? when = null) =>
        new([.. from ?? []], [.. to ?? []], [.. when ?? []]);

    public static RuleSource Source(string[]? principals = null, string[]? notPrincipals = null, string[]? namespaces = null, string[]? notNamespaces = null) =>
        new([.. principals ?? []], [.. notPrincipals ?? []], [.. namespaces ?? []], [.. notNamespaces ?? []]);

    public static RuleOperation Operation(
        string[]? methods = null, string[]? notMethods = null, string[]? paths = null, string[]? notPaths = null,
        uint[]? ports = null, uint[]? notPorts = null, string[]? hosts = null, string[]? notHosts = null) =>
        new([.. methods ?? []], [.. notMethods ?? []], [.. paths ?? []], [.. notPaths ?? []], [.. ports ?? []], [.. notPorts ?? []], [.. hosts ?? []], [.. notHosts ?? []]);

    public static RuleCondition Header(string name, string[]? values = null, string[]? notValues = null) =>
        new(ConditionKeys.RequestHeaders, name, [.. values ?? []], [.. notValues ?? []]);

    public static RuleCondition When(string key, string[]? values = null, string[]? notValues = null) =>
        new(key, null, [.. values ?? []], [.. notValues ?? []]);

    /// <summary>The listener for <paramref name="policies"/>, paths handled per <paramref name="paths"/> (the control plane's default when null).</summary>
    public static Listener Listener(IEnumerable<AuthorizationPolicyModel> policies, uint port = 8080, bool tls = true, bool plaintext = true, InboundPathSettings? paths = null)
    {
        var list = policies.ToImmutableArray();
        paths ??= InboundPathSettings.Default;
        return Listener(RbacTranslator.Build(list, AuthorizationAction.Deny, paths), RbacTranslator.Build(list, AuthorizationAction.Allow, paths), port, tls, plaintext, paths);
    }

    public static Listener Listener(Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? deny, Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? allow, uint port = 8080, bool tls = true, bool plaintext = true, InboundPathSettings? paths = null)
    {
        var manager = new HttpConnectionManager
        {
            RouteConfig = new RouteConfiguration
            {
                VirtualHosts =
                {
                    new VirtualHost
                    {
                        Name = "inbound|http|0",
                        Domains = { "*" },
                        Routes = { new Route { Match = new RouteMatch { Prefix = string.Empty }, NonForwardingAction = new NonForwardingAction() } },
                    },
                },
            },
        };
        (paths ?? InboundPathSettings.Default).ApplyTo(manager);
        foreach (var rbac in new[] { deny, allow })
        {
            if (rbac is not null)
            {
                manager.HttpFilters.Add(new HttpFilter { Name = "envoy.filters.http.rbac", TypedConfig = Any.Pack(new HttpRbac { Rules = rbac }) });
            }
        }

        manager.HttpFilters.Add(new HttpFilter { Name = "envoy.filters.http.router", TypedConfig = Any.Pack(new Router()) });
        var listener = new Listener
        {
            Name = $"xds.istio.io/grpc/lds/inbound/127.0.0.1:{port}",
            Address = new Address { SocketAddress = new Mesh.Xds.Envoy.Config.Core.V3.SocketAddress { Address = "127.0.0.1", PortValue = port } },
        };
        if (tls)
        {
            listener.FilterChains.Add(new FilterChain
            {
                Name = "inbound-mtls",
                FilterChainMatch = plaintext ? new FilterChainMatch { TransportProtocol = "tls" } : null,
                Filters = { new Filter { Name = "envoy.filters.network.http_connection_manager", TypedConfig = Any.Pack(manager) } },
                TransportSocket = new TransportSocket
                {
                    Name = "envoy.transport_sockets.tls",
                    TypedConfig = Any.Pack(new DownstreamTlsContext
                    {
                        CommonTlsContext = new CommonTlsContext
                        {
                            TlsCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "default" },
                            ValidationContext = new CertificateValidationContext
                            {
                                CaCertificateProviderInstance = new CertificateProviderPluginInstance { InstanceName = "default", CertificateName = "ROOTCA" },
                            },
                        },
                        RequireClientCertificate = true,
                    }),
                },
            });
        }

        if (plaintext)
        {
            listener.FilterChains.Add(new FilterChain
            {
                Name = "inbound-plaintext",
                Filters = { new Filter { Name = "envoy.filters.network.http_connection_manager", TypedConfig = Any.Pack(manager) } },
            });
        }

        return listener;
    }
}
