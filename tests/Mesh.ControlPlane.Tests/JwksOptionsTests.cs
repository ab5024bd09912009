using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests;

public sealed class JwksOptionsTests
{
    private static ControlPlaneOptions Load(params (string Key, string Value)[] settings) =>
        ControlPlaneOptions.Load(new ConfigurationBuilder().AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))).Build());

    [Fact]
    public void Load_Defaults_AsIstiod()
    {
        var jwks = Load().Jwks;

        Assert.Equal(TimeSpan.FromMinutes(20), jwks.RefreshInterval);
        Assert.Equal(TimeSpan.FromMinutes(1), jwks.RetryInterval);
        Assert.Equal(TimeSpan.FromSeconds(5), jwks.FetchTimeout);
        Assert.Equal(1024 * 1024, jwks.MaxResponseBytes);
    }

    [Fact]
    public void Load_Values_Read()
    {
        var jwks = Load(("ControlPlane:Jwks:RefreshInterval", "00:05:00"), ("ControlPlane:Jwks:RetryInterval", "00:00:10"), ("ControlPlane:Jwks:FetchTimeout", "00:00:02"), ("ControlPlane:Jwks:MaxResponseBytes", "65536")).Jwks;

        Assert.Equal(TimeSpan.FromMinutes(5), jwks.RefreshInterval);
        Assert.Equal(TimeSpan.FromSeconds(10), jwks.RetryInterval);
        Assert.Equal(TimeSpan.FromSeconds(2), jwks.FetchTimeout);
        Assert.Equal(65536, jwks.MaxResponseBytes);
    }

    [Theory]
    [InlineData("ControlPlane:Jwks:Refresh", "00:01:00", "ControlPlane:Jwks:Refresh is not a known setting")]
    [InlineData("ControlPlane:Jwks:RefreshInterval", "forever", "ControlPlane:Jwks:RefreshInterval must be a TimeSpan")]
    [InlineData("ControlPlane:Jwks:RetryInterval", "00:00:00", "ControlPlane:Jwks:RetryInterval must be a TimeSpan")]
    [InlineData("ControlPlane:Jwks:FetchTimeout", "00:10:00", "ControlPlane:Jwks:FetchTimeout must be a TimeSpan")]
    [InlineData("ControlPlane:Jwks:MaxResponseBytes", "12", "ControlPlane:Jwks:MaxResponseBytes must be a whole number")]
    public void Load_BadValue_ErrorNamesKey(string key, string value, string expected)
    {
        var error = Assert.Throws<InvalidOperationException>(() => Load((key, value)));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }
}
