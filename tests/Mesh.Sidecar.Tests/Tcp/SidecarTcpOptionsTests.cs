using Mesh.Sidecar.Tcp;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Mesh.Sidecar.Tests.Tcp;

public sealed class SidecarTcpOptionsTests
{
    private static readonly Dictionary<string, string?> Valid = new()
    {
        ["Sidecar:Tcp:Outbound:0:Service"] = "db",
        ["Sidecar:Tcp:Outbound:0:Port"] = "5432",
        ["Sidecar:Tcp:Outbound:0:LocalPort"] = "15432",
        ["Sidecar:Tcp:Inbound:0:Name"] = "tcp-db",
        ["Sidecar:Tcp:Inbound:0:Port"] = "0",
        ["Sidecar:Tcp:Inbound:0:AppPort"] = "5432",
    };

    [Fact]
    public void Read_ValidTunnels_ReadsEveryField()
    {
        var options = SidecarTcpOptions.Read(Configuration(Valid, ("Sidecar:Tcp:IdleTimeout", "00:10:00")));

        Assert.Equal([new TcpOutboundTunnel("db", 5432, 15432)], options.Outbound.ToArray());
        Assert.Equal([new TcpInboundTunnel("tcp-db", 0, 5432)], options.Inbound.ToArray());
        Assert.Equal(TimeSpan.FromMinutes(10), options.IdleTimeout);
    }

    [Fact]
    public void Read_NoSection_NoTunnels_EnvoysIdleTimeout()
    {
        var options = SidecarTcpOptions.Read(Configuration([]));

        Assert.Empty(options.Outbound);
        Assert.Empty(options.Inbound);
        Assert.Equal(TimeSpan.FromHours(1), options.IdleTimeout);
    }

    [Theory]
    [InlineData("Sidecar:Tcp:Outbound:0:Service", null, "Sidecar:Tcp:Outbound:0:Service is required")]
    [InlineData("Sidecar:Tcp:Outbound:0:Service", "Orders", "Sidecar:Tcp:Outbound:0:Service must be a DNS name")]
    [InlineData("Sidecar:Tcp:Outbound:0:Service", "orders..default", "Sidecar:Tcp:Outbound:0:Service must be a DNS name")]
    [InlineData("Sidecar:Tcp:Outbound:0:Port", null, "Sidecar:Tcp:Outbound:0:Port is required")]
    [InlineData("Sidecar:Tcp:Outbound:0:Port", "0", "Sidecar:Tcp:Outbound:0:Port must be a port number 1–65535 (got '0')")]
    [InlineData("Sidecar:Tcp:Outbound:0:Port", "abc", "Sidecar:Tcp:Outbound:0:Port must be a port number 1–65535 (got 'abc')")]
    [InlineData("Sidecar:Tcp:Outbound:0:LocalPort", "65536", "Sidecar:Tcp:Outbound:0:LocalPort must be a port number 0–65535 (got '65536')")]
    [InlineData("Sidecar:Tcp:Outbound:0:LocalPort", "-1", "Sidecar:Tcp:Outbound:0:LocalPort must be a port number 0–65535")]
    [InlineData("Sidecar:Tcp:Outbound:0:LocalPort", null, "Sidecar:Tcp:Outbound:0:LocalPort is required")]
    [InlineData("Sidecar:Tcp:Outbound:0:Host", "db", "Sidecar:Tcp:Outbound:0:Host is not a known option")]
    [InlineData("Sidecar:Tcp:Outbound:first:Service", "db", "Sidecar:Tcp:Outbound:first is not a list index")]
    [InlineData("Sidecar:Tcp:Inbound:0:Name", null, "Sidecar:Tcp:Inbound:0:Name is required")]
    [InlineData("Sidecar:Tcp:Inbound:0:Name", "TCP_DB", "Sidecar:Tcp:Inbound:0:Name must be a port name")]
    [InlineData("Sidecar:Tcp:Inbound:0:Name", "http", "Sidecar:Tcp:Inbound:0:Name 'http' is the name the registration gives")]
    [InlineData("Sidecar:Tcp:Inbound:0:Name", "http-2", "Sidecar:Tcp:Inbound:0:Name 'http-2' is the name the registration gives")]
    [InlineData("Sidecar:Tcp:Inbound:0:Port", null, "Sidecar:Tcp:Inbound:0:Port is required")]
    [InlineData("Sidecar:Tcp:Inbound:0:Port", "99999", "Sidecar:Tcp:Inbound:0:Port must be a port number 0–65535 (got '99999')")]
    [InlineData("Sidecar:Tcp:Inbound:0:AppPort", "0", "Sidecar:Tcp:Inbound:0:AppPort must be a port number 1–65535 (got '0')")]
    [InlineData("Sidecar:Tcp:Inbound:0:AppPort", null, "Sidecar:Tcp:Inbound:0:AppPort is required")]
    [InlineData("Sidecar:Tcp:Inbound:0:Protocol", "tcp", "Sidecar:Tcp:Inbound:0:Protocol is not a known option")]
    [InlineData("Sidecar:Tcp:IdleTimeout", "soon", "Sidecar:Tcp:IdleTimeout must be a non-negative time span")]
    [InlineData("Sidecar:Tcp:IdleTimeout", "-00:00:01", "Sidecar:Tcp:IdleTimeout must be a non-negative time span")]
    [InlineData("Sidecar:Tcp:Outbounds:0:Service", "db", "Sidecar:Tcp:Outbounds is not a known option")]
    [InlineData("Sidecar:Tcp:Outbound", "db:5432", "Sidecar:Tcp:Outbound must be a list of tunnels")]
    public void Read_BadValue_ErrorNamesTheKey(string key, string? value, string expected)
    {
        var settings = new Dictionary<string, string?>(Valid) { [key] = value };
        if (value is null)
        {
            settings.Remove(key);
        }

        var error = Assert.Throws<OptionsValidationException>(() => SidecarTcpOptions.Read(Configuration(settings)));

        Assert.Contains(error.Failures, f => f.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void Read_SameLocalPortTwice_NamesBothTunnels()
    {
        var error = Assert.Throws<OptionsValidationException>(() => SidecarTcpOptions.Read(Configuration(Valid, ("Sidecar:Tcp:Inbound:0:Port", "15432"))));

        Assert.Contains("Sidecar:Tcp: port 15432 is the listening port of outbound db:5432 and inbound tcp-db", error.Failures);
    }

    [Fact]
    public void Read_SameServicePortTwice_Refused()
    {
        var error = Assert.Throws<OptionsValidationException>(() => SidecarTcpOptions.Read(Configuration(
            Valid, ("Sidecar:Tcp:Outbound:1:Service", "db"), ("Sidecar:Tcp:Outbound:1:Port", "5432"), ("Sidecar:Tcp:Outbound:1:LocalPort", "0"))));

        Assert.Contains("Sidecar:Tcp:Outbound:1: db:5432 is tunnelled twice", error.Failures);
    }

    [Fact]
    public void Read_SameInboundNameTwice_Refused()
    {
        var error = Assert.Throws<OptionsValidationException>(() => SidecarTcpOptions.Read(Configuration(
            Valid, ("Sidecar:Tcp:Inbound:1:Name", "tcp-db"), ("Sidecar:Tcp:Inbound:1:Port", "0"), ("Sidecar:Tcp:Inbound:1:AppPort", "5433"))));

        Assert.Contains("Sidecar:Tcp:Inbound:1:Name 'tcp-db' is used by two inbound tunnels", error.Failures);
    }

    [Fact]
    public void Read_SeveralBadValues_ReportsEveryOne()
    {
        var error = Assert.Throws<OptionsValidationException>(() => SidecarTcpOptions.Read(Configuration(
            Valid, ("Sidecar:Tcp:Outbound:0:Port", "x"), ("Sidecar:Tcp:Inbound:0:AppPort", "y"), ("Sidecar:Tcp:IdleTimeout", "z"))));

        Assert.Equal(3, error.Failures.Count());
    }

    private static IConfiguration Configuration(Dictionary<string, string?> settings, params (string Key, string? Value)[] extra)
    {
        var all = new Dictionary<string, string?>(settings);
        foreach (var (key, value) in extra)
        {
            all[key] = value;
        }

        return new ConfigurationBuilder().AddInMemoryCollection(all).Build();
    }
}
