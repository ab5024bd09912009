using System.Collections.Frozen;
using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;
using Mesh.Xds.Envoy.Config.Listener.V3;
using Mesh.Xds.Envoy.Extensions.Filters.Network.HttpConnectionManager.V3;
using static Mesh.ControlPlane.Tests.TestModels;
using HttpRbac = Mesh.Xds.Envoy.Extensions.Filters.Http.Rbac.V3.RBAC;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>Whose labels build an inbound listener, and which identity may receive it.</summary>
public sealed class InboundListenerOwnershipTests
{
    private const string Name = "xds.istio.io/grpc/lds/inbound/10.0.0.5:8080";
    private static readonly Dictionary<string, uint> Port = new() { ["http"] = 8080 };

    private static readonly AuthorizationPolicyModel DenyOrders = new("default", "deny-orders", new Dictionary<string, string> { ["app"] = "orders" }.ToImmutableSortedDictionary(StringComparer.Ordinal),
        AuthorizationAction.Deny, [new AuthorizationRule([], [], [])], "a.yaml", 1);

    private static readonly ServiceEntryModel[] Services =
    [
        Service(selector: new Dictionary<string, string> { ["app"] = "orders" }),
        Service("frontend.default.svc.cluster.local", selector: new Dictionary<string, string> { ["app"] = "frontend" }),
    ];

    [Fact]
    public void Translate_WorkloadEntryWithServiceAccount_WinsOverARegistrationOfAnotherIdentity()
    {
        var declared = Workload("10.0.0.5", Port);
        var intruder = Registered("frontend", certified: true);

        var listener = Translate([declared], [intruder])[Name];

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], listener.Identities.ToArray());
        Assert.Equal(["ns[default]-policy[deny-orders]-rule[0]"], DenyPolicies(listener));
    }

    [Fact]
    public void Translate_CertifiedRegistration_ServedToItsIdentityOnly()
    {
        var listener = Translate([], [Registered("orders", certified: true)])[Name];

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], listener.Identities.ToArray());
        Assert.Equal(["ns[default]-policy[deny-orders]-rule[0]"], DenyPolicies(listener));
    }

    [Fact]
    public void Translate_RegistrationByTheServiceIdentityOverStaticEntryWithoutServiceAccount_BuiltFromTheRegistration()
    {
        // The static entry belongs to orders (its service runs as orders): orders' own registration may refine its labels.
        var undeclared = Workload("10.0.0.5", Port, new Dictionary<string, string> { ["app"] = "orders", ["tier"] = "static" }) with { ServiceAccount = string.Empty };

        var listener = Translate([undeclared], [Registered("orders", certified: true)])[Name];

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], listener.Identities.ToArray());
        Assert.Equal(["ns[default]-policy[deny-orders]-rule[0]"], DenyPolicies(listener));
    }

    [Fact]
    public void Translate_RegistrationOfAnotherIdentityOverStaticEntryWithoutServiceAccount_StaticEntryKeepsTheListener()
    {
        // frontend's certified lease on orders' SA-less address (a lease older than the WorkloadEntry, or a registry bug):
        // orders' DENY must not disappear and frontend must not receive orders' listener.
        var undeclared = Workload("10.0.0.5", Port) with { ServiceAccount = string.Empty };

        var listener = Translate([undeclared], [Registered("frontend", certified: true)])[Name];

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], listener.Identities.ToArray());
        Assert.Equal(["ns[default]-policy[deny-orders]-rule[0]"], DenyPolicies(listener));
    }

    [Fact]
    public void Translate_PlaintextRegistrationOnly_NoInboundListener()
    {
        var listeners = Translate([], [Registered("orders", certified: false)]);

        Assert.False(listeners.ContainsKey(Name));
    }

    [Fact]
    public void Translate_StaticEntryWithoutServiceAccount_ServedToTheIdentityItsServiceRunsAs()
    {
        var undeclared = Workload("10.0.0.5", Port) with { ServiceAccount = string.Empty };

        var listener = Translate([undeclared], [])[Name];

        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders"], listener.Identities.ToArray());
    }

    [Fact]
    public void Translate_TwoWorkloadEntriesDeclaringDifferentAccounts_ServedToNobody()
    {
        var orders = Workload("10.0.0.5", Port);
        var other = Workload("10.0.0.5", Port, new Dictionary<string, string> { ["app"] = "frontend" }) with { ServiceAccount = "frontend", Name = "other" };

        var listener = Translate([orders, other], [])[Name];

        Assert.Empty(listener.Identities);
    }

    private static WorkloadInstance Registered(string serviceAccount, bool certified) =>
        Workload("10.0.0.5", Port, new Dictionary<string, string> { ["app"] = serviceAccount }, source: EndpointSources.Registration)
            with { ServiceAccount = serviceAccount, CertifiedIdentity = certified, LeaseId = serviceAccount + "-lease" };

    private static InboundListenerSet Translate(WorkloadInstance[] workloads, WorkloadInstance[] registrations)
    {
        var model = Snapshot(Services, workloads, registrations: registrations);
        model = model with { Config = model.Config with { AuthorizationPolicies = [DenyOrders] } };
        return XdsTranslator.Translate(model, 1).InboundListeners;
    }

    private static List<string> DenyPolicies(InboundListener listener)
    {
        var manager = listener.Resource.Unpack<Listener>().FilterChains[0].Filters[0].TypedConfig.Unpack<HttpConnectionManager>();
        return [.. manager.HttpFilters.Where(f => f.Name == InboundListenerTranslator.RbacFilterName)
            .Select(f => f.TypedConfig.Unpack<HttpRbac>().Rules)
            .Where(r => r.Action == Mesh.Xds.Envoy.Config.Rbac.V3.RBAC.Types.Action.Deny)
            .SelectMany(r => r.Policies.Keys)];
    }
}
