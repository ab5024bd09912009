using Mesh.Sidecar.Hosting;
using Mesh.Sidecar.Inbound;
using Mesh.Sidecar.Outbound;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>Both proxies cut a request after Envoy's stream idle timeout (5 min), not YARP's 100 s default.</summary>
public sealed class StreamIdleTimeoutTests
{
    [Fact]
    public void EveryForwarderConfig_CarriesEnvoysStreamIdleTimeout()
    {
        Assert.Equal(TimeSpan.FromMinutes(5), SidecarTimeouts.StreamIdleTimeout);
        Assert.Equal(TimeSpan.FromMinutes(5), OutboundProxy.Http1.ActivityTimeout);
        Assert.Equal(TimeSpan.FromMinutes(5), OutboundProxy.Http2.ActivityTimeout);
        Assert.Equal(TimeSpan.FromMinutes(5), InboundForwarder.RequestConfig(SidecarAppProtocol.Http).ActivityTimeout);
        Assert.Equal(TimeSpan.FromMinutes(5), InboundForwarder.RequestConfig(SidecarAppProtocol.Http2).ActivityTimeout);
    }

    [Fact]
    public void InboundConfig_SpeaksTheAppsProtocolExactly()
    {
        Assert.Equal(System.Net.HttpVersion.Version20, InboundForwarder.RequestConfig(SidecarAppProtocol.Http2).Version);
        Assert.Equal(System.Net.HttpVersion.Version11, InboundForwarder.RequestConfig(SidecarAppProtocol.Http).Version);
        Assert.Equal(HttpVersionPolicy.RequestVersionExact, InboundForwarder.RequestConfig(SidecarAppProtocol.Http).VersionPolicy);
    }
}
