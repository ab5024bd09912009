using System.Text;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>
/// Files the representation model cannot survive (a stack overflow kills the process; an alias bomb holds the publisher's
/// loop for hours) are refused from the parser's events first, naming file:line.
/// </summary>
public sealed class YamlShapeLimitsTests
{
    private const string Head = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: w\nspec:\n  address: 10.0.0.1\n  labels: {app: a}\n";

    [Theory]
    [InlineData(101)]
    [InlineData(50_000)] // overflowed the stack of an xUnit thread, and of an 8 MB one
    public void Load_NestedDeeperThanTheLimit_RefusedAtFileLine(int depth)
    {
        var yaml = Head + "  weight: " + new string('[', depth) + new string(']', depth) + "\n";

        var error = Assert.Single(YamlConfigLoader.Load([("w.yaml", yaml)]).Errors);

        Assert.Equal("w.yaml:8: nesting deeper than 100 levels; Istio resources need about 20, so the file is likely generated wrongly or damaged", error.ToString());
    }

    [Fact]
    public void Load_NestedToTheLimit_ReadAsUsual()
    {
        // The document's mapping and spec are 2 levels: 98 more reach the limit and are read (and refused as a weight).
        var yaml = Head + "  weight: " + new string('[', 98) + new string(']', 98) + "\n";

        var errors = YamlConfigLoader.Load([("w.yaml", yaml)]).Errors;

        Assert.NotEmpty(errors);
        Assert.All(errors, e => Assert.StartsWith("w.yaml:8: WorkloadEntry default/w: spec.weight: must be ", e.ToString(), StringComparison.Ordinal));
    }

    [Fact]
    public void Load_AliasKeyBomb_RefusedAsExcessiveAliasingAtFileLine()
    {
        // The review's ~1 KB bomb: each level uses the previous anchor twice as a key, so 35 levels expand to 2^35 nodes.
        var yaml = new StringBuilder("x0: &l0 {a: 1}\n");
        for (var i = 1; i <= 35; i++)
        {
            yaml.Append(System.Globalization.CultureInfo.InvariantCulture, $"x{i}: &l{i} {{? *l{i - 1} : 1, ? [*l{i - 1}] : 2}}\n");
        }

        Assert.InRange(yaml.Length, 1000, 1400);

        var error = Assert.Single(YamlConfigLoader.Load([("bomb.yaml", yaml.ToString())]).Errors);

        Assert.Equal("bomb.yaml", error.File);
        Assert.InRange(error.Line, 2, 36);
        Assert.Equal("excessive aliasing: the aliases expand to more than 100000 nodes; write the repeated values out or share fewer, smaller anchors", error.Message);
    }

    /// <summary>
    /// An alias inside its own anchor's collection is a cycle: as a mapping key YamlDotNet hashed it forever (26 bytes
    /// overflowed the stack, found in review 2026-12-05); the other spellings are refused the same way.
    /// </summary>
    [Theory]
    [InlineData("{? &a [*a] : 1}")]
    [InlineData("&a {x: *a}")]
    [InlineData("&a [*a]")]
    [InlineData("{? &a {k: *a} : 1}")]
    [InlineData("{? &a [[[*a]]] : 1}")]
    public void Load_AliasInsideItsOwnAnchor_RefusedAsACycle(string labels)
    {
        var yaml = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: w\nspec:\n  address: 10.0.0.1\n  labels: " + labels + "\n";

        var error = Assert.Single(YamlConfigLoader.Load([("w.yaml", yaml)]).Errors);

        Assert.Equal("w.yaml:7: alias *a refers to its own anchor (a cycle)", error.ToString());
    }

    [Fact]
    public void Load_SharedLabelsAnchor_ReadAsUsual()
    {
        var yaml = """
            apiVersion: networking.istio.io/v1
            kind: ServiceEntry
            metadata:
              name: orders
            spec:
              hosts: [orders]
              ports: [{number: 80, name: http, protocol: HTTP}]
              endpoints:
              - address: 10.0.0.1
                labels: &labels {app: orders, version: v1}
              - address: 10.0.0.2
                labels: *labels
            """;

        var result = YamlConfigLoader.Load([("orders.yaml", yaml)]);

        Assert.Empty(result.Errors);
        var endpoints = Assert.Single(result.Config.ServiceEntries).StaticEndpoints;
        Assert.Equal(2, endpoints.Length);
        Assert.All(endpoints, w => Assert.Equal("v1", w.Labels["version"]));
    }

    [Fact]
    public void LoadKubernetesObjects_JsonNestedDeeperThanTheLimit_ObjectRefusedTheRestApplies()
    {
        const string Good = """{"apiVersion":"networking.istio.io/v1","kind":"WorkloadEntry","metadata":{"name":"good","namespace":"shop"},"spec":{"address":"10.0.0.1"}}""";
        var deep = """{"apiVersion":"networking.istio.io/v1","kind":"WorkloadEntry","metadata":{"name":"deep","namespace":"shop"},"spec":{"address":"10.0.0.2","weight":"""
            + new string('[', 20_000) + new string(']', 20_000) + "}}";

        var result = YamlConfigLoader.LoadKubernetesObjects(
            [new KubernetesObjectText("WorkloadEntry shop/good", "WorkloadEntry", Good), new KubernetesObjectText("WorkloadEntry shop/deep", "WorkloadEntry", deep)], YamlConfig.Empty, []);

        var error = Assert.Single(result.Errors);
        Assert.Equal("WorkloadEntry shop/deep", error.File);
        Assert.StartsWith("nesting deeper than 100 levels", error.Message, StringComparison.Ordinal);
        Assert.Equal("good", Assert.Single(result.Config.WorkloadEntries).Name);
    }
}
