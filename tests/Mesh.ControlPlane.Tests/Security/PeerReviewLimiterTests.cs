using Mesh.ControlPlane.Security;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.ControlPlane.Tests.Security;

/// <summary>One address's share of TokenReviews: in flight, burst and refill, its log lines, and what the table remembers.</summary>
public sealed class PeerReviewLimiterTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));

    /// <summary>A limiter with the defaults of ControlPlane:Kubernetes (a burst of 32, 8 a second) on the test's clock.</summary>
    private PeerReviewLimiter Limiter() => new(_time, burst: 32, reviewsPerSecond: 8);

    [Theory]
    [InlineData("ipv4:10.0.0.7:51234", "10.0.0.7")]
    [InlineData("ipv4:10.0.0.7:1", "10.0.0.7")]
    [InlineData("ipv6:[::1]:5000", "::1")]
    [InlineData("ipv6:[fd00::12:7]:443", "fd00::12:7")]
    [InlineData("ipv6:[FD00:0::12:7]:443", "fd00::12:7")]
    [InlineData("ipv6:[::ffff:10.0.0.7]:443", "10.0.0.7")]
    [InlineData("unknown", "(no IP address)")]
    [InlineData("unix:/tmp/cp.sock", "(no IP address)")]
    [InlineData("ipv4:", "(no IP address)")]
    [InlineData("ipv4:not-an-address:1", "(no IP address)")]
    public void AddressOf_OneKeyPerAddress_WhateverThePortOrSpelling(string peer, string address) =>
        Assert.Equal(address, PeerReviewLimiter.AddressOf(peer));

    [Fact]
    public void TryEnter_BurstThenRefill_OneReviewPerEighthOfASecond()
    {
        var limiter = Limiter();
        for (var i = 0; i < limiter.Burst; i++)
        {
            Assert.True(limiter.TryEnter("10.0.0.7", out var already, out _, out _));
            Assert.False(already);
            limiter.Exit("10.0.0.7", refund: false);
        }

        Assert.False(limiter.TryEnter("10.0.0.7", out _, out var refusal, out var reason));
        Assert.Equal("10.0.0.7 asked for more than 32 TokenReviews at once or 8 a second (ControlPlane:Kubernetes:TokenReviewBurstPerAddress, TokenReviewsPerAddressPerSecond); retry later", refusal);
        Assert.Equal(ReviewRefusal.AddressRate, reason);

        _time.Advance(TimeSpan.FromSeconds(1.0 / limiter.ReviewsPerSecond) - TimeSpan.FromTicks(1));
        Assert.False(limiter.TryEnter("10.0.0.7", out _, out _, out _));

        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(limiter.TryEnter("10.0.0.7", out _, out _, out _));
        limiter.Exit("10.0.0.7", refund: false);
        Assert.False(limiter.TryEnter("10.0.0.7", out _, out _, out _));

        // Another address has its own bucket.
        Assert.True(limiter.TryEnter("10.0.0.8", out _, out _, out _));

        // A long quiet refills the burst, never more.
        _time.Advance(TimeSpan.FromHours(1));
        var granted = 0;
        while (limiter.TryEnter("10.0.0.7", out _, out _, out _))
        {
            limiter.Exit("10.0.0.7", refund: false);
            granted++;
        }

        Assert.Equal(limiter.Burst, granted);
    }

    [Fact]
    public void TryEnter_ConfiguredBurstAndRate_Apply()
    {
        // A cluster behind one address: a larger burst and rate, as ControlPlane:Kubernetes sets them.
        var limiter = new PeerReviewLimiter(_time, burst: 500, reviewsPerSecond: 100);
        var granted = 0;
        while (limiter.TryEnter("10.0.0.7", out _, out _, out _))
        {
            limiter.Exit("10.0.0.7", refund: false);
            granted++;
        }

        Assert.Equal(500, granted);
        _time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.True(limiter.TryEnter("10.0.0.7", out _, out _, out _));
        Assert.False(limiter.TryEnter("10.0.0.7", out _, out var refusal, out _));
        Assert.Equal("10.0.0.7 asked for more than 500 TokenReviews at once or 100 a second (ControlPlane:Kubernetes:TokenReviewBurstPerAddress, TokenReviewsPerAddressPerSecond); retry later", refusal);
    }

    [Fact]
    public void Exit_Refund_GivesTheTokenBack()
    {
        var limiter = Limiter();
        for (var i = 0; i < limiter.Burst - 1; i++)
        {
            Assert.True(limiter.TryEnter("10.0.0.7", out _, out _, out _));
            limiter.Exit("10.0.0.7", refund: false);
        }

        // The last token, refused by the control plane's cap and given back: still there, once.
        Assert.True(limiter.TryEnter("10.0.0.7", out _, out _, out _));
        limiter.Exit("10.0.0.7", refund: true);
        Assert.True(limiter.TryEnter("10.0.0.7", out _, out _, out _));
        limiter.Exit("10.0.0.7", refund: false);
        Assert.False(limiter.TryEnter("10.0.0.7", out _, out _, out _));

        // An Exit with nothing in flight (or for an address never seen) changes nothing: no free tokens by exiting twice.
        limiter.Exit("10.0.0.7", refund: true);
        limiter.Exit("10.9.9.9", refund: true);
        Assert.False(limiter.TryEnter("10.0.0.7", out _, out _, out _));
    }

    [Fact]
    public void TryEnter_InFlightShareFull_RefusedUntilOneEnds_AndSaysWhoIsAlreadyReviewing()
    {
        var limiter = Limiter();
        for (var i = 0; i < PeerReviewLimiter.MaxInFlightPerPeer; i++)
        {
            Assert.True(limiter.TryEnter("fd00::7", out var already, out _, out _));
            Assert.Equal(i > 0, already);
        }

        Assert.False(limiter.TryEnter("fd00::7", out _, out var refusal, out var reason));
        Assert.Equal("4 TokenReviews from fd00::7 are already in flight; retry later", refusal);
        Assert.Equal(ReviewRefusal.AddressInFlight, reason);
        Assert.True(limiter.TryEnter("fd00::8", out var other, out _, out _));
        Assert.False(other);

        limiter.Exit("fd00::7", refund: false);
        Assert.True(limiter.TryEnter("fd00::7", out _, out _, out _));
    }

    [Fact]
    public void TakeLog_FirstThenOncePerInterval_CountingTheRest_PerAddress()
    {
        var limiter = Limiter();
        Assert.True(limiter.TakeLog("10.0.0.7", out var unlogged, out _));
        Assert.Equal(0, unlogged);
        for (var i = 0; i < 5; i++)
        {
            Assert.False(limiter.TakeLog("10.0.0.7", out _, out _));
        }

        // Another address is logged on its own.
        Assert.True(limiter.TakeLog("10.0.0.8", out _, out _));

        _time.Advance(PeerReviewLimiter.LogInterval - TimeSpan.FromTicks(1));
        Assert.False(limiter.TakeLog("10.0.0.7", out _, out _));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.True(limiter.TakeLog("10.0.0.7", out unlogged, out _));
        Assert.Equal(6, unlogged);
    }

    [Fact]
    public void TryEnter_TableFull_ForgetsAddressesWithNothingInFlight()
    {
        var limiter = Limiter();
        for (var i = 0; i < PeerReviewLimiter.MaxPeers; i++)
        {
            // Each spent a token a moment ago (its bucket is not full again yet) and its review ended.
            var address = $"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}";
            Assert.True(limiter.TryEnter(address, out _, out _, out _));
            limiter.Exit(address, refund: false);
        }

        Assert.True(limiter.TryEnter("10.0.0.1", out _, out _, out _)); // known: kept
        Assert.Equal(PeerReviewLimiter.MaxPeers, limiter.Count);

        Assert.True(limiter.TryEnter("192.168.0.1", out _, out _, out _));
        Assert.Equal(2, limiter.Count);
    }

    [Fact]
    public void TryEnter_TableFullOfReviewsInFlight_NewAddressRefused()
    {
        // Not reachable while the control plane's cap (16) is below MaxPeers; the table's bound holds anyway.
        var limiter = Limiter();
        for (var i = 0; i < PeerReviewLimiter.MaxPeers; i++)
        {
            Assert.True(limiter.TryEnter($"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", out _, out _, out _));
        }

        Assert.False(limiter.TryEnter("192.168.0.1", out _, out var refusal, out var reason));
        Assert.Equal("TokenReviews are in flight for 10000 addresses at once; retry later", refusal);
        Assert.Equal(ReviewRefusal.Addresses, reason);
        Assert.Equal(PeerReviewLimiter.MaxPeers, limiter.Count);
    }
}
