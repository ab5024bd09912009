using static Mesh.Client.Tests.Authorization.IstioPolicies;

namespace Mesh.Client.Tests.Authorization;

public sealed class IstioYamlTests
{
    [Fact]
    public void RoundTrip_EveryRuleField_ReadsBackTheSamePolicies()
    {
        var policies = new[]
        {
            Deny("d", Rule(from: [Source(principals: ["a/b"], notPrincipals: ["*"], namespaces: ["x"], notNamespaces: ["y"])], to: [Operation(methods: ["GET"], notMethods: ["PUT"], paths: ["/a\\b", "*.css"], notPaths: ["/\"q\""], ports: [1], notPorts: [2], hosts: ["h"], notHosts: ["*.n"])], when: [Header("x-a", values: ["1"], notValues: ["2"])])),
            Allow("allow-nothing"),
            Allow("all", Rule()),
        };

        var loaded = IstioYaml.RoundTrip(policies);

        Assert.Equal(["d", "allow-nothing", "all"], loaded.Select(p => p.Name));
        Assert.Equal(new[] { "/a\\b", "*.css" }, loaded[0].Rules[0].To[0].Paths.ToArray());
    }

    /// <summary>The guard that keeps the table honest: a policy the loader reads differently (header names are lower-cased) is refused.</summary>
    [Fact]
    public void RoundTrip_LoaderReadsSomethingElse_Throws()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => IstioYaml.RoundTrip([Allow("h", Rule(when: [Header("X-Role", values: ["a"])]))]));

        Assert.Contains("does not read back as the policies written", ex.Message, StringComparison.Ordinal);
    }
}
