using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests.Kubernetes;

public sealed class KubernetesOptionsTests
{
    [Fact]
    public void Load_NoKubernetesKeys_WatchIdleTimeoutTwoMinutesAndClusterLocal()
    {
        var options = ControlPlaneOptions.Load(Config());

        Assert.Equal(TimeSpan.FromMinutes(2), options.Kubernetes.WatchIdleTimeout);
        Assert.Equal("cluster.local", options.Kubernetes.ClusterDomain);
    }

    [Fact]
    public void Load_WatchIdleTimeoutAndClusterDomain_Read()
    {
        var options = ControlPlaneOptions.Load(Config(("WatchIdleTimeout", "00:00:03"), ("ClusterDomain", "Corp.Example.")));

        Assert.Equal(TimeSpan.FromSeconds(3), options.Kubernetes.WatchIdleTimeout);
        Assert.Equal("corp.example", options.Kubernetes.ClusterDomain);
    }

    [Fact]
    public void Load_TokenReviewShareOfAnAddress_DefaultsAndRead()
    {
        var defaults = ControlPlaneOptions.Load(Config());
        Assert.Equal((32, 8), (defaults.Kubernetes.TokenReviewBurstPerAddress, defaults.Kubernetes.TokenReviewsPerAddressPerSecond));

        var options = ControlPlaneOptions.Load(Config(("TokenReviewBurstPerAddress", "2000"), ("TokenReviewsPerAddressPerSecond", "200")));
        Assert.Equal((2000, 200), (options.Kubernetes.TokenReviewBurstPerAddress, options.Kubernetes.TokenReviewsPerAddressPerSecond));
    }

    [Theory]
    [InlineData("WatchIdleTimeout", "soon", "ControlPlane:Kubernetes:WatchIdleTimeout must be a TimeSpan")]
    [InlineData("WatchIdleTimeout", "00:00:00", "ControlPlane:Kubernetes:WatchIdleTimeout must be a TimeSpan")]
    [InlineData("ClusterDomain", "cluster_local", "ControlPlane:Kubernetes:ClusterDomain must be a DNS name")]
    [InlineData("ClusterDomain", "a..b", "ControlPlane:Kubernetes:ClusterDomain must be a DNS name")]
    [InlineData("WatchIdelTimeout", "00:01:00", "ControlPlane:Kubernetes:WatchIdelTimeout is not a known setting")]
    [InlineData("TokenReviewBurstPerAddress", "0", "ControlPlane:Kubernetes:TokenReviewBurstPerAddress must be a whole number from 1 to 100000 (got '0')")]
    [InlineData("TokenReviewBurstPerAddress", "-5", "ControlPlane:Kubernetes:TokenReviewBurstPerAddress must be a whole number from 1 to 100000 (got '-5')")]
    [InlineData("TokenReviewsPerAddressPerSecond", "eight", "ControlPlane:Kubernetes:TokenReviewsPerAddressPerSecond must be a whole number from 1 to 10000 (got 'eight')")]
    [InlineData("TokenReviewsPerAddressPerSecond", "10001", "ControlPlane:Kubernetes:TokenReviewsPerAddressPerSecond must be a whole number from 1 to 10000 (got '10001')")]
    public void Load_BadValue_ErrorNamesTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>($"ControlPlane:Kubernetes:{v.Key}", v.Value)))
            .Build();
}
