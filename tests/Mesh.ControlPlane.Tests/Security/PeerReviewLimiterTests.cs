using Mesh.ControlPlane.Security;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>One address's share of TokenReviews: in flight, burst and refill, and what it remembers.</summary>
public sealed class PeerReviewLimiterTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));

    [Theory]
    [InlineData("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7")]
    [InlineData("ipv4:10.0.0.7:1", "ipv4:10.0.0.7")]
    [InlineData("ipv6:[::1]:5000", "ipv6:[::1]")]
    [InlineData("ipv6:[fd00::12:7]:443", "ipv6:[fd00::12:7]")]
    [InlineData("unix:/tmp/cp.sock", "unix:/tmp/cp.sock")]
    [InlineData("ipv4:", "ipv4:")]
    public void AddressOf_DropsOnlyThePort(string peer, string address) =>
        Assert.Equal(address, PeerReviewLimiter.AddressOf(peer));

    [Fact]
    public void TryEnter_BurstThenRefill_OneReviewPerEighthOfASecond()
    {
        var limiter = new PeerReviewLimiter(_time);
        for (var i = 0; i < PeerReviewLimiter.Burst; i++)
        {
            // Each from another source port: the same peer.
            Assert.Null(limiter.TryEnter($"ipv4:10.0.0.7:{40000 + i}"));
            limiter.Exit($"ipv4:10.0.0.7:{40000 + i}");
        }

        Assert.Equal("ipv4:10.0.0.7 asked for more than 32 TokenReviews at once or 8 a second; retry later", limiter.TryEnter("ipv4:10.0.0.7:50000"));

        _time.Advance(TimeSpan.FromSeconds(1.0 / PeerReviewLimiter.ReviewsPerSecond) - TimeSpan.FromMilliseconds(1));
        Assert.NotNull(limiter.TryEnter("ipv4:10.0.0.7:50001"));

        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Null(limiter.TryEnter("ipv4:10.0.0.7:50002"));
        Assert.NotNull(limiter.TryEnter("ipv4:10.0.0.7:50003"));

        // Another address has its own bucket.
        Assert.Null(limiter.TryEnter("ipv4:10.0.0.8:40000"));

        // A long quiet refills the burst, never more.
        _time.Advance(TimeSpan.FromHours(1));
        var granted = 0;
        while (limiter.TryEnter("ipv4:10.0.0.7:1") is null)
        {
            limiter.Exit("ipv4:10.0.0.7:1");
            granted++;
        }

        Assert.Equal(PeerReviewLimiter.Burst, granted);
    }

    [Fact]
    public void TryEnter_InFlightShareFull_RefusedUntilOneEnds()
    {
        var limiter = new PeerReviewLimiter(_time);
        for (var i = 0; i < PeerReviewLimiter.MaxInFlightPerPeer; i++)
        {
            Assert.Null(limiter.TryEnter("ipv6:[fd00::7]:" + i));
        }

        Assert.Equal("4 TokenReviews from ipv6:[fd00::7] are already in flight; retry later", limiter.TryEnter("ipv6:[fd00::7]:9"));
        Assert.Null(limiter.TryEnter("ipv6:[fd00::8]:9"));

        limiter.Exit("ipv6:[fd00::7]:0");
        Assert.Null(limiter.TryEnter("ipv6:[fd00::7]:10"));

        // An Exit for an address with nothing in flight (or never seen) changes nothing.
        limiter.Exit("ipv4:10.9.9.9:1");
        Assert.NotNull(limiter.TryEnter("ipv6:[fd00::7]:11"));
    }

    [Fact]
    public void TryEnter_TableFull_ForgetsIdleAddresses_RefusesNewOnesWhileAllAreBusy()
    {
        var limiter = new PeerReviewLimiter(_time);
        for (var i = 0; i < PeerReviewLimiter.MaxPeers; i++)
        {
            var peer = $"ipv4:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:1";
            Assert.Null(limiter.TryEnter(peer));
        }

        // Every remembered address has a review in flight: a new one is refused, as the control plane's cap would.
        Assert.Equal("TokenReviews are being asked for from 10000 addresses at once; retry later", limiter.TryEnter("ipv4:192.168.0.1:1"));
        Assert.Equal(PeerReviewLimiter.MaxPeers, limiter.Count);

        // Their reviews end and their buckets refill: the next new address makes room by forgetting them.
        for (var i = 0; i < PeerReviewLimiter.MaxPeers; i++)
        {
            limiter.Exit($"ipv4:10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:1");
        }

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(limiter.TryEnter("ipv4:192.168.0.1:1"));
        Assert.Equal(1, limiter.Count);
    }
}
