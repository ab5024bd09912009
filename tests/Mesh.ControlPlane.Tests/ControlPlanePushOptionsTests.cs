using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests;

/// <summary>ControlPlane:DebounceMax and ControlPlane:AdsWriteTimeout: defaults, accepted values, and every bad input named by its key.</summary>
public sealed class ControlPlanePushOptionsTests
{
    [Fact]
    public void Load_Unset_IstioDebounceMaxAndThirtySecondWriteTimeout()
    {
        var options = ControlPlaneOptions.Load(Config());

        Assert.Equal(TimeSpan.FromSeconds(10), options.DebounceMax);
        Assert.Equal(TimeSpan.FromSeconds(30), options.AdsWriteTimeout);
        Assert.Equal(TimeSpan.FromSeconds(30), Mesh.ControlPlane.Xds.AdsLimits.From(options).WriteTimeout);
    }

    [Fact]
    public void Load_Set_ValuesTaken()
    {
        var options = ControlPlaneOptions.Load(Config(("DebounceMax", "00:00:02"), ("AdsWriteTimeout", "00:00:05"), ("DebounceInterval", "00:00:00.500")));

        Assert.Equal(TimeSpan.FromSeconds(2), options.DebounceMax);
        Assert.Equal(TimeSpan.FromSeconds(5), Mesh.ControlPlane.Xds.AdsLimits.From(options).WriteTimeout);
    }

    [Theory]
    [InlineData("DebounceMax", "soon", "ControlPlane:DebounceMax must be a TimeSpan like 00:00:10 between 00:00:00 and 00:05:00 (got 'soon')")]
    [InlineData("DebounceMax", "-00:00:01", "ControlPlane:DebounceMax must be a TimeSpan")]
    [InlineData("DebounceMax", "01:00:00", "ControlPlane:DebounceMax must be a TimeSpan")]
    [InlineData("DebounceMax", "00:00:00.050", "ControlPlane:DebounceMax (00:00:00.0500000) must not be shorter than ControlPlane:DebounceInterval (00:00:00.1000000)")]
    [InlineData("AdsWriteTimeout", "30", "ControlPlane:AdsWriteTimeout must be a TimeSpan like 00:00:30 between 00:00:01 and 00:10:00 (got '30')")]
    [InlineData("AdsWriteTimeout", "00:00:00.500", "ControlPlane:AdsWriteTimeout must be a TimeSpan")]
    [InlineData("AdsWriteTimeout", "1.00:00:00", "ControlPlane:AdsWriteTimeout must be a TimeSpan")]
    [InlineData("AdsSendTimeout", "00:00:30", "ControlPlane:AdsSendTimeout is not a known setting")]
    public void Load_InvalidValue_FailsNamingTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => KeyValuePair.Create<string, string?>($"ControlPlane:{v.Key}", v.Value))).Build();
}
