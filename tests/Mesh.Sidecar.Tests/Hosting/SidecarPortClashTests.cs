using Mesh.Sidecar.Hosting;

namespace Mesh.Sidecar.Tests.Hosting;

/// <summary>The sidecar's own ports and the TCP tunnels' listening ports are checked against each other at start.</summary>
public sealed class SidecarPortClashTests
{
    [Fact]
    public void Build_TunnelLocalPortIsTheInboundPortOnAnotherAddress_NamesBothKeys()
    {
        var error = Assert.Throws<SidecarConfigurationException>(() => SidecarHost.Build(
        [
            "--Sidecar:AppPort=8080",
            "--Sidecar:InboundPort=15006",
            "--Sidecar:InboundAddress=10.0.0.5",
            "--Sidecar:Tcp:Outbound:0:Service=db",
            "--Sidecar:Tcp:Outbound:0:Port=5432",
            "--Sidecar:Tcp:Outbound:0:LocalPort=15006",
        ]));

        Assert.Equal(["Sidecar:Tcp:Outbound:0:LocalPort (15006) is also Sidecar:InboundPort"], error.Errors);
    }

    [Fact]
    public void Build_InboundTunnelOnTheDefaultOutboundPort_NamesBothKeys()
    {
        var error = Assert.Throws<SidecarConfigurationException>(() => SidecarHost.Build(
        [
            "--Sidecar:AppPort=8080",
            "--Sidecar:Tcp:Inbound:0:Name=tcp-db",
            "--Sidecar:Tcp:Inbound:0:Port=15001",
            "--Sidecar:Tcp:Inbound:0:AppPort=5432",
        ]));

        Assert.Equal(["Sidecar:Tcp:Inbound:0:Port (15001) is also Sidecar:OutboundPort"], error.Errors);
    }

    [Theory]
    [InlineData("Sidecar:AdminPort", "15021")]
    [InlineData("Sidecar:AppPort", "8080")]
    public void Build_TunnelOnAnotherOwnPort_NamesBothKeys(string key, string port)
    {
        var error = Assert.Throws<SidecarConfigurationException>(() => SidecarHost.Build(
        [
            "--Sidecar:AppPort=8080",
            "--Sidecar:Tcp:Outbound:3:Service=db",
            "--Sidecar:Tcp:Outbound:3:Port=5432",
            $"--Sidecar:Tcp:Outbound:3:LocalPort={port}",
        ]));

        Assert.Equal([$"Sidecar:Tcp:Outbound:3:LocalPort ({port}) is also {key}"], error.Errors);
    }

    [Fact]
    public void Build_TwoOwnPortsAlike_OneErrorNamingBoth()
    {
        var error = Assert.Throws<SidecarConfigurationException>(() => SidecarHost.Build(["--Sidecar:AppPort=15001"]));

        Assert.Equal(["Sidecar:AppPort (15001) is also Sidecar:OutboundPort"], error.Errors);
    }

    [Fact]
    public void Build_TwoTunnelsAlike_OnlyTheTunnelsOwnError()
    {
        var error = Assert.Throws<SidecarConfigurationException>(() => SidecarHost.Build(
        [
            "--Sidecar:AppPort=8080",
            "--Sidecar:Tcp:Outbound:0:Service=db",
            "--Sidecar:Tcp:Outbound:0:Port=5432",
            "--Sidecar:Tcp:Outbound:0:LocalPort=15432",
            "--Sidecar:Tcp:Inbound:0:Name=tcp-db",
            "--Sidecar:Tcp:Inbound:0:Port=15432",
            "--Sidecar:Tcp:Inbound:0:AppPort=5432",
        ]));

        Assert.Single(error.Errors);
    }

    [Fact]
    public void Check_EphemeralPorts_AreNeverClashes()
    {
        var errors = new List<string>();
        var options = new SidecarOptions { AppPort = 8080, InboundPort = 0, OutboundPort = 0, AdminPort = 0 };

        SidecarPortCheck.Check(options, [("Sidecar:Tcp:Outbound:0:LocalPort", 0), ("Sidecar:Tcp:Inbound:0:Port", 0)], errors);

        Assert.Empty(errors);
    }
}
