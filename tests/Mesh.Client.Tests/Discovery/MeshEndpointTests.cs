using System.Net;
using System.Net.Sockets;
using Mesh.Client.Discovery;

namespace Mesh.Client.Tests;

/// <summary>An endpoint builds its authority and socket address on first use; they must be what the eager ones were.</summary>
public sealed class MeshEndpointTests
{
    [Theory]
    [InlineData("10.0.0.1", 8080, "10.0.0.1:8080")]
    [InlineData("fd00::1", 8080, "[fd00::1]:8080")]
    [InlineData("::ffff:10.0.0.1", 80, "[::ffff:10.0.0.1]:80")]
    [InlineData("orders.example", 443, "orders.example:443")]
    public void Authority_IsAddressAndPort_BracketedForIPv6(string address, int port, string expected)
    {
        var endpoint = new MeshEndpoint(address, port);

        Assert.Equal(expected, endpoint.Authority);
        Assert.Equal(expected, endpoint.ToString());
        Assert.Same(endpoint.Authority, endpoint.Authority);
    }

    [Theory]
    [InlineData("10.0.0.1", AddressFamily.InterNetwork)]
    [InlineData("fd00::1", AddressFamily.InterNetworkV6)]
    public void EndPoint_OfAnIPAddress_IsAnIPEndPoint(string address, AddressFamily family)
    {
        var endpoint = new MeshEndpoint(address, 9090);

        var ip = Assert.IsType<IPEndPoint>(endpoint.EndPoint);
        Assert.Equal(IPAddress.Parse(address), ip.Address);
        Assert.Equal(family, ip.AddressFamily);
        Assert.Equal(9090, ip.Port);
        Assert.Same(endpoint.EndPoint, endpoint.EndPoint);
        Assert.Equal(IPAddress.Parse(address), endpoint.IPAddress);
    }

    [Theory]
    [InlineData("orders.example")]
    [InlineData("not:an:address")]
    public void EndPoint_OfAName_IsADnsEndPoint(string address)
    {
        var endpoint = new MeshEndpoint(address, 9090);

        var dns = Assert.IsType<DnsEndPoint>(endpoint.EndPoint);
        Assert.Equal(address, dns.Host);
        Assert.Equal(9090, dns.Port);
        Assert.Null(endpoint.IPAddress);

        // Not an IPv6 address: no brackets, as before the authority was built lazily.
        Assert.Equal($"{address}:9090", endpoint.Authority);
    }

    [Fact]
    public async Task Authority_FirstReadOnManyThreads_AllGetOneString()
    {
        var endpoint = new MeshEndpoint("10.0.0.7", 8080);
        using var start = new Barrier(8);
        var reads = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Factory.StartNew(
            () =>
            {
                start.SignalAndWait(TimeSpan.FromSeconds(30));
                return (endpoint.Authority, endpoint.EndPoint);
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default)));

        Assert.All(reads, r => Assert.Same(endpoint.Authority, r.Authority));
        Assert.All(reads, r => Assert.Same(endpoint.EndPoint, r.EndPoint));
    }

    [Fact]
    public void AuthorityAndEndPoint_AfterTheFirstRead_AllocateNothing()
    {
        // Every request reads the authority (its connection pool's key): built once, then only read.
        var endpoint = new MeshEndpoint("10.0.0.8", 8080);
        _ = endpoint.Authority;
        _ = endpoint.EndPoint;

        var before = GC.GetAllocatedBytesForCurrentThread();
        var length = 0;
        for (var i = 0; i < 1000; i++)
        {
            length += endpoint.Authority.Length;
            length += endpoint.EndPoint.AddressFamily == AddressFamily.InterNetwork ? 1 : 0;
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1000 * ("10.0.0.8:8080".Length + 1), length);
    }
}
