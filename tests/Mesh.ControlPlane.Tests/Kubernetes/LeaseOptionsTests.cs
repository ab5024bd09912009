using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;
using Mesh.ControlPlane.Kubernetes;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>ControlPlane:Kubernetes:LeaseDuration/RenewDeadline/RetryPeriod (client-go's rule LeaseDuration &gt; RenewDeadline &gt; 1.2 × RetryPeriod).</summary>
public sealed class LeaseOptionsTests
{
    [Fact]
    public void Load_Defaults_AreClientGos()
    {
        var options = ControlPlaneOptions.Load(Config());

        Assert.Equal((TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(2)), (options.Kubernetes.LeaseDuration, options.Kubernetes.RenewDeadline, options.Kubernetes.RetryPeriod));
    }

    [Fact]
    public void Load_ShorterDurations_Accepted()
    {
        var options = ControlPlaneOptions.Load(Config(("LeaseDuration", "00:00:03"), ("RenewDeadline", "00:00:02"), ("RetryPeriod", "00:00:00.500")));

        Assert.Equal((TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(2), TimeSpan.FromMilliseconds(500)), (options.Kubernetes.LeaseDuration, options.Kubernetes.RenewDeadline, options.Kubernetes.RetryPeriod));
    }

    [Theory]
    [InlineData("LeaseDuration", "00:00:10", "ControlPlane:Kubernetes:LeaseDuration (00:00:10) must be longer than ControlPlane:Kubernetes:RenewDeadline (00:00:10)")]
    [InlineData("RetryPeriod", "00:00:09", "ControlPlane:Kubernetes:RenewDeadline (00:00:10) must be longer than 1.2 × ControlPlane:Kubernetes:RetryPeriod (00:00:09)")]
    [InlineData("LeaseDuration", "15s", "ControlPlane:Kubernetes:LeaseDuration must be a TimeSpan like 00:00:15")]
    [InlineData("RetryPeriod", "00:00:00.010", "ControlPlane:Kubernetes:RetryPeriod must be a TimeSpan like 00:00:02 between 00:00:00.1000000 and 00:01:00")]
    [InlineData("LeaseDurationSeconds", "15", "ControlPlane:Kubernetes:LeaseDurationSeconds is not a known setting")]
    public void Load_BadLeaseTiming_FailsNamingTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NewIdentity_PodNameAndRandomSuffix_DiffersPerProcessStart()
    {
        var first = ControlPlaneLeaderElection.NewIdentity("mesh-control-plane-7d9f-abcde");
        var second = ControlPlaneLeaderElection.NewIdentity("mesh-control-plane-7d9f-abcde");

        Assert.Matches("^mesh-control-plane-7d9f-abcde_[0-9a-f]{8}$", first);
        Assert.NotEqual(first, second);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>($"ControlPlane:Kubernetes:{v.Key}", v.Value)))
            .Build();
}
