using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests;

/// <summary>ControlPlane:MaxLeasesPerIdentity, AdsMaxPendingRequests, AdsMaxResourceNamesPerType.</summary>
public class ControlPlaneLimitOptionsTests
{
    [Fact]
    public void Load_Defaults_BoundEveryStreamAndIdentity()
    {
        var options = ControlPlaneOptions.Load(Config());

        Assert.Equal((128, 64, 10_000), (options.MaxLeasesPerIdentity, options.AdsMaxPendingRequests, options.AdsMaxResourceNamesPerType));
    }

    [Fact]
    public void Load_Values_AreRead()
    {
        var options = ControlPlaneOptions.Load(Config(("MaxLeasesPerIdentity", "3"), ("AdsMaxPendingRequests", "8"), ("AdsMaxResourceNamesPerType", "500")));

        Assert.Equal((3, 8, 500), (options.MaxLeasesPerIdentity, options.AdsMaxPendingRequests, options.AdsMaxResourceNamesPerType));
    }

    [Theory]
    [InlineData("MaxLeasesPerIdentity", "0", "ControlPlane:MaxLeasesPerIdentity must be a whole number from 1 to 100000 (got '0')")]
    [InlineData("MaxLeasesPerIdentity", "many", "ControlPlane:MaxLeasesPerIdentity must be a whole number from 1 to 100000 (got 'many')")]
    [InlineData("AdsMaxPendingRequests", "-1", "ControlPlane:AdsMaxPendingRequests must be a whole number from 1 to 10000 (got '-1')")]
    [InlineData("AdsMaxResourceNamesPerType", "2000000", "ControlPlane:AdsMaxResourceNamesPerType must be a whole number from 1 to 1000000 (got '2000000')")]
    [InlineData("AdsMaxNames", "5", "ControlPlane:AdsMaxNames is not a known setting")]
    public void Load_InvalidValue_FailsNamingTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>($"ControlPlane:{v.Key}", v.Value)))
            .Build();
}
