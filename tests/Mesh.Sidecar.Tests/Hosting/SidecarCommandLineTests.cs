using Mesh.Sidecar.Hosting;
using Microsoft.Extensions.Configuration;

namespace Mesh.Sidecar.Tests.Hosting;

public sealed class SidecarCommandLineTests
{
    [Theory]
    [InlineData("--app-port", "8080", "Sidecar:AppPort")]
    [InlineData("--app-protocol", "http2", "Sidecar:AppProtocol")]
    [InlineData("--app-ready-path", "/ready", "Sidecar:AppReadyPath")]
    [InlineData("--inbound-port", "0", "Sidecar:InboundPort")]
    [InlineData("--inbound-address", "127.0.0.1", "Sidecar:InboundAddress")]
    [InlineData("--outbound-port", "15002", "Sidecar:OutboundPort")]
    [InlineData("--admin-port", "15022", "Sidecar:AdminPort")]
    [InlineData("--admin-address", "127.0.0.1", "Sidecar:AdminAddress")]
    [InlineData("--drain-duration", "00:00:01", "Sidecar:DrainDuration")]
    [InlineData("--passthrough-non-mesh-hosts", "true", "Sidecar:PassthroughNonMeshHosts")]
    [InlineData("--inline-io", "false", "Sidecar:InlineIo")]
    public void Flag_MapsToItsKey_BothSpellings(string flag, string value, string key)
    {
        Assert.Equal(value, Configuration(flag, value)[key]);
        Assert.Equal(value, Configuration($"{flag}={value}")[key]);
    }

    [Fact]
    public void Flags_ThenRead_GiveTheOptions()
    {
        var configuration = Configuration("--app-port", "9001", "--app-protocol", "http2", "--outbound-port", "0");
        var errors = new List<string>();

        var options = SidecarOptionsReader.Read(configuration, errors);

        Assert.Empty(errors);
        Assert.Equal(9001, options.AppPort);
        Assert.Equal(SidecarAppProtocol.Http2, options.AppProtocol);
        Assert.Equal(0, options.OutboundPort);
    }

    [Fact]
    public void BadFlagValue_IsReportedUnderItsKey()
    {
        var errors = new List<string>();

        SidecarOptionsReader.Read(Configuration("--app-port", "eighty"), errors);

        Assert.Contains(errors, e => e.StartsWith("Sidecar:AppPort 'eighty'", StringComparison.Ordinal));
    }

    private static IConfigurationRoot Configuration(params string[] args) =>
        new ConfigurationBuilder().AddCommandLine(args, SidecarCommandLine.SwitchMappings.ToDictionary()).Build();
}
