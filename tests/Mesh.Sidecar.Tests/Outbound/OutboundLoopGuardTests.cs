using Mesh.Sidecar.Outbound;
using Microsoft.AspNetCore.Http;

namespace Mesh.Sidecar.Tests.Outbound;

/// <summary>The outbound port refuses a Host that would loop back into one of the sidecar's own listeners.</summary>
public sealed class OutboundLoopGuardTests
{
    private static readonly int[] OwnPorts = [15006, 15001, 15021];

    [Theory]
    [InlineData("localhost")]
    [InlineData("LOCALHOST")]
    [InlineData("LocalHost.")]
    [InlineData("localhost.")]
    [InlineData("api.localhost")]
    [InlineData("127.0.0.1")]
    [InlineData("127.1")]
    [InlineData("127.255.0.9")]
    [InlineData("0.0.0.0")]
    [InlineData("[::1]")]
    [InlineData("[::]")]
    [InlineData("[0:0:0:0:0:0:0:1]")]
    [InlineData("[::ffff:127.0.0.1]")]
    [InlineData("[::ffff:0.0.0.0]")]
    public void IsSelf_EverySpellingOfThisMachine_OnEachOwnPort(string host)
    {
        foreach (var port in OwnPorts)
        {
            Assert.True(OutboundProxy.IsSelf(new HostString(host, port), OwnPorts), $"{host}:{port}");
        }
    }

    [Theory]
    [InlineData("orders", 15001)]
    [InlineData("localhost.example", 15001)]
    [InlineData("10.0.0.5", 15006)]
    [InlineData("[::ffff:10.0.0.5]", 15006)]
    [InlineData("127.0.0.1", 8080)]
    [InlineData("localhost", 9999)]
    public void IsSelf_OtherHostsOrPorts_AreNot(string host, int port) =>
        Assert.False(OutboundProxy.IsSelf(new HostString(host, port), OwnPorts), $"{host}:{port}");

    [Fact]
    public void IsSelf_NoPort_IsPort80()
    {
        Assert.True(OutboundProxy.IsSelf(new HostString("localhost"), [80]));
        Assert.False(OutboundProxy.IsSelf(new HostString("localhost"), OwnPorts));
    }
}
