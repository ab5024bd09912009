using Mesh.Sidecar.Hosting;
using Microsoft.Extensions.Configuration;

namespace Mesh.Sidecar.Tests.Hosting;

public sealed class SidecarOptionsReaderTests
{
    [Fact]
    public void Read_OnlyAppPort_DefaultsOfTheRunContract()
    {
        var (options, errors) = Read(("Sidecar:AppPort", "8080"));

        Assert.Empty(errors);
        Assert.Equal(8080, options.AppPort);
        Assert.Equal(SidecarAppProtocol.Http, options.AppProtocol);
        Assert.Equal(15006, options.InboundPort);
        Assert.Equal(15001, options.OutboundPort);
        Assert.Equal(15021, options.AdminPort);
        Assert.Equal(System.Net.IPAddress.Any, options.InboundAddress);
        Assert.Equal(System.Net.IPAddress.Any, options.AdminAddress);
        Assert.False(options.PassthroughNonMeshHosts);
        Assert.Equal(TimeSpan.FromSeconds(5), options.DrainDuration);
        Assert.Null(options.AppReadyPath);
        Assert.True(options.InlineIo);
    }

    [Fact]
    public void Read_EverySetting_IsBound()
    {
        var (options, errors) = Read(
            ("Sidecar:AppPort", "9000"),
            ("Sidecar:AppProtocol", "HTTP2"),
            ("Sidecar:InboundPort", "0"),
            ("Sidecar:InboundAddress", "127.0.0.1"),
            ("Sidecar:OutboundPort", "0"),
            ("Sidecar:AdminPort", "0"),
            ("Sidecar:AdminAddress", "::1"),
            ("Sidecar:PassthroughNonMeshHosts", "true"),
            ("Sidecar:DrainDuration", "00:00:12"),
            ("Sidecar:AppReadyPath", "/healthz"),
            ("Sidecar:InlineIo", "False"));

        Assert.Empty(errors);
        Assert.Equal(SidecarAppProtocol.Http2, options.AppProtocol);
        Assert.Equal(0, options.InboundPort);
        Assert.Equal(System.Net.IPAddress.Loopback, options.InboundAddress);
        Assert.Equal(System.Net.IPAddress.IPv6Loopback, options.AdminAddress);
        Assert.True(options.PassthroughNonMeshHosts);
        Assert.Equal(TimeSpan.FromSeconds(12), options.DrainDuration);
        Assert.Equal("/healthz", options.AppReadyPath);
        Assert.False(options.InlineIo);
    }

    [Theory]
    [InlineData(null, "Sidecar:AppPort is required")]
    [InlineData("0", "Sidecar:AppPort '0' must be a port between 1 and 65535")]
    [InlineData("65536", "Sidecar:AppPort '65536' must be a port between 1 and 65535")]
    [InlineData("-1", "Sidecar:AppPort '-1' must be a port between 1 and 65535")]
    [InlineData("http", "Sidecar:AppPort 'http' must be a port")]
    public void Read_BadAppPort_NamesTheKey(string? value, string expected)
    {
        var (_, errors) = Read(("Sidecar:AppPort", value));

        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("Sidecar:AppProtocol", "grpc", "Sidecar:AppProtocol 'grpc' must be http")]
    [InlineData("Sidecar:AppProtocol", "h2c", "Sidecar:AppProtocol 'h2c' must be http")]
    [InlineData("Sidecar:InboundPort", "70000", "Sidecar:InboundPort '70000' must be a port between 0")]
    [InlineData("Sidecar:OutboundPort", "x", "Sidecar:OutboundPort 'x' must be a port between 0")]
    [InlineData("Sidecar:AdminPort", "-5", "Sidecar:AdminPort '-5' must be a port between 0")]
    [InlineData("Sidecar:InboundAddress", "localhost", "Sidecar:InboundAddress 'localhost' must be an IP address")]
    [InlineData("Sidecar:AdminAddress", "0.0.0", "Sidecar:AdminAddress '0.0.0' must be an IP address")]
    [InlineData("Sidecar:PassthroughNonMeshHosts", "yes", "Sidecar:PassthroughNonMeshHosts 'yes' must be true or false")]
    [InlineData("Sidecar:InlineIo", "off", "Sidecar:InlineIo 'off' must be true or false")]
    [InlineData("Sidecar:InlineIo", "", "Sidecar:InlineIo '' must be true or false")]
    [InlineData("Sidecar:DrainDuration", "5s", "Sidecar:DrainDuration '5s' must be a duration")]
    [InlineData("Sidecar:DrainDuration", "-00:00:01", "Sidecar:DrainDuration '-00:00:01' must be a duration")]
    [InlineData("Sidecar:AppReadyPath", "healthz", "Sidecar:AppReadyPath 'healthz' must be an absolute path")]
    [InlineData("Sidecar:AppReadyPath", "//evil.example/x", "Sidecar:AppReadyPath '//evil.example/x' must be an absolute path")]
    [InlineData("Sidecar:AppPortt", "8080", "Sidecar:AppPortt is not a sidecar setting")]
    [InlineData("Sidecar:Outbound:Port", "1", "Sidecar:Outbound is not a sidecar setting")]
    public void Read_BadValue_NamesTheKey(string key, string value, string expected)
    {
        var (_, errors) = Read(("Sidecar:AppPort", "8080"), (key, value));

        Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Read_TcpSection_IsLeftToTheTunnels()
    {
        var (_, errors) = Read(("Sidecar:AppPort", "8080"), ("Sidecar:Tcp:Outbound:0:Service", "postgres"), ("Sidecar:Tcp:Anything", "x"));

        Assert.Empty(errors);
    }

    [Fact]
    public void Read_EphemeralPorts_AreNotClashes()
    {
        var (_, errors) = Read(("Sidecar:AppPort", "8080"), ("Sidecar:InboundPort", "0"), ("Sidecar:OutboundPort", "0"), ("Sidecar:AdminPort", "0"));

        Assert.Empty(errors);
    }

    [Fact]
    public void Read_SeveralBadKeys_ReportsEveryOne()
    {
        var (_, errors) = Read(("Sidecar:AppProtocol", "tcp"), ("Sidecar:AdminPort", "x"), ("Sidecar:Bogus", "1"));

        Assert.Equal(4, errors.Count); // AppPort missing, AppProtocol, AdminPort, Bogus
    }

    internal static (SidecarOptions Options, List<string> Errors) Read(params (string Key, string? Value)[] settings)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)))
            .Build();
        var errors = new List<string>();
        return (SidecarOptionsReader.Read(configuration, errors), errors);
    }
}
