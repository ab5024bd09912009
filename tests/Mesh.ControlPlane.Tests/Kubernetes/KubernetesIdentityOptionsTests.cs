using Mesh.ControlPlane.Configuration;
using Microsoft.Extensions.Configuration;

namespace Mesh.ControlPlane.Tests.Kubernetes;

/// <summary>The identity and webhook settings of ControlPlane:Kubernetes and ControlPlane:Ca:CaCertsDirectory.</summary>
public class KubernetesIdentityOptionsTests
{
    [Fact]
    public void Load_Defaults()
    {
        var options = ControlPlaneOptions.Load(Config(("Kubernetes:SystemNamespace", "mesh-system")));

        Assert.Equal(TimeSpan.FromSeconds(5), options.Kubernetes.TokenReviewTimeout);
        Assert.Equal(["istio-ca"], options.Kubernetes.TokenAudiences.ToArray());
        Assert.Null(options.Kubernetes.WebhookAddress);
        Assert.Equal("mesh-control-plane", options.Kubernetes.WebhookServiceName);
        Assert.Equal("mesh-control-plane.mesh-system.svc", options.Kubernetes.WebhookDnsName);
        Assert.Null(options.Ca.CaCertsDirectory);
    }

    [Fact]
    public void Load_WebhookSettings()
    {
        var options = ControlPlaneOptions.Load(Config(
            ("Kubernetes:WebhookAddress", "https://0.0.0.0:15017"), ("Kubernetes:WebhookServiceName", "validator"), ("Kubernetes:SystemNamespace", "istio-system"),
            ("Kubernetes:TokenReviewTimeout", "00:00:02")));

        Assert.Equal(new Uri("https://0.0.0.0:15017"), options.Kubernetes.WebhookAddress);
        Assert.Equal("validator.istio-system.svc", options.Kubernetes.WebhookDnsName);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Kubernetes.TokenReviewTimeout);
    }

    [Fact]
    public void Load_EmptyWebhookAddress_Off()
    {
        Assert.Null(ControlPlaneOptions.Load(Config(("Kubernetes:WebhookAddress", ""))).Kubernetes.WebhookAddress);
    }

    [Theory]
    [InlineData("Kubernetes:TokenReviewTimeout", "fast", "ControlPlane:Kubernetes:TokenReviewTimeout must be a TimeSpan like 00:00:05 between 00:00:00.1000000 and 00:01:00 (got 'fast')")]
    [InlineData("Kubernetes:TokenReviewTimeout", "00:05:00", "ControlPlane:Kubernetes:TokenReviewTimeout must be a TimeSpan")]
    [InlineData("Kubernetes:WebhookAddress", "http://127.0.0.1:15017", "ControlPlane:Kubernetes:WebhookAddress must be an absolute https URI like https://0.0.0.0:15017 whose host is an IP address or localhost (got 'http://127.0.0.1:15017')")]
    [InlineData("Kubernetes:WebhookAddress", "https://mesh.example:15017", "ControlPlane:Kubernetes:WebhookAddress must be an absolute https URI")]
    [InlineData("Kubernetes:WebhookAddress", "https://127.0.0.1:15017/validate", "ControlPlane:Kubernetes:WebhookAddress must be an absolute https URI")]
    [InlineData("Kubernetes:WebhookAddress", "https://127.0.0.1:15012", "ControlPlane:Kubernetes:WebhookAddress must use a different port than ControlPlane:SecureAddress")]
    [InlineData("Kubernetes:WebhookServiceName", "Mesh_CP", "ControlPlane:Kubernetes:WebhookServiceName must be a Service name (a DNS label, got 'Mesh_CP')")]
    [InlineData("Kubernetes:Webhook", "on", "ControlPlane:Kubernetes:Webhook is not a known setting")]
    [InlineData("Ca:CaCertsDirectory", " ", "ControlPlane:Ca:CaCertsDirectory must be a directory path (where the cacerts Secret is mounted)")]
    public void Load_InvalidValue_FailsNamingTheKey(string key, string value, string expected)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => ControlPlaneOptions.Load(Config((key, value))));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>("ControlPlane:" + v.Key, v.Value))).Build();
}
