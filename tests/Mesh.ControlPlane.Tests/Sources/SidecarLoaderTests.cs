using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>Istio's Sidecar kind: egress scoping parsed; every bad input refused at file:line with its field path; proxy-only fields warned about, never dropped silently.</summary>
public sealed class SidecarLoaderTests
{
    private static string Sidecar(string spec, string name = "default", string ns = "shop") => $"""
        apiVersion: networking.istio.io/v1
        kind: Sidecar
        metadata: {"{"}name: {name}, namespace: {ns}{"}"}
        spec:
        {string.Join("\n", spec.Split('\n').Select(l => "  " + l))}
        """;

    private static YamlLoadResult Load(params string[] documents) =>
        YamlConfigLoader.Load([("sidecar.yaml", string.Join("\n---\n", documents))]);

    [Fact]
    public void Load_EgressHostsAndPort_Parsed()
    {
        var result = Load(Sidecar("""
            workloadSelector: {labels: {app: web}}
            egress:
            - hosts: ["./*", "istio-system/*", "*/orders.shop.svc.cluster.local", "~/*"]
            - port: {number: 9090, protocol: GRPC, name: grpc}
              hosts: ["payments/*.payments.svc.cluster.local"]
            """));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        Assert.Empty(result.Errors);
        var sidecar = Assert.Single(result.Config.Sidecars);
        Assert.Equal(("shop", "default", "web"), (sidecar.Namespace, sidecar.Name, sidecar.WorkloadSelector!["app"]));
        Assert.Equal(2, sidecar.Egress.Length);
        Assert.Null(sidecar.Egress[0].Port);
        Assert.Equal(
            [new EgressHostModel(".", "*"), new EgressHostModel("istio-system", "*"), new EgressHostModel("*", "orders.shop.svc.cluster.local"), new EgressHostModel("~", "*")],
            sidecar.Egress[0].Hosts.ToArray());
        Assert.Equal(9090u, sidecar.Egress[1].Port);
        Assert.Equal(new EgressHostModel("payments", "*.payments.svc.cluster.local"), Assert.Single(sidecar.Egress[1].Hosts));
    }

    [Theory]
    [InlineData("egress: []", "sidecar.yaml:5: Sidecar shop/default: spec.egress: must list at least one egress listener")]
    [InlineData("workloadSelector: {labels: {app: web}}", "sidecar.yaml:5: Sidecar shop/default: spec.egress: is required")]
    [InlineData("egress:\n- hosts: [orders.shop.svc.cluster.local]", "sidecar.yaml:6: Sidecar shop/default: spec.egress[0].hosts[0]: 'orders.shop.svc.cluster.local' must be namespace/dnsName")]
    [InlineData("egress:\n- hosts: [\"a/b/c\"]", "spec.egress[0].hosts[0]: 'a/b/c' must be namespace/dnsName")]
    [InlineData("egress:\n- hosts: [\"Shop_1/*\"]", "spec.egress[0].hosts[0]: 'Shop_1' must be a namespace, '.', '*' or '~'")]
    [InlineData("egress:\n- hosts: [\"shop/orders..svc\"]", "spec.egress[0].hosts[0]: 'orders..svc' must be '*', '*.suffix' or a DNS name")]
    [InlineData("egress:\n- hosts: [\"shop/\"]", "spec.egress[0].hosts[0]: 'shop/' must be namespace/dnsName")]
    [InlineData("egress:\n- hosts: []", "spec.egress[0].hosts: must list at least one namespace/dnsName")]
    [InlineData("egress:\n- port: {number: 80}", "spec.egress[0].hosts: is required")]
    [InlineData("egress:\n- port: {number: 0}\n  hosts: [\"./*\"]", "spec.egress[0].port.number: must be 1-65535 (got '0')")]
    [InlineData("egress:\n- port: {numbr: 80}\n  hosts: [\"./*\"]", "spec.egress[0].port.numbr: is not a field of a port")]
    [InlineData("egress:\n- hosts: [\"./*\"]\n- hosts: [\"istio-system/*\"]", "spec.egress[1]: a second egress listener without a port")]
    [InlineData("egress:\n- hosts: [\"./*\"]\n  hsts: [x]", "spec.egress[0].hsts: is not a field of an egress listener")]
    [InlineData("egres:\n- hosts: [\"./*\"]", "spec.egres: is not a field of Sidecar")]
    [InlineData("workloadSelector: {labels: {}}\negress:\n- hosts: [\"./*\"]", "spec.workloadSelector.labels: must contain at least one label")]
    public void Load_BadSidecar_RefusedNamingFileLineAndField(string spec, string expected)
    {
        var result = Load(Sidecar(spec));

        Assert.True(result.HasErrors);
        Assert.Contains(result.Errors, e => !e.IsWarning && e.ToString().Contains(expected, StringComparison.Ordinal));
        Assert.Empty(result.Config.Sidecars);
    }

    [Theory]
    [InlineData("ingress:\n- port: {number: 9080}\n  defaultEndpoint: 127.0.0.1:8080", "spec.ingress: configures a sidecar proxy's own listeners")]
    [InlineData("outboundTrafficPolicy: {mode: REGISTRY_ONLY}", "spec.outboundTrafficPolicy: configures a sidecar proxy's own listeners")]
    [InlineData("inboundConnectionPool: {http: {http1MaxPendingRequests: 1}}", "spec.inboundConnectionPool: configures")]
    public void Load_ProxyOnlyField_WarnedByNameAndEgressStillApplied(string extra, string expected)
    {
        var result = Load(Sidecar("egress:\n- hosts: [\"./*\"]\n" + extra));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        Assert.Contains(result.Errors, e => e.IsWarning && e.ToString().Contains(expected, StringComparison.Ordinal));
        Assert.Single(result.Config.Sidecars);
    }

    [Fact]
    public void Load_BindAndCaptureMode_WarnedByField()
    {
        var result = Load(Sidecar("egress:\n- hosts: [\"./*\"]\n  bind: 127.0.0.2\n  captureMode: NONE"));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        Assert.Contains(result.Errors, e => e.IsWarning && e.Message.Contains("spec.egress[0].bind:", StringComparison.Ordinal));
        Assert.Contains(result.Errors, e => e.IsWarning && e.Message.Contains("spec.egress[0].captureMode:", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_ShortDnsName_WarnsThatItMatchesOnlyThatSpelling()
    {
        var result = Load(Sidecar("egress:\n- hosts: [\"shop/orders\"]"));

        Assert.False(result.HasErrors);
        Assert.Contains(result.Errors, e => e.IsWarning && e.Message.Contains("orders.shop.svc.cluster.local", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_TwoNamespaceWideSidecarsInOneNamespace_RefusedNamingTheFirst()
    {
        var result = Load(Sidecar("egress:\n- hosts: [\"./*\"]", "a"), Sidecar("egress:\n- hosts: [\"*/*\"]", "b"));

        var error = Assert.Single(result.Errors, e => !e.IsWarning);
        Assert.Contains("Sidecar shop/b: spec.workloadSelector: namespace shop already has a Sidecar without workloadSelector, shop/a (sidecar.yaml:1)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_NamespaceWideAndSelectingSidecarsInOneNamespace_BothKept()
    {
        var result = Load(Sidecar("egress:\n- hosts: [\"./*\"]", "a"), Sidecar("workloadSelector: {labels: {app: web}}\negress:\n- hosts: [\"*/*\"]", "b"));

        Assert.False(result.HasErrors, string.Join("\n", result.Errors));
        Assert.Equal(2, result.Config.Sidecars.Length);
    }
}
