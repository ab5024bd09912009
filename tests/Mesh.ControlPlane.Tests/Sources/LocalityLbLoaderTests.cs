using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Tests.Sources;

public class LocalityLbLoaderTests
{
    // Line 1 = apiVersion; what replaces LOCALITY is line 10.
    private const string Rule = """
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata:
          name: orders
        spec:
          host: orders
          trafficPolicy:
            loadBalancer:
              localityLbSetting:
                LOCALITY
            outlierDetection: {consecutive5xxErrors: 1}
        """;

    private static YamlConfig LoadOk(string locality)
    {
        var result = YamlConfigLoader.Load([("dr.yaml", Rule.Replace("LOCALITY", locality, StringComparison.Ordinal))]);
        Assert.DoesNotContain(result.Errors, e => !e.IsWarning);
        return result.Config!;
    }

    private static ConfigError SingleError(string locality, string rule = Rule)
    {
        var result = YamlConfigLoader.Load([("dr.yaml", rule.Replace("LOCALITY", locality, StringComparison.Ordinal))]);
        return Assert.Single(result.Errors, e => !e.IsWarning);
    }

    [Fact]
    public void Load_Distribute_KeepsFromAndWeightsInOrder()
    {
        var config = LoadOk("distribute: [{from: us-east/zone-a/*, to: {us-east/zone-a/*: 80, us-east/zone-b/*: 20}}]");

        var setting = Assert.Single(config.DestinationRules).LocalityLb!;
        var distribute = Assert.Single(setting.Distribute);
        Assert.Equal("us-east/zone-a/*", distribute.From);
        Assert.Equal([KeyValuePair.Create("us-east/zone-a/*", 80u), KeyValuePair.Create("us-east/zone-b/*", 20u)], distribute.To.ToArray());
        Assert.Null(setting.Enabled);
    }

    [Fact]
    public void Load_FailoverAndPriority_AreRead()
    {
        var config = LoadOk("{enabled: true, failover: [{from: us-east, to: eu-west}], failoverPriority: [topology.istio.io/network, version=v1]}");

        var setting = Assert.Single(config.DestinationRules).LocalityLb!;
        Assert.True(setting.Enabled);
        Assert.Equal(new LocalityFailoverModel("us-east", "eu-west"), Assert.Single(setting.Failover));
        Assert.Equal(["topology.istio.io/network", "version=v1"], setting.FailoverPriority.ToArray());
    }

    [Theory]
    [InlineData("distribute: [{from: us-east/*, to: {us-east/*: 70, eu-west/*: 20}}]", "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: the locality weights total 90; they must total 100", 10)]
    [InlineData("distribute: [{from: us-east/*, to: {us-east/*: 0, eu-west/*: 100}}]", "distribute[0].to[us-east/*]: locality weight must be an integer from 1 to 100 (got '0')", 10)]
    [InlineData("distribute: [{from: us-east/*, to: {us-east/*: 101}}]", "locality weight must be an integer from 1 to 100 (got '101')", 10)]
    [InlineData("distribute: [{from: us-east/*, to: {us-east/*: -5, eu: 100}}]", "(got '-5')", 10)]
    [InlineData("distribute: [{from: us-east/*, to: {us-east/*: 50, us-east/zone-a: 50}}]", "distribute[0].to[us-east/zone-a]: locality 'us-east/zone-a' overlaps 'us-east/*'", 10)]
    [InlineData("distribute: [{from: us-east/*/a, to: {us-east: 100}}]", "distribute[0].from: locality 'us-east/*/a': the '*' wildcard may appear once, at the end", 10)]
    [InlineData("distribute: [{from: us-east//a, to: {us-east: 100}}]", "distribute[0].from: locality 'us-east//a' must look like region, region/zone or region/zone/subzone with no empty part", 10)]
    [InlineData("distribute: [{from: '*', to: {us-east: 100}}, {from: eu, to: {eu: 100}}]", "distribute[1].from: locality 'eu' overlaps '*'", 10)]
    [InlineData("distribute: [{to: {us-east: 100}}]", "distribute[0].from: is required", 10)]
    [InlineData("{distribute: [{from: us-east, to: {us-east: 100}}], failover: [{from: us-east, to: eu-west}]}", "localityLbSetting.failover: cannot be set together with distribute", 10)]
    [InlineData("failover: [{from: us-east, to: us-east}]", "failover[0].to: is the same region as from ('us-east')", 10)]
    [InlineData("failover: [{from: us-east/zone-a, to: eu-west}]", "failover[0].from: 'us-east/zone-a' must be a region only", 10)]
    [InlineData("failover: [{from: us-east, to: 'eu-*'}]", "failover[0].to: 'eu-*' must not contain the '*' wildcard", 10)]
    [InlineData("failover: [{from: us-east, to: eu-west}, {from: us-east, to: ap}]", "failover[1].from: region 'us-east' already has a failover entry", 10)]
    [InlineData("{failover: [{from: us-east, to: eu-west}], failoverPriority: [topology.kubernetes.io/zone]}", "failoverPriority: cannot use the topology label 'topology.kubernetes.io/zone' together with failover", 10)]
    [InlineData("failoverPriority: ['=v1']", "failoverPriority[0]: '=v1' must be a label name", 10)]
    [InlineData("enabled: yes", "localityLbSetting.enabled: must be true or false (got 'yes')", 10)]
    [InlineData("failoverPolicy: x", "localityLbSetting.failoverPolicy: is not supported yet", 10)]
    public void Load_WhatIstioRejects_IsErrorAtFileLineAndPath(string locality, string expected, int line)
    {
        var error = SingleError(locality);

        Assert.Equal(("dr.yaml", line), (error.File, error.Line));
        Assert.Contains("DestinationRule default/orders: spec.trafficPolicy.loadBalancer.localityLbSetting", error.Message, StringComparison.Ordinal);
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_FailoverWithoutOutlierDetection_WarnsAsIstio()
    {
        var yaml = Rule.Replace("LOCALITY", "failover: [{from: us-east, to: eu-west}]", StringComparison.Ordinal)
            .Replace("\n    outlierDetection: {consecutive5xxErrors: 1}", string.Empty, StringComparison.Ordinal);

        var result = YamlConfigLoader.Load([("dr.yaml", yaml)]);

        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Contains("outlier detection policy must be provided for failover", warning.Message, StringComparison.Ordinal);
        Assert.NotNull(Assert.Single(result.Config!.DestinationRules).LocalityLb);
    }

    [Theory]
    [InlineData("{enabled: false, failover: [{from: us-east, to: eu-west}]}", "is false, so distribute, failover and failoverPriority are ignored")]
    [InlineData("{distribute: [{from: us-east, to: {us-east: 100}}], failoverPriority: [version]}", "failoverPriority: is ignored when distribute is set")]
    public void Load_FieldIstioIgnores_IsWarningNamingIt(string locality, string expected)
    {
        var result = YamlConfigLoader.Load([("dr.yaml", Rule.Replace("LOCALITY", locality, StringComparison.Ordinal))]);

        var warning = Assert.Single(result.Errors);
        Assert.True(warning.IsWarning);
        Assert.Contains(expected, warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_PortLevelLocalityLbSetting_IsError()
    {
        var yaml = Rule.Replace("LOCALITY", "enabled: true", StringComparison.Ordinal) +
            "\n    portLevelSettings: [{port: {number: 80}, loadBalancer: {localityLbSetting: {enabled: false}}}]";

        var error = Assert.Single(YamlConfigLoader.Load([("dr.yaml", yaml)]).Errors);

        Assert.Contains("spec.trafficPolicy.portLevelSettings[0].loadBalancer.localityLbSetting: is supported only in spec.trafficPolicy.loadBalancer yet", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("us-east//a")]
    [InlineData("a/b/c/d")]
    [InlineData("us east")]
    [InlineData("us-*")]
    public void Load_BadWorkloadEntryLocality_IsError(string locality)
    {
        var yaml = $"""
            apiVersion: networking.istio.io/v1
            kind: WorkloadEntry
            metadata:
              name: w1
            spec:
              address: 127.0.0.1
              locality: "{locality}"
            """;

        var error = Assert.Single(YamlConfigLoader.Load([("we.yaml", yaml)]).Errors);

        Assert.Equal(7, error.Line);
        Assert.Contains("spec.locality: '", error.Message, StringComparison.Ordinal);
    }
}
