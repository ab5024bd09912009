using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Sources;

public sealed class YamlConfigLoaderTests : IDisposable
{
    private const string Orders = """
        apiVersion: networking.istio.io/v1
        kind: ServiceEntry
        metadata:
          name: orders
        spec:
          hosts: [orders]
          ports:
          - number: 80
            name: http
            protocol: HTTP
          workloadSelector:
            labels: {app: orders}
        ---
        apiVersion: networking.istio.io/v1beta1
        kind: WorkloadEntry
        metadata:
          name: orders-1
        spec:
          address: 127.0.0.1
          ports: {http: 5001}
          labels: {app: orders, version: v1}
          serviceAccount: orders
          locality: eu/west/a
          weight: 2
        ---
        apiVersion: networking.istio.io/v1alpha3
        kind: DestinationRule
        metadata:
          name: orders
        spec:
          host: orders
          trafficPolicy:
            loadBalancer:
              simple: LEAST_CONN
        """;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "mesh-cp-yaml-" + Guid.NewGuid().ToString("N"));

    public YamlConfigLoaderTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Load_ValidMultiDocumentFile_ReturnsAllKinds()
    {
        var result = YamlConfigLoader.Load([("orders.yaml", Orders)]);

        Assert.Empty(result.Errors);
        var service = Assert.Single(result.Config.ServiceEntries);
        Assert.Equal(["orders.default.svc.cluster.local"], service.Hosts.ToArray());
        Assert.Equal(new ServicePort(80, "http", "HTTP", null), Assert.Single(service.Ports));
        Assert.Equal("orders", service.WorkloadSelector!["app"]);
        var workload = Assert.Single(result.Config.WorkloadEntries);
        Assert.Equal(("127.0.0.1", 5001u, "eu/west/a", 2u, "orders"), (workload.Address, workload.Ports["http"], workload.Locality, workload.Weight, workload.ServiceAccount));
        var rule = Assert.Single(result.Config.DestinationRules);
        Assert.Equal(("orders.default.svc.cluster.local", LoadBalancerKind.LeastRequest), (rule.Host, rule.LoadBalancer));
    }

    [Fact]
    public void Load_SubjectAltNames_ReadAndInvalidOnesReportedWithPath()
    {
        var yaml = Orders.Replace("""
          workloadSelector:
            labels: {app: orders}
        """, """
          workloadSelector:
            labels: {app: orders}
          subjectAltNames:
          - spiffe://cluster.local/ns/default/sa/orders
          - https://orders.example.com
        """, StringComparison.Ordinal);

        var bad = YamlConfigLoader.Load([("orders.yaml", yaml)]);
        var good = YamlConfigLoader.Load([("orders.yaml", yaml.Replace("https://orders.example.com", "spiffe://cluster.local/ns/default/sa/orders-v2", StringComparison.Ordinal))]);

        var error = Assert.Single(bad.Errors);
        Assert.Contains("ServiceEntry default/orders: spec.subjectAltNames[1]: 'https://orders.example.com' must start with spiffe://", error.Message, StringComparison.Ordinal);
        Assert.Empty(good.Errors);
        Assert.Equal(["spiffe://cluster.local/ns/default/sa/orders", "spiffe://cluster.local/ns/default/sa/orders-v2"], good.Config.ServiceEntries[0].SubjectAltNames.ToArray());
    }

    [Fact]
    public void Load_BadIndentation_ReportsFileAndLine()
    {
        var yaml = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: orders\n spec: {}\n";
        var error = Assert.Single(YamlConfigLoader.Load([("indent.yaml", yaml)]).Errors);

        Assert.Equal(("indent.yaml", 5), (error.File, error.Line));
        Assert.StartsWith("invalid YAML", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_InvalidYamlSyntax_ReportsFileAndLine()
    {
        var result = YamlConfigLoader.Load([("broken.yaml", "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec:\n  hosts: [orders\n  ports: {\n")]);

        var error = Assert.Single(result.Errors);
        Assert.True(result.HasErrors);
        Assert.Equal("broken.yaml", error.File);
        Assert.InRange(error.Line, 4, 6);
        Assert.StartsWith("invalid YAML", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MissingHosts_ReportsFieldPath()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata:
              name: orders
              namespace: shop
            spec:
              ports:
              - number: 80
                name: http
            """;
        var error = Assert.Single(YamlConfigLoader.Load([("orders.yaml", yaml)]).Errors);

        Assert.Equal(("orders.yaml", 7), (error.File, error.Line));
        Assert.Equal("ServiceEntry shop/orders: spec.hosts: is required", error.Message);
    }

    [Fact]
    public void Load_BadPortNumber_ReportsLineOfTheValue()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata:
              name: orders
            spec:
              hosts: [orders]
              ports:
              - number: 70000
                name: http
            """;
        var error = Assert.Single(YamlConfigLoader.Load([("orders.yaml", yaml)]).Errors);

        Assert.Equal("orders.yaml:8: ServiceEntry default/orders: spec.ports[0].number: must be 1-65535 (got '70000')", error.ToString());
    }

    [Theory]
    [InlineData("{{ .Values.ports }}", 8)] // an unrendered Helm template
    [InlineData("{[http]: 8080}", 8)]
    [InlineData("\n    ? {a: b}\n    : 8080", 9)]
    [InlineData("{'': 8080}", 8)]
    public void Load_WorkloadEntryPortNameNotAString_ErrorAtFileLineNamingThePath(string ports, int line)
    {
        var result = YamlConfigLoader.Load([("w.yaml", ConfigDirectoryWatcherTests.Workload("10.0.0.1", ports))]);

        var error = Assert.Single(result.Errors);
        Assert.Equal($"w.yaml:{line}: WorkloadEntry default/w: spec.ports: port names must be non-empty strings, like ports: {{http: 8080}}", error.ToString());
        Assert.Empty(result.Config.WorkloadEntries);
    }

    [Fact]
    public void Load_ServiceEntryEndpointPortNameNotAString_ErrorNamingTheEndpoint()
    {
        var yaml = Orders.Replace("  workloadSelector:\n    labels: {app: orders}", "  endpoints:\n  - address: 10.0.0.1\n    ports: {{ .Values.ports }}", StringComparison.Ordinal);

        var error = Assert.Single(YamlConfigLoader.Load([("orders.yaml", yaml)]).Errors);

        Assert.Equal("orders.yaml:13: ServiceEntry default/orders: spec.endpoints[0].ports: port names must be non-empty strings, like ports: {http: 8080}", error.ToString());
    }

    [Fact]
    public void Load_SameWorkloadEntryInTwoFiles_ErrorNamingBothFileLines()
    {
        // A copied file whose resource was not renamed: both would be served under one name.
        var result = YamlConfigLoader.Load([("orders.yaml", ConfigDirectoryWatcherTests.Workload("10.0.0.1", "{http: 8080}")), ("orders-v2.yaml", ConfigDirectoryWatcherTests.Workload("10.0.0.2", "{http: 8080}"))]);

        var error = Assert.Single(result.Errors);
        Assert.True(result.HasErrors);
        Assert.Equal("orders-v2.yaml:1: WorkloadEntry default/w: metadata.name: WorkloadEntry default/w is already defined at orders.yaml:1; one object per kind, namespace and name (Kubernetes and istiod keep only one): rename or remove one", error.ToString());
    }

    [Fact]
    public void Load_SameAuthorizationPolicyTwiceInOneFile_ErrorNamingBothLines()
    {
        var policy = """
            apiVersion: security.istio.io/v1
            kind: AuthorizationPolicy
            metadata: {name: deny-admin, namespace: shop}
            spec:
              action: DENY
              rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
            """;

        var result = YamlConfigLoader.Load([("policy.yaml", policy + "\n---\n" + policy.Replace("/admin*", "/debug*", StringComparison.Ordinal))]);

        var error = Assert.Single(result.Errors);
        Assert.Equal(("policy.yaml", 8), (error.File, error.Line));
        Assert.StartsWith("AuthorizationPolicy shop/deny-admin: metadata.name: AuthorizationPolicy shop/deny-admin is already defined at policy.yaml:1;", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_SameNameInAnotherNamespaceOrOfAnotherKind_Accepted()
    {
        var shop = ConfigDirectoryWatcherTests.Workload("10.0.0.2", "{http: 8080}").Replace("  name: w\n", "  name: w\n  namespace: shop\n", StringComparison.Ordinal);

        // Orders holds a ServiceEntry and a DestinationRule both named orders.
        var result = YamlConfigLoader.Load([("orders.yaml", Orders), ("a.yaml", ConfigDirectoryWatcherTests.Workload("10.0.0.1", "{http: 8080}")), ("b.yaml", shop)]);

        Assert.Empty(result.Errors);
        Assert.Equal(3, result.Config.WorkloadEntries.Length);
    }

    [Fact]
    public void Load_DuplicateHostAcrossFiles_NamesBothServiceEntries()
    {
        var other = Orders.Replace("name: orders\nspec:\n  hosts: [orders]", "name: orders-copy\nspec:\n  hosts: [orders.default.svc.cluster.local]", StringComparison.Ordinal);
        var result = YamlConfigLoader.Load([("a.yaml", Orders), ("b.yaml", other)]);

        var error = Assert.Single(result.Errors, e => e.Message.Contains("already declared", StringComparison.Ordinal));
        Assert.Equal("b.yaml", error.File);
        Assert.Contains("ServiceEntry default/orders-copy", error.Message, StringComparison.Ordinal);
        Assert.Contains("ServiceEntry default/orders (a.yaml:1)", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_UnsupportedLoadBalancer_ReportsAllowedValues()
    {
        var yaml = Orders.Replace("LEAST_CONN", "MAGLEV", StringComparison.Ordinal);
        var error = Assert.Single(YamlConfigLoader.Load([("orders.yaml", yaml)]).Errors);

        Assert.Equal(34, error.Line);
        Assert.Equal("DestinationRule default/orders: spec.trafficPolicy.loadBalancer.simple: 'MAGLEV' is not a load balancer; use ROUND_ROBIN, LEAST_REQUEST, RANDOM or consistentHash", error.Message);
    }

    [Theory]
    [InlineData("ISTIO_MUTUAL", nameof(UpstreamTlsMode.IstioMutual))]
    [InlineData("DISABLE", nameof(UpstreamTlsMode.Disable))]
    public void Load_TlsMode_ReadIntoRule(string mode, string expected)
    {
        var result = YamlConfigLoader.Load([("orders.yaml", Orders + $"\n    tls:\n      mode: {mode}\n")]);

        Assert.Empty(result.Errors);
        var rule = Assert.Single(result.Config.DestinationRules);
        Assert.Equal((LoadBalancerKind.LeastRequest, Enum.Parse<UpstreamTlsMode>(expected)), (rule.LoadBalancer, rule.TlsMode));
    }

    [Fact]
    public void Load_NoTlsSetting_LeavesModeUnset()
    {
        var rule = Assert.Single(YamlConfigLoader.Load([("orders.yaml", Orders)]).Config.DestinationRules);

        Assert.Null(rule.TlsMode);
    }

    [Theory]
    [InlineData("SIMPLE")]
    [InlineData("MUTUAL")]
    public void Load_UnsupportedTlsMode_ReportsNotSupportedWithLineAndPath(string mode)
    {
        var result = YamlConfigLoader.Load([("orders.yaml", Orders + $"\n    tls:\n      mode: {mode}\n")]);

        var error = Assert.Single(result.Errors);
        Assert.True(result.HasErrors);
        Assert.Equal(36, error.Line);
        Assert.Equal($"orders.yaml:36: DestinationRule default/orders: spec.trafficPolicy.tls.mode: '{mode}' is not supported; use ISTIO_MUTUAL (mesh mTLS) or DISABLE (plaintext)", error.ToString());
    }

    [Fact]
    public void Load_TlsWithoutMode_ReportsRequired()
    {
        var error = Assert.Single(YamlConfigLoader.Load([("orders.yaml", Orders + "\n    tls: {sni: orders}\n")]).Errors.Where(e => !e.IsWarning));

        Assert.Equal(35, error.Line);
        Assert.Equal("DestinationRule default/orders: spec.trafficPolicy.tls.mode: is required; use ISTIO_MUTUAL or DISABLE", error.Message);
    }

    [Fact]
    public void Load_TlsExtraField_IsWarningAndModeStillRead()
    {
        var result = YamlConfigLoader.Load([("orders.yaml", Orders + "\n    tls:\n      mode: ISTIO_MUTUAL\n      sni: orders.example\n")]);

        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Equal(37, warning.Line);
        Assert.Contains("spec.trafficPolicy.tls.sni: is not supported and is ignored", warning.Message, StringComparison.Ordinal);
        Assert.Equal(UpstreamTlsMode.IstioMutual, Assert.Single(result.Config.DestinationRules).TlsMode);
    }

    [Fact]
    public void Load_SeveralErrors_ReportsEveryOne()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata:
              name: orders
            spec:
              hosts: ["bad host"]
              ports:
              - number: 0
                name: http
              - number: 81
            """;
        var errors = YamlConfigLoader.Load([("orders.yaml", yaml)]).Errors;

        Assert.Equal(3, errors.Length);
        Assert.Contains(errors, e => e.Line == 6 && e.Message.Contains("spec.hosts[0]", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 8 && e.Message.Contains("spec.ports[0].number", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 10 && e.Message.Contains("spec.ports[1].name: is required", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_UnknownKind_IsWarningAndKeepsTheRest()
    {
        var yaml = Orders + "\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: orders}\nspec: {}\n";
        var result = YamlConfigLoader.Load([("orders.yaml", yaml)]);

        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.False(result.HasErrors);
        Assert.Contains("Gateway default/orders: kind Gateway is not yet supported", warning.Message, StringComparison.Ordinal);
        Assert.Single(result.Config.ServiceEntries);
    }

    [Fact]
    public void Reload_BadEditAfterGoodConfig_KeepsLastGoodConfigAndThenClearsErrors()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var file = Path.Combine(_directory, "orders.yaml");
        File.WriteAllText(file, Orders);
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        var good = store.Current;

        File.WriteAllText(file, Orders.Replace("number: 80", "number: -1", StringComparison.Ordinal));
        Assert.False(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));

        Assert.Same(good, store.Current);
        var error = Assert.Single(store.Errors);
        Assert.Equal(("orders.yaml", 8), (error.File, error.Line));

        File.WriteAllText(file, Orders.Replace("number: 80", "number: 8080", StringComparison.Ordinal));
        Assert.True(store.ApplyYaml(YamlConfigLoader.LoadDirectory(_directory)));
        Assert.Empty(store.Errors);
        Assert.Equal(8080u, store.Current.Config.ServiceEntries[0].Ports[0].Number);
    }
}
