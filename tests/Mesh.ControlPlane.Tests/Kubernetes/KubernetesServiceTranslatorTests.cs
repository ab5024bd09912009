using System.Collections.Immutable;
using k8s.Models;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Tests.Kubernetes;

public sealed class KubernetesServiceTranslatorTests
{
    private const string Domain = "cluster.local";

    [Fact]
    public void Translate_ClusterIpService_HostPortsAndTargetPorts()
    {
        var service = Service("prod", "payments",
            Port(80, "http-web", target: "8080"),
            Port(9000, "grpc", target: "grpc-port"),
            Port(5432, "db"));

        var result = Translate([service], [], []);

        Assert.Empty(result.Errors);
        var entry = Assert.Single(result.Services);
        Assert.Equal("prod", entry.Namespace);
        Assert.Equal("payments", entry.Name);
        Assert.Equal<string>(["payments.prod.svc.cluster.local"], entry.Hosts);
        Assert.Equal("STATIC", entry.Resolution);
        Assert.Equal<ServicePort>(
            [new ServicePort(80, "http-web", "HTTP", 8080), new ServicePort(9000, "grpc", "GRPC", null), new ServicePort(5432, "db", "TCP", 5432)],
            entry.Ports);
        Assert.Equal(new Dictionary<string, string> { [KubernetesServiceTranslator.ServiceNameLabel] = "payments" }, entry.WorkloadSelector);
        Assert.Empty(entry.StaticEndpoints);
    }

    [Fact]
    public void Translate_ClusterDomain_IsTheHostSuffix()
    {
        var result = KubernetesServiceTranslator.Translate([Service("prod", "payments", Port(80, "http"))], [], [], [], "corp.example.");

        Assert.Equal<string>(["payments.prod.svc.corp.example"], Assert.Single(result.Services).Hosts);
    }

    [Theory]
    [InlineData("http", null, "TCP", "HTTP")]
    [InlineData("http-api", null, "TCP", "HTTP")]
    [InlineData("HTTP-api", null, "TCP", "HTTP")]
    [InlineData("http2-api", null, "TCP", "HTTP2")]
    [InlineData("https-admin", null, "TCP", "HTTPS")]
    [InlineData("grpc-orders", null, "TCP", "GRPC")]
    [InlineData("grpc-web-ui", null, "TCP", "GRPC-WEB")]
    [InlineData("GRPC-Web", null, "TCP", "GRPC-WEB")]
    [InlineData("tcp-db", null, "TCP", "TCP")]
    [InlineData("tls-passthrough", null, "TCP", "TLS")]
    [InlineData("redis", null, "TCP", "REDIS")]
    [InlineData("mongo-main", null, "TCP", "MONGO")]
    [InlineData("mysql", null, "TCP", "MYSQL")]
    [InlineData("http_proxy", null, "TCP", "HTTP")]
    // Another spelling is not the prefix: Istio would sniff these, the model says TCP.
    [InlineData("httpapi", null, "TCP", "TCP")]
    [InlineData("web", null, "TCP", "TCP")]
    [InlineData("", null, "TCP", "TCP")]
    [InlineData("api_http", null, "TCP", "TCP")]
    // appProtocol comes first, whatever the name says.
    [InlineData("tcp-db", "http", "TCP", "HTTP")]
    [InlineData("http-web", "tcp", "TCP", "TCP")]
    [InlineData("web", "grpc", "TCP", "GRPC")]
    [InlineData("web", "HTTP2", "TCP", "HTTP2")]
    [InlineData("web", "kubernetes.io/h2c", "TCP", "HTTP2")]
    [InlineData("web", "kubernetes.io/ws", "TCP", "HTTP")]
    [InlineData("web", "kubernetes.io/wss", "TCP", "HTTPS")]
    // Kubernetes' own names are matched exactly, as Istio does.
    [InlineData("http", "kubernetes.io/H2C", "TCP", "TCP")]
    [InlineData("http", "example.com/custom", "TCP", "TCP")]
    // UDP wins over everything.
    [InlineData("http-dns", "http", "UDP", "UDP")]
    [InlineData("dns", null, "udp", "UDP")]
    public void DetectProtocol_AsIstio(string name, string? appProtocol, string transport, string expected)
    {
        Assert.Equal(expected, KubernetesServiceTranslator.DetectProtocol(name, transport, appProtocol));
    }

    [Fact]
    public void Translate_ServicePortAppProtocol_DecidesTheModelProtocol()
    {
        var port = Port(80, "web");
        port.AppProtocol = "kubernetes.io/h2c";

        var result = Translate([Service("prod", "payments", port)], [], []);

        Assert.Equal("HTTP2", Assert.Single(Assert.Single(result.Services).Ports).Protocol);
    }

    [Fact]
    public void Translate_SliceEndpoints_BecomeWorkloadsTheServiceSelects()
    {
        var pod = Pod("prod", "payments-1", "10.0.0.1", "payments-sa", new() { ["app"] = "payments", ["version"] = "v1" });
        var slice = Slice("prod", "payments-abc", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "payments-1"));

        var result = Translate([Service("prod", "payments", Port(80, "http", target: "8080"))], [slice], [pod]);

        Assert.Empty(result.Errors);
        var workload = Assert.Single(result.Workloads);
        Assert.Equal("prod", workload.Namespace);
        Assert.Equal("payments-1", workload.Name);
        Assert.Equal("10.0.0.1", workload.Address);
        Assert.Equal(new Dictionary<string, uint> { ["http"] = 8080 }, workload.Ports);
        Assert.Equal(new Dictionary<string, string> { ["app"] = "payments", ["version"] = "v1", [KubernetesServiceTranslator.ServiceNameLabel] = "payments" }, workload.Labels);
        Assert.Equal("payments-sa", workload.ServiceAccount);
        Assert.Equal(EndpointSources.Static, workload.Source);

        // What the xDS translation makes of it: one endpoint on the slice's port, mTLS, the Pod's identity.
        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        var endpoint = Assert.Single(resolved.Endpoints);
        Assert.Equal((80u, "10.0.0.1", 8080u), (endpoint.ServicePort, endpoint.Address, endpoint.Port));
        Assert.True(XdsTranslator.UsesMutualTls(resolved, 80, [], "istio-system"));
        Assert.Contains("spiffe://cluster.local/ns/prod/sa/payments-sa", XdsTranslator.UpstreamSubjectAltNames(resolved, "cluster.local"));
    }

    [Fact]
    public void Translate_NamedTargetPort_EachSliceSaysItsNumber()
    {
        var service = Service("prod", "payments", Port(80, "http", target: "web"));
        var a = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"));
        var b = Slice("prod", "payments-b", "payments", [SlicePort("http", 9090)], Endpoint("10.0.0.2"));

        var result = Translate([service], [a, b], []);

        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        Assert.Equal([("10.0.0.1", 8080u), ("10.0.0.2", 9090u)], resolved.Endpoints.Select(e => (e.Address, e.Port)).Order());
    }

    [Fact]
    public void Translate_EndpointInTwoSlices_IsOneWorkloadAndOneEndpoint()
    {
        var a = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"), Endpoint("10.0.0.2"));
        var b = Slice("prod", "payments-b", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.2"), Endpoint("10.0.0.3"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [a, b], []);

        Assert.Equal(["10.0.0.1", "10.0.0.2", "10.0.0.3"], result.Workloads.Select(w => w.Address));
        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        Assert.Equal(3, resolved.Endpoints.Length);
    }

    [Fact]
    public void Translate_OneAddressOnOtherPortsInTwoSlices_IsTwoEndpoints()
    {
        // Two servers behind one address (host network, or loopback in a test): kube-proxy's endpoint is ip:port.
        var a = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"));
        var b = Slice("prod", "payments-b", "payments", [SlicePort("http", 8081)], Endpoint("10.0.0.1"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [a, b], []);

        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        Assert.Equal([8080u, 8081u], resolved.Endpoints.Select(e => e.Port).Order());
    }

    [Fact]
    public void Translate_DuplicateWithinOneSlice_IsOneWorkload()
    {
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"), Endpoint("10.0.0.1"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], []);

        Assert.Single(result.Workloads);
    }

    [Fact]
    public void Translate_FqdnSlice_IsSkipped()
    {
        var fqdn = Slice("prod", "payments-fqdn", "payments", [SlicePort("http", 8080)], Endpoint("payments.example.com"));
        fqdn.AddressType = "FQDN";

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [fqdn], []);

        Assert.Empty(result.Errors);
        Assert.Empty(result.Workloads);
        Assert.Single(result.Services);
    }

    [Fact]
    public void Translate_Ipv6Slice_GivesIpv6Workloads()
    {
        var slice = Slice("prod", "payments-v6", "payments", [SlicePort("http", 8080)], Endpoint("fd00::1"));
        slice.AddressType = "IPv6";

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], []);

        Assert.Empty(result.Errors);
        Assert.Equal("fd00::1", Assert.Single(result.Workloads).Address);
    }

    [Theory]
    [InlineData(null, null, null, true)]
    [InlineData(true, null, null, true)]
    [InlineData(true, true, false, true)]
    [InlineData(false, null, null, false)]
    [InlineData(false, true, null, false)]
    // Terminating: never new requests, even when serving, and even when the slice also says ready.
    [InlineData(false, true, true, false)]
    [InlineData(null, null, true, false)]
    [InlineData(true, true, true, false)]
    public void Translate_EndpointConditions_DecideWhetherItIsSent(bool? ready, bool? serving, bool? terminating, bool sent)
    {
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)],
            Endpoint("10.0.0.1", ready: ready, serving: serving, terminating: terminating), Endpoint("10.0.0.2"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], []);

        Assert.Equal(sent, result.Workloads.Any(w => w.Address == "10.0.0.1"));
        Assert.Contains(result.Workloads, w => w.Address == "10.0.0.2");
    }

    [Fact]
    public void Translate_TerminatingCopyInAnotherSlice_WinsOverAReadyCopy()
    {
        var stale = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", ready: true));
        var fresh = Slice("prod", "payments-b", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", ready: false, serving: true, terminating: true));

        foreach (var order in new[] { new[] { stale, fresh }, [fresh, stale] })
        {
            var result = Translate([Service("prod", "payments", Port(80, "http"))], order, []);
            Assert.Empty(result.Workloads);
        }
    }

    [Fact]
    public void Translate_PodBeingDeleted_IsNotSentThoughTheSliceLagsBehind()
    {
        var pod = Pod("prod", "payments-1", "10.0.0.1", "payments");
        pod.Metadata.DeletionTimestamp = DateTime.UtcNow;
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "payments-1", ready: true));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod]);

        Assert.Empty(result.Workloads);
    }

    /// <summary>
    /// A Pod that takes no new request (not ready yet, terminating, being deleted) is no endpoint, but its inbound policy
    /// is still sent: a Pod whose readiness waits for that policy must be able to become ready, and a draining one keeps
    /// enforcing it. Without its Pod (no identity to send the policy to) it is nothing.
    /// </summary>
    [Theory]
    [InlineData(false, null, false)]
    [InlineData(false, true, false)]
    [InlineData(true, true, true)]
    [InlineData(true, null, true)]
    public void Translate_PodTakingNoNewRequest_InboundOnly_NeverAnEndpoint(bool? ready, bool? terminating, bool deleted)
    {
        var pod = Pod("prod", "payments-1", "10.0.0.1", "payments");
        if (deleted)
        {
            pod.Metadata.DeletionTimestamp = DateTime.UtcNow;
        }

        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)],
            Endpoint("10.0.0.1", pod: "payments-1", ready: ready, terminating: terminating), Endpoint("10.0.0.9", pod: "payments-gone", ready: false));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod]);

        Assert.Empty(result.Workloads);
        var inbound = Assert.Single(result.InboundOnly);
        Assert.Equal(("10.0.0.1", "payments", 8080u), (inbound.Address, inbound.ServiceAccount, inbound.Ports["http"]));
        Assert.Empty(result.Errors);
    }

    [Fact]
    public void Translate_PodMissingFromTheCache_StillAnEndpointWithoutIdentityClaim()
    {
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "payments-new"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], []);

        var workload = Assert.Single(result.Workloads);
        Assert.Equal("payments-new", workload.Name);
        Assert.Equal(string.Empty, workload.ServiceAccount);
        Assert.Equal(new Dictionary<string, string> { [KubernetesServiceTranslator.ServiceNameLabel] = "payments" }, workload.Labels);
        Assert.Single(Assert.Single(XdsTranslator.Resolve(Snapshot(result))).Endpoints);
    }

    [Fact]
    public void Translate_PodWithoutServiceAccountName_RunsAsDefault()
    {
        var pod = Pod("prod", "payments-1", "10.0.0.1", serviceAccount: null);
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "payments-1"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod]);

        Assert.Equal("default", Assert.Single(result.Workloads).ServiceAccount);
    }

    [Fact]
    public void Translate_IdentityComesFromThePodOnly()
    {
        // The slice and the Pod's labels claim other accounts; only spec.serviceAccountName counts.
        var pod = Pod("prod", "payments-1", "10.0.0.1", "payments", new() { ["serviceAccount"] = "admin", ["security.istio.io/serviceaccount"] = "admin" });
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "payments-1"));
        slice.Metadata.Labels["serviceAccount"] = "admin";
        slice.Metadata.Annotations = new Dictionary<string, string> { ["alpha.istio.io/kubernetes-serviceaccounts"] = "admin" };

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod]);

        Assert.Equal("payments", Assert.Single(result.Workloads).ServiceAccount);
        var sans = XdsTranslator.UpstreamSubjectAltNames(Assert.Single(XdsTranslator.Resolve(Snapshot(result))), "cluster.local");
        Assert.DoesNotContain("spiffe://cluster.local/ns/prod/sa/admin", sans);
    }

    [Fact]
    public void Translate_SliceNamingAPodWithAnotherAddress_DoesNotBorrowItsIdentityOrLabels()
    {
        // An endpoint at the attacker's address pointing at the admin pod: the admin pod does not have that address.
        var admin = Pod("prod", "admin-1", "10.0.0.9", "admin", new() { ["role"] = "admin" });
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.66", pod: "admin-1"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [admin]);

        var workload = Assert.Single(result.Workloads);
        Assert.Equal(string.Empty, workload.ServiceAccount);
        Assert.DoesNotContain("role", workload.Labels.Keys);
        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Contains("EndpointSlice prod/payments-a", warning.Message, StringComparison.Ordinal);
        Assert.Contains("Pod prod/admin-1 does not have the address 10.0.0.66", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Translate_TargetRefToAPodOfAnotherNamespace_IsNotUsed()
    {
        var pod = Pod("kube-system", "admin-1", "10.0.0.1", "admin", new() { ["role"] = "admin" });
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "admin-1", podNamespace: "kube-system"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod]);

        var workload = Assert.Single(result.Workloads);
        Assert.Equal("prod", workload.Namespace);
        Assert.Equal(string.Empty, workload.ServiceAccount);
        Assert.DoesNotContain("role", workload.Labels.Keys);
        Assert.Contains(result.Errors, e => e.IsWarning && e.Message.Contains("endpoints[].targetRef.namespace", StringComparison.Ordinal));
    }

    [Fact]
    public void Translate_NoTargetRef_ThePodOfTheNamespaceWithTheAddress()
    {
        var pod = Pod("prod", "payments-1", "10.0.0.1", "payments", new() { ["app"] = "payments" });
        var elsewhere = Pod("other", "x-1", "10.0.0.2", "x");
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"), Endpoint("10.0.0.2"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [slice], [pod, elsewhere]);

        Assert.Equal([("10.0.0.1", "payments"), ("10.0.0.2", "")], result.Workloads.Select(w => (w.Address, w.ServiceAccount)));
    }

    [Fact]
    public void Translate_SliceClaimingAServiceOfAnotherNamespace_NeverJoinsIt()
    {
        var victim = Service("prod", "payments", Port(80, "http"));
        var real = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"));
        // Same service-name label, in the attacker's namespace: it belongs to evil/payments, which does not exist.
        var sameName = Slice("evil", "payments-x", "payments", [SlicePort("http", 8080)], Endpoint("10.6.6.6"));
        // Spellings that try to name another namespace: not a Service name at all.
        var slash = Slice("evil", "payments-y", "prod/payments", [SlicePort("http", 8080)], Endpoint("10.6.6.7"));
        var dotted = Slice("evil", "payments-z", "payments.prod", [SlicePort("http", 8080)], Endpoint("10.6.6.8"));

        var result = Translate([victim], [real, sameName, slash, dotted], []);

        Assert.Equal(["10.0.0.1"], result.Workloads.Select(w => w.Address));
        Assert.Equal(["10.0.0.1"], Assert.Single(XdsTranslator.Resolve(Snapshot(result))).Endpoints.Select(e => e.Address));
        Assert.Equal(2, result.Errors.Length);
        Assert.Contains(result.Errors, e => e.Message.StartsWith("EndpointSlice evil/payments-y: metadata.labels[kubernetes.io/service-name]: 'prod/payments' is not a Service name", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.Message.StartsWith("EndpointSlice evil/payments-z: metadata.labels[kubernetes.io/service-name]: 'payments.prod'", StringComparison.Ordinal));
    }

    [Fact]
    public void Translate_PodLabelNamingAnotherService_DoesNotJoinIt()
    {
        // The pod says it is part of payments; its only slice is other's.
        var pod = Pod("prod", "sneaky-1", "10.0.0.7", "sneaky", new() { [KubernetesServiceTranslator.ServiceNameLabel] = "payments" });
        var slice = Slice("prod", "other-a", "other", [SlicePort("http", 8080)], Endpoint("10.0.0.7", pod: "sneaky-1"));

        var result = Translate([Service("prod", "payments", Port(80, "http")), Service("prod", "other", Port(80, "http"))], [slice], [pod]);

        Assert.Equal("other", Assert.Single(result.Workloads).Labels[KubernetesServiceTranslator.ServiceNameLabel]);
        var resolved = XdsTranslator.Resolve(Snapshot(result)).ToDictionary(s => s.Entry.Name);
        Assert.Empty(resolved["payments"].Endpoints);
        Assert.Single(resolved["other"].Endpoints);
    }

    [Fact]
    public void Translate_PodInTwoServices_IsAWorkloadOfEachWithItsPorts()
    {
        var pod = Pod("prod", "p-1", "10.0.0.1", "p");
        var a = Slice("prod", "a-1", "a", [SlicePort("http", 8080)], Endpoint("10.0.0.1", pod: "p-1"));
        var b = Slice("prod", "b-1", "b", [SlicePort("grpc", 9090)], Endpoint("10.0.0.1", pod: "p-1"));

        var result = Translate([Service("prod", "a", Port(80, "http")), Service("prod", "b", Port(90, "grpc"))], [a, b], [pod]);

        var resolved = XdsTranslator.Resolve(Snapshot(result)).ToDictionary(s => s.Entry.Name);
        Assert.Equal(8080u, Assert.Single(resolved["a"].Endpoints).Port);
        Assert.Equal(9090u, Assert.Single(resolved["b"].Endpoints).Port);
    }

    [Fact]
    public void Translate_SliceOfAnUnknownService_IsIgnoredQuietly()
    {
        var slice = Slice("prod", "ghost-a", "ghost", [SlicePort("http", 8080)], Endpoint("10.0.0.1"));
        var unlabelled = Slice("prod", "custom", "x", [SlicePort("http", 8080)], Endpoint("10.0.0.2"));
        unlabelled.Metadata.Labels.Clear();

        var result = Translate([], [slice, unlabelled], []);

        Assert.Empty(result.Workloads);
        Assert.Empty(result.Errors);
    }

    [Fact]
    public void Translate_ServiceWithoutSlices_HasNoEndpoints()
    {
        var result = Translate([Service("prod", "payments", Port(80, "http"))], [], []);

        Assert.Empty(Assert.Single(XdsTranslator.Resolve(Snapshot(result))).Endpoints);
    }

    [Fact]
    public void Translate_Locality_PodLabelThenNode()
    {
        var labelled = Pod("prod", "p-1", "10.0.0.1", "p", new() { ["istio-locality"] = "us-east.us-east-1a.rack1" }, node: "n1");
        var istioLabel = Pod("prod", "p-2", "10.0.0.2", "p", new() { ["topology.istio.io/locality"] = "eu/eu-1b", ["istio-locality"] = "us-east" }, node: "n1");
        var byNode = Pod("prod", "p-3", "10.0.0.3", "p", node: "n1");
        var byBetaNode = Pod("prod", "p-4", "10.0.0.4", "p", node: "n2");
        var noZone = Pod("prod", "p-5", "10.0.0.5", "p", node: "n3");
        var unknownNode = Pod("prod", "p-6", "10.0.0.6", "p", node: "gone");
        var n1 = Node("n1", new() { ["topology.kubernetes.io/region"] = "us-west", ["topology.kubernetes.io/zone"] = "us-west-2b", ["topology.istio.io/subzone"] = "r7" });
        var n2 = Node("n2", new() { ["failure-domain.beta.kubernetes.io/region"] = "ap", ["failure-domain.beta.kubernetes.io/zone"] = "ap-1a" });
        var n3 = Node("n3", new() { ["topology.kubernetes.io/region"] = "sa", ["topology.istio.io/subzone"] = "r1" });
        var slice = Slice("prod", "p-a", "p", [SlicePort("http", 8080)],
            Endpoint("10.0.0.1", pod: "p-1"), Endpoint("10.0.0.2", pod: "p-2"), Endpoint("10.0.0.3", pod: "p-3"),
            Endpoint("10.0.0.4", pod: "p-4"), Endpoint("10.0.0.5", pod: "p-5"), Endpoint("10.0.0.6", pod: "p-6"),
            Endpoint("10.0.0.7", pod: "not-cached", node: "n2"));

        var result = KubernetesServiceTranslator.Translate(
            [Service("prod", "p", Port(80, "http"))], [slice], [labelled, istioLabel, byNode, byBetaNode, noZone, unknownNode], [n1, n2, n3], Domain);

        Assert.Equal(
            ["us-east/us-east-1a/rack1", "eu/eu-1b", "us-west/us-west-2b/r7", "ap/ap-1a", "sa", "", "ap/ap-1a"],
            result.Workloads.Select(w => w.Locality));
    }

    [Fact]
    public void Translate_HeadlessService_IsServedFromItsEndpoints()
    {
        var service = Service("prod", "db", Port(5432, "tcp-pg"));
        service.Spec.ClusterIP = "None";
        var slice = Slice("prod", "db-a", "db", [SlicePort("tcp-pg", 5432)], Endpoint("10.0.0.1"));

        var result = Translate([service], [slice], []);

        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        Assert.Equal("STATIC", resolved.Entry.Resolution);
        Assert.Single(resolved.Endpoints);
    }

    [Fact]
    public void Translate_ExternalNameService_IsADnsEndpointOutsideTheMesh()
    {
        var service = Service("prod", "billing", Port(443, "https"));
        service.Spec.Type = "ExternalName";
        service.Spec.ExternalName = "Billing.Example.com.";
        // Slices of an ExternalName Service are not its endpoints.
        var slice = Slice("prod", "billing-a", "billing", [SlicePort("https", 443)], Endpoint("10.0.0.1"));

        var result = Translate([service], [slice], []);

        Assert.Empty(result.Errors);
        Assert.Empty(result.Workloads);
        var entry = Assert.Single(result.Services);
        Assert.Equal("DNS", entry.Resolution);
        Assert.Null(entry.WorkloadSelector);
        var resolved = Assert.Single(XdsTranslator.Resolve(Snapshot(result)));
        var endpoint = Assert.Single(resolved.Endpoints);
        Assert.Equal(("billing.example.com", 443u), (endpoint.Address, endpoint.Port));
        Assert.False(XdsTranslator.UsesMutualTls(resolved, 443, [], "istio-system"));
    }

    [Fact]
    public void Translate_ExternalNameWithoutName_IsAnError()
    {
        var service = Service("prod", "billing", Port(443, "https"));
        service.Spec.Type = "ExternalName";

        var result = Translate([service], [], []);

        Assert.Empty(result.Services);
        var error = Assert.Single(result.Errors);
        Assert.Equal("Service prod/billing", error.File);
        Assert.Equal("Service prod/billing: spec.externalName: '' must be a DNS name for a Service of type ExternalName; the Service is ignored", error.Message);
    }

    [Theory]
    [InlineData("port", "spec.ports[0].port: 0 must be between 1 and 65535")]
    [InlineData("target", "spec.ports[0].targetPort: 70000 must be between 1 and 65535")]
    [InlineData("unnamed", "spec.ports[1].name: is required when a Service has more than one port")]
    [InlineData("dupname", "spec.ports[1].name: port name 'http' is declared twice")]
    [InlineData("name", "metadata.name: 'Payments' must be a DNS-1035 label")]
    [InlineData("namespace", "metadata.namespace: '' must be a DNS-1123 label")]
    [InlineData("spec", "spec: is required")]
    public void Translate_BadService_ErrorNamesItAndTheFieldAndOnlyItIsSkipped(string fault, string expected)
    {
        var bad = Service("prod", "payments", Port(80, "http"), Port(81, "admin"));
        switch (fault)
        {
            case "port": bad.Spec.Ports[0].Port = 0; break;
            case "target": bad.Spec.Ports[0].TargetPort = "70000"; break;
            case "unnamed": bad.Spec.Ports[1].Name = null; break;
            case "dupname": bad.Spec.Ports[1].Name = "http"; break;
            case "name": bad.Metadata.Name = "Payments"; break;
            case "namespace": bad.Metadata.NamespaceProperty = null; break;
            case "spec": bad.Spec = null; break;
        }

        var good = Service("prod", "orders", Port(80, "http"));
        var slice = Slice("prod", "payments-a", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.1"));

        var result = Translate([bad, good], [slice], []);

        Assert.Equal(["orders"], result.Services.Select(s => s.Name));
        Assert.Empty(result.Workloads);
        var error = Assert.Single(result.Errors);
        Assert.False(error.IsWarning);
        Assert.Equal("Service", error.Kind);
        Assert.StartsWith($"Service {bad.Metadata.NamespaceProperty}/{bad.Metadata.Name}: {expected}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Translate_SamePortForTcpAndUdp_FirstKeptWithAWarning()
    {
        var udp = Port(53, "dns-udp");
        udp.Protocol = "UDP";
        var result = Translate([Service("kube-system", "kube-dns", Port(53, "dns-tcp"), udp)], [], []);

        Assert.Equal<ServicePort>([new ServicePort(53, "dns-tcp", "TCP", 53)], Assert.Single(result.Services).Ports);
        Assert.True(Assert.Single(result.Errors).IsWarning);
    }

    [Fact]
    public void Translate_ServiceWithoutPorts_WarnsAndIsSkipped()
    {
        var result = Translate([Service("prod", "headless")], [], []);

        Assert.Empty(result.Services);
        Assert.Equal("Service prod/headless: spec.ports: has no port; nothing can call the Service through the mesh", Assert.Single(result.Errors).Message);
    }

    [Theory]
    [InlineData("port", "ports[0].port: 70000 must be between 1 and 65535")]
    [InlineData("dupport", "ports[1].name: port name 'http' appears twice")]
    [InlineData("noaddress", "endpoints[0].addresses: must list at least one address")]
    [InlineData("v6in4", "endpoints[0].addresses[0]: 'fd00::1' must be an IPv4 address in canonical form")]
    [InlineData("leadingzero", "endpoints[0].addresses[0]: '10.0.0.01' must be an IPv4 address in canonical form")]
    [InlineData("type", "addressType: 'IPv5' must be IPv4, IPv6 or FQDN")]
    public void Translate_BadSlice_ErrorNamesItAndTheFieldAndOnlyItIsSkipped(string fault, string expected)
    {
        var bad = Slice("prod", "payments-bad", "payments", [SlicePort("http", 8080), SlicePort("grpc", 9090)], Endpoint("10.0.0.1"));
        switch (fault)
        {
            case "port": bad.Ports[0].Port = 70000; break;
            case "dupport": bad.Ports[1].Name = "http"; break;
            case "noaddress": bad.Endpoints[0].Addresses = []; break;
            case "v6in4": bad.Endpoints[0].Addresses = ["fd00::1"]; break;
            case "leadingzero": bad.Endpoints[0].Addresses = ["10.0.0.01"]; break;
            case "type": bad.AddressType = "IPv5"; break;
        }

        var good = Slice("prod", "payments-good", "payments", [SlicePort("http", 8080)], Endpoint("10.0.0.2"));

        var result = Translate([Service("prod", "payments", Port(80, "http"))], [bad, good], []);

        Assert.Equal(["10.0.0.2"], result.Workloads.Select(w => w.Address));
        var error = Assert.Single(result.Errors);
        Assert.False(error.IsWarning);
        Assert.Equal("EndpointSlice", error.Kind);
        Assert.Equal($"EndpointSlice prod/payments-bad: {expected}; the EndpointSlice is ignored", error.Message);
    }

    [Fact]
    public void Translate_DuplicateServiceInTheList_FirstWinsWithAWarning()
    {
        var result = Translate([Service("prod", "payments", Port(80, "http")), Service("prod", "payments", Port(81, "http"))], [], []);

        Assert.Equal(80u, Assert.Single(Assert.Single(result.Services).Ports).Number);
        Assert.True(Assert.Single(result.Errors).IsWarning);
    }

    [Fact]
    public void Translate_Output_IsOrderedWhateverTheInputOrder()
    {
        var services = new[] { Service("b", "x", Port(80, "http")), Service("a", "y", Port(80, "http")), Service("a", "x", Port(80, "http")) };
        var slices = new[]
        {
            Slice("a", "x-2", "x", [SlicePort("http", 1)], Endpoint("10.0.0.9")),
            Slice("a", "x-1", "x", [SlicePort("http", 1)], Endpoint("10.0.0.3"), Endpoint("10.0.0.1")),
        };

        var forward = Translate(services, slices, []);
        var backward = Translate([.. services.Reverse()], [.. slices.Reverse()], []);

        Assert.Equal(["a/x", "a/y", "b/x"], forward.Services.Select(s => $"{s.Namespace}/{s.Name}"));
        Assert.Equal(forward.Services, backward.Services, ServiceEntryEquals);
        Assert.Equal(forward.Workloads, backward.Workloads, WorkloadEquals);
    }

    private static bool ServiceEntryEquals(ServiceEntryModel a, ServiceEntryModel b) =>
        a.Namespace == b.Namespace && a.Name == b.Name && a.Hosts.SequenceEqual(b.Hosts) && a.Ports.SequenceEqual(b.Ports);

    private static bool WorkloadEquals(WorkloadInstance a, WorkloadInstance b) =>
        a.Namespace == b.Namespace && a.Address == b.Address && a.Ports.SequenceEqual(b.Ports) && a.Labels.SequenceEqual(b.Labels) && a.ServiceAccount == b.ServiceAccount;

    private static KubernetesServices Translate(IReadOnlyCollection<V1Service> services, IReadOnlyCollection<V1EndpointSlice> slices, IReadOnlyCollection<V1Pod> pods) =>
        KubernetesServiceTranslator.Translate(services, slices, pods, [], Domain);

    private static ModelSnapshot Snapshot(KubernetesServices result) =>
        new(1, new YamlConfig(result.Services, result.Workloads, []), []);

    private static V1Service Service(string ns, string name, params V1ServicePort[] ports) => new()
    {
        Metadata = new V1ObjectMeta { NamespaceProperty = ns, Name = name },
        Spec = new V1ServiceSpec { Type = "ClusterIP", ClusterIP = "10.96.0.10", Ports = [.. ports], Selector = new Dictionary<string, string> { ["app"] = name } },
    };

    private static V1ServicePort Port(int number, string? name, string? target = null) =>
        new() { Port = number, Name = name, Protocol = "TCP", TargetPort = target ?? number.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static Discoveryv1EndpointPort SlicePort(string name, int number) => new() { Name = name, Port = number, Protocol = "TCP" };

    private static V1EndpointSlice Slice(string ns, string name, string service, Discoveryv1EndpointPort[] ports, params V1Endpoint[] endpoints) => new()
    {
        Metadata = new V1ObjectMeta
        {
            NamespaceProperty = ns,
            Name = name,
            Labels = new Dictionary<string, string> { [KubernetesServiceTranslator.ServiceNameLabel] = service, ["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io" },
        },
        AddressType = "IPv4",
        Ports = [.. ports],
        Endpoints = [.. endpoints],
    };

    private static V1Endpoint Endpoint(string address, string? pod = null, bool? ready = true, bool? serving = null, bool? terminating = null, string? podNamespace = null, string? node = null) => new()
    {
        Addresses = [address],
        Conditions = new V1EndpointConditions { Ready = ready, Serving = serving, Terminating = terminating },
        TargetRef = pod is null ? null : new V1ObjectReference { Kind = "Pod", Name = pod, NamespaceProperty = podNamespace },
        NodeName = node,
    };

    private static V1Pod Pod(string ns, string name, string ip, string? serviceAccount = "default", Dictionary<string, string>? labels = null, string? node = null) => new()
    {
        Metadata = new V1ObjectMeta { NamespaceProperty = ns, Name = name, Labels = labels ?? [] },
        Spec = new V1PodSpec { ServiceAccountName = serviceAccount, NodeName = node, Containers = [] },
        Status = new V1PodStatus { PodIP = ip, PodIPs = [new V1PodIP { Ip = ip }], Phase = "Running" },
    };

    private static V1Node Node(string name, Dictionary<string, string> labels) => new() { Metadata = new V1ObjectMeta { Name = name, Labels = labels } };
}
