using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf.WellKnownTypes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;
using Mesh.Xds.Envoy.Config.Core.V3;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Http.Router.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using Mesh.Xds.Envoy.Extensions.TransportSockets.Tls.V3;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;
using JwtAuthentication = Mesh.Xds.Envoy.Extensions.Filters.Http.JwtAuthn.V3.JwtAuthentication;
using LocalRateLimit = Mesh.Xds.Envoy.Extensions.Filters.Http.LocalRatelimit.V3.LocalRateLimit;
using Route = Mesh.Xds.Envoy.Config.Route.V3.Route;
using SocketAddress = Mesh.Xds.Envoy.Config.Core.V3.SocketAddress;
using Mesh.Xds.Wire;

namespace Mesh.ControlPlane.Xds;

/// <summary>An inbound listener and the SPIFFE IDs it may be served to (the workload whose address:port it describes).</summary>
internal sealed record InboundListener(string Name, Any Resource, ImmutableArray<string> Identities)
{
    public XdsResource Xds { get; } = new(Name, Resource);
}

/// <summary>
/// Builds the server-side (gRFC A36) listener <c>xds.istio.io/grpc/lds/inbound/&lt;ip&gt;:&lt;port&gt;</c> of every workload
/// endpoint: filter chains by PeerAuthentication mode, each with an HttpConnectionManager carrying the jwt_authn filter
/// (RequestAuthentication), the RBAC filters (DENY, then ALLOW) and the router.
/// </summary>
internal static class InboundListenerTranslator
{
    public const string NamePrefix = XdsWire.InboundListenerPrefix;
    public const string RbacFilterName = XdsWire.RbacFilter;
    public const string HttpConnectionManagerName = XdsWire.HttpConnectionManagerFilter;
    public const string TlsTransportSocketName = XdsWire.TlsTransportSocket;
    public const string TlsChainName = "inbound-mtls";
    public const string PlaintextChainName = "inbound-plaintext";

    public static string ListenerName(string address, uint port) => NamePrefix + Mesh.Xds.Wire.XdsWire.InboundAuthority(address, port);

    /// <summary>
    /// One inbound listener per workload address:port (registered, WorkloadEntry or inline endpoint), built from the
    /// workload that owns the address:port and served only to the identities in <see cref="InboundListener.Identities"/>.
    /// Every listener is built now; a snapshot uses <see cref="Prepare"/> instead.
    /// </summary>
    public static FrozenDictionary<string, InboundListener> BuildAll(ModelSnapshot model, IEnumerable<ResolvedService> services, string rootNamespace, string trustDomain = SpiffeId.DefaultTrustDomain, InboundPathSettings? paths = null, IJwksSource? jwks = null) =>
        Prepare(model, services, rootNamespace, trustDomain, paths, jwks).ToFrozenDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);

    /// <summary>
    /// The inbound listeners of <paramref name="model"/>, each built when first asked for (see <see cref="InboundListenerSet"/>):
    /// only a workload asks for its own, so a mesh of 50,000 endpoints does not build 50,000 listeners on every change.
    /// </summary>
    public static InboundListenerSet Prepare(ModelSnapshot model, IEnumerable<ResolvedService> services, string rootNamespace, string trustDomain = SpiffeId.DefaultTrustDomain, InboundPathSettings? paths = null, IJwksSource? jwks = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        paths ??= InboundPathSettings.Default;
        ArgumentNullException.ThrowIfNull(services);
        var resolved = services.ToList();

        // The index of every workload address:port is built when a listener is first asked for, not per snapshot: a
        // change costs it only when some workload holds an inbound listener (once per snapshot, shared by every stream).
        var index = new Lazy<Dictionary<string, (string Address, uint Port, List<WorkloadInstance> Workloads)>>(() => Candidates(model, resolved));
        InboundListener? Build(string name)
        {
            var (address, port, list) = index.Value[name];
            if (Owner(list, resolved, trustDomain) is not var (workload, identities))
            {
                return null;
            }

            var mode = EffectiveMode(model.Config.PeerAuthentications, rootNamespace, workload, port);
            var policies = ApplicablePolicies(model.Config.AuthorizationPolicies, rootNamespace, workload).ToList();
            var jwt = JwtAuthnTranslator.Build(ApplicableRequestAuthentications(model.Config.RequestAuthentications, rootNamespace, workload), jwks);
            var rateLimit = RateLimitFor(model.Config.LocalRateLimitPolicies, resolved, workload, address, port, trustDomain);
            var listener = BuildListener(name, address, port, mode, RbacTranslator.Build(policies, AuthorizationAction.Deny, paths), RbacTranslator.Build(policies, AuthorizationAction.Allow, paths), paths, jwt, rateLimit);
            return new InboundListener(name, Any.Pack(listener), identities);
        }

        ImmutableArray<string>? IdentitiesOf(string name) => Owner(index.Value[name].Workloads, resolved, trustDomain)?.Identities;

        return new InboundListenerSet(() => index.Value.Keys.ToFrozenSet(StringComparer.Ordinal), Build, IdentitiesOf);
    }

    /// <summary>Every workload address:port (an inbound listener name) with the workloads that have it.</summary>
    private static Dictionary<string, (string Address, uint Port, List<WorkloadInstance> Workloads)> Candidates(ModelSnapshot model, List<ResolvedService> resolved)
    {
        var candidates = new Dictionary<string, (string Address, uint Port, List<WorkloadInstance> Workloads)>(StringComparer.Ordinal);
        void Add(string address, uint port, WorkloadInstance workload)
        {
            var name = ListenerName(address, port);
            if (!candidates.TryGetValue(name, out var entry))
            {
                candidates[name] = entry = (address, port, []);
            }

            if (!entry.Workloads.Any(w => ReferenceEquals(w, workload)))
            {
                entry.Workloads.Add(workload);
            }
        }

        foreach (var endpoint in resolved.SelectMany(s => s.Endpoints))
        {
            Add(endpoint.Address, endpoint.Port, endpoint.Workload);
        }

        var workloads = model.Config.WorkloadEntries.Concat(model.Registrations).Concat(model.Config.ServiceEntries.SelectMany(s => s.StaticEndpoints)).Concat(model.Config.InboundOnlyWorkloads);
        foreach (var workload in workloads)
        {
            foreach (var port in workload.Ports.Values)
            {
                Add(workload.Address, port, workload);
            }
        }

        return candidates;
    }

    /// <summary>
    /// The local rate limit of the listener at <paramref name="address"/>:<paramref name="port"/>: the HTTPLocalRateLimitPolicy
    /// of a ServiceEntry that has the address:port as an endpoint. A workload serving several limited services on one
    /// port gets the first policy by file and name (one filter per port, as Linkerd allows one policy per Server). Only a
    /// policy of the owner's namespace applies, as any Istio policy binds workloads of its own namespace: a ServiceEntry
    /// elsewhere that lists someone else's address cannot throttle it.
    /// </summary>
    private static LocalRateLimit? RateLimitFor(IEnumerable<LocalRateLimitPolicyModel> policies, List<ResolvedService> services, WorkloadInstance owner, string address, uint port, string trustDomain)
    {
        var policy = policies
            .Where(p => p.Namespace == owner.Namespace)
            .Where(p => services.Any(s => s.Entry.Namespace == p.Namespace && s.Entry.Name == p.Target && s.Endpoints.Any(e => e.Address == address && e.Port == port)))
            .OrderBy(p => p.File, StringComparer.Ordinal).ThenBy(p => p.Name, StringComparer.Ordinal)
            .FirstOrDefault();
        return policy is null ? null : LocalRateLimitTranslator.Build(policy, trustDomain);
    }

    /// <summary>
    /// Which workload's labels make the listener (its policy), and who may receive it: a WorkloadEntry (or inline endpoint)
    /// declaring a serviceAccount, else the workload registered by a certified identity that may serve the address, else a
    /// static entry without one (served to the identities every service it belongs to runs as). A static entry without a
    /// serviceAccount belongs to those identities: a registration of its address:port by anyone else (which the registry
    /// refuses, but config may change under a live lease) never replaces its labels. A plaintext registration proves no
    /// identity and never makes an inbound listener. Owners that disagree get the listener served to nobody.
    /// </summary>
    private static (WorkloadInstance Workload, ImmutableArray<string> Identities)? Owner(List<WorkloadInstance> candidates, List<ResolvedService> services, string trustDomain)
    {
        var declared = candidates.Where(w => w.Source == EndpointSources.Static && w.ServiceAccount.Length > 0).ToList();
        if (declared.Count > 0)
        {
            return (declared[0], Single(declared, trustDomain));
        }

        var undeclared = candidates.FirstOrDefault(w => w.Source == EndpointSources.Static);
        ImmutableArray<string> undeclaredOwners = [];
        if (undeclared is not null)
        {
            IEnumerable<string>? allowed = null;
            foreach (var service in services.Where(s => s.Endpoints.Any(e => ReferenceEquals(e.Workload, undeclared))).Select(s => s.Entry).Distinct())
            {
                var identities = SpiffeId.AllowedIdentities(service, trustDomain);
                allowed = allowed is null ? identities : allowed.Intersect(identities, StringComparer.Ordinal);
            }

            undeclaredOwners = [.. allowed ?? []];
        }

        var certified = candidates
            .Where(w => w.Source == EndpointSources.Registration && w.CertifiedIdentity)
            .Where(w => undeclared is null || undeclaredOwners.Contains(new WorkloadIdentity(trustDomain, w.Namespace, w.ServiceAccount).SpiffeId, StringComparer.Ordinal))
            .OrderBy(w => w.LeaseId, StringComparer.Ordinal).ToList();
        if (certified.Count > 0)
        {
            return (certified[0], Single(certified, trustDomain));
        }

        return undeclared is null ? null : (undeclared, undeclaredOwners);
    }

    private static ImmutableArray<string> Single(List<WorkloadInstance> owners, string trustDomain)
    {
        var identities = owners.Select(w => new WorkloadIdentity(trustDomain, w.Namespace, w.ServiceAccount).SpiffeId).Distinct(StringComparer.Ordinal).ToList();
        return identities.Count == 1 ? [identities[0]] : [];
    }

    /// <summary>
    /// Istio precedence: workload selector policy, then namespace-wide, then mesh-wide (root namespace); UNSET inherits;
    /// a mesh left unset is PERMISSIVE; portLevelMtls of the workload policy overrides per port (the workload's port,
    /// not the service's). Several policies at one scope: the first by file name, then name, wins (the loader warns).
    /// </summary>
    public static MtlsMode EffectiveMode(IEnumerable<PeerAuthenticationModel> policies, string rootNamespace, WorkloadInstance workload, uint port)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(workload);
        var ordered = InScopeOrder(policies);
        var mode = NamespaceModeOrdered(ordered, rootNamespace, workload.Namespace);
        var selected = ordered.FirstOrDefault(p => p.Namespace == workload.Namespace && p.Selector is not null && HostNames.LabelsMatch(p.Selector, workload.Labels));
        if (selected is not null && selected.Mode != MtlsMode.Unset)
        {
            mode = selected.Mode;
        }

        if (selected is not null && selected.PortLevelMtls.TryGetValue(port, out var portMode) && portMode != MtlsMode.Unset)
        {
            mode = portMode;
        }

        return mode;
    }

    /// <summary>
    /// The mode of a namespace before workload policies (Istio's <c>GetNamespaceMutualTLSMode</c>): its namespace-wide
    /// policy, else the mesh-wide one; UNSET inherits; nothing set is PERMISSIVE.
    /// </summary>
    public static MtlsMode NamespaceMode(IEnumerable<PeerAuthenticationModel> policies, string rootNamespace, string ns)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(ns);
        return NamespaceModeOrdered(InScopeOrder(policies), rootNamespace, ns);
    }

    private static MtlsMode NamespaceModeOrdered(List<PeerAuthenticationModel> ordered, string rootNamespace, string ns)
    {
        var mesh = ordered.FirstOrDefault(p => p.Namespace == rootNamespace && p.Selector is null);
        var local = ordered.FirstOrDefault(p => p.Namespace == ns && p.Selector is null);
        var mode = MtlsMode.Permissive;
        foreach (var candidate in new[] { mesh?.Mode, local?.Mode })
        {
            if (candidate is { } value && value != MtlsMode.Unset)
            {
                mode = value;
            }
        }

        return mode;
    }

    /// <summary>Policies in the root namespace (any workload) or the workload's namespace whose selector matches (or is absent).</summary>
    public static IEnumerable<AuthorizationPolicyModel> ApplicablePolicies(IEnumerable<AuthorizationPolicyModel> policies, string rootNamespace, WorkloadInstance workload)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(workload);
        return policies.Where(p => (p.Namespace == rootNamespace || p.Namespace == workload.Namespace)
            && (p.Selector is null || HostNames.LabelsMatch(p.Selector, workload.Labels)));
    }

    /// <summary>RequestAuthentications in the root namespace (mesh-wide) or the workload's namespace whose selector matches (or is absent); they merge.</summary>
    public static IEnumerable<RequestAuthenticationModel> ApplicableRequestAuthentications(IEnumerable<RequestAuthenticationModel> policies, string rootNamespace, WorkloadInstance workload)
    {
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(workload);
        return policies.Where(p => (p.Namespace == rootNamespace || p.Namespace == workload.Namespace)
            && (p.Selector is null || HostNames.LabelsMatch(p.Selector, workload.Labels)));
    }

    public static Listener BuildListener(string name, string address, uint port, MtlsMode mode, Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? deny, Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? allow, InboundPathSettings? paths = null, JwtAuthentication? jwt = null, LocalRateLimit? rateLimit = null)
    {
        var listener = new Listener
        {
            Name = name,
            Address = new Address { SocketAddress = new SocketAddress { Address = address, PortValue = port } },
        };
        var manager = BuildHttpConnectionManager(deny, allow, paths ?? InboundPathSettings.Default, jwt, rateLimit);
        switch (mode)
        {
            case MtlsMode.Strict:
                // No filter_chain_match: gRPC servers (A36) only match transport_protocol "" or "raw_buffer".
                listener.FilterChains.Add(Chain(TlsChainName, manager, tls: true, transportProtocol: null));
                break;
            case MtlsMode.Disable:
                listener.FilterChains.Add(Chain(PlaintextChainName, manager, tls: false, transportProtocol: null));
                break;
            default:
                listener.FilterChains.Add(Chain(TlsChainName, manager, tls: true, transportProtocol: "tls"));
                listener.FilterChains.Add(Chain(PlaintextChainName, manager, tls: false, transportProtocol: null));
                break;
        }

        return listener;
    }

    public static DownstreamTlsContext BuildDownstreamTlsContext() => new()
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
    };

    private static List<PeerAuthenticationModel> InScopeOrder(IEnumerable<PeerAuthenticationModel> policies) =>
        [.. policies.Order(Comparer<PeerAuthenticationModel>.Create((a, b) => YamlConfigLoader.CompareScopeOrder(a.File, a.Name, b.File, b.Name)))];

    private static HttpConnectionManager BuildHttpConnectionManager(Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? deny, Mesh.Xds.Envoy.Config.Rbac.V3.RBAC? allow, InboundPathSettings paths, JwtAuthentication? jwt, LocalRateLimit? rateLimit)
    {
        var virtualHost = new VirtualHost
        {
            Name = "inbound|http|0",
            Domains = { "*" },
            Routes = { new Route { Match = new RouteMatch { Prefix = string.Empty }, NonForwardingAction = new NonForwardingAction() } },
        };
        var manager = new HttpConnectionManager
        {
            StatPrefix = "inbound",
            RouteConfig = new RouteConfiguration { Name = "inbound|http|0", VirtualHosts = { virtualHost } },
        };
        paths.ApplyTo(manager);
        if (jwt is not null)
        {
            // Before RBAC, as in Istio: RBAC reads the request principal and claims the JWT filter leaves in metadata.
            manager.HttpFilters.Add(new HttpFilter { Name = JwtAuthnTranslator.FilterName, TypedConfig = Any.Pack(jwt) });
        }

        foreach (var rbac in new[] { deny, allow })
        {
            if (rbac is not null)
            {
                manager.HttpFilters.Add(new HttpFilter { Name = RbacFilterName, TypedConfig = Any.Pack(new HttpRbac { Rules = rbac }) });
            }
        }

        if (rateLimit is not null)
        {
            // After RBAC: a request authorization denies never takes a token from the callers it allows.
            manager.HttpFilters.Add(new HttpFilter { Name = LocalRateLimitTranslator.FilterName, TypedConfig = Any.Pack(rateLimit) });
        }

        manager.HttpFilters.Add(new HttpFilter { Name = XdsTranslator.RouterFilterName, TypedConfig = Any.Pack(new Router()) });
        return manager;
    }

    private static FilterChain Chain(string name, HttpConnectionManager manager, bool tls, string? transportProtocol)
    {
        var chain = new FilterChain
        {
            Name = name,
            Filters = { new Filter { Name = HttpConnectionManagerName, TypedConfig = Any.Pack(manager) } },
        };
        if (transportProtocol is not null)
        {
            chain.FilterChainMatch = new FilterChainMatch { TransportProtocol = transportProtocol };
        }

        if (tls)
        {
            chain.TransportSocket = new TransportSocket { Name = TlsTransportSocketName, TypedConfig = Any.Pack(BuildDownstreamTlsContext()) };
        }

        return chain;
    }
}
