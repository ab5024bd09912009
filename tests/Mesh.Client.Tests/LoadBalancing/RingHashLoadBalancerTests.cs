using System.Collections.Immutable;
using System.Text;
using Mesh.Client.Discovery;
using Mesh.Client.LoadBalancing;

namespace Mesh.Client.Tests.LoadBalancing;

public sealed class RingHashLoadBalancerTests
{
    private const long Now = 1_000;

    [Theory]
    [InlineData("", 0xEF46DB3751D8E999UL)]
    [InlineData("a", 0xD24EC4F1A98C6E5BUL)]
    [InlineData("abc", 0x44BC2CF5AD770999UL)]
    [InlineData("Nobody inspects the spammish repetition", 0xFBCEA83C8A378BF1UL)]
    public void XxHash64_MatchesReferenceVectors(string input, ulong expected)
    {
        Assert.Equal(expected, XxHash64.Hash(Encoding.UTF8.GetBytes(input)));
        Assert.Equal(expected, XxHash64.HashUtf8(input));
    }

    [Fact]
    public void XxHash64_LongInput_UsesTheStripeLoopLikeTheReference()
    {
        // 100 bytes runs the 32-byte stripes, the 8-, 4- and 1-byte tails; a long key (> the stack buffer) rents.
        var text = new string('x', 100);
        Assert.Equal(XxHash64.Hash(Encoding.UTF8.GetBytes(text)), XxHash64.HashUtf8(text));
        var longText = new string('é', 1000);
        Assert.Equal(XxHash64.Hash(Encoding.UTF8.GetBytes(longText)), XxHash64.HashUtf8(longText));
    }

    [Fact]
    public void Ring_HasAtLeastTheMinimumSizeAndAtMostTheMaximum()
    {
        var endpoints = Endpoints(3);
        Assert.InRange(new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next).RingSize, 1024, 1026);
        Assert.InRange(new RingHashLoadBalancer([.. endpoints], new RingHashSettings(4096, RingHashSettings.MaxRingSize), Random.Shared.Next).RingSize, 4096, 4098);
        Assert.Equal(300, new RingHashLoadBalancer([.. endpoints], new RingHashSettings(1024, 300), Random.Shared.Next).RingSize);
    }

    [Fact]
    public void Pick_SameKey_SameEndpoint_AcrossRebuildsWithTheSameEndpointSet()
    {
        var endpoints = Endpoints(5);
        var first = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);

        // A snapshot update that keeps the endpoint set (new objects, other order) builds the same ring.
        var same = Endpoints(5).Reverse().ToArray();
        var second = new RingHashLoadBalancer([.. same], RingHashSettings.Default, Random.Shared.Next);
        for (var key = 0; key < 2000; key++)
        {
            var hash = XxHash64.HashUtf8($"user-{key}");
            var a = first.Pick(Now, null, hash)!;
            Assert.Same(a, first.Pick(Now, null, hash));
            Assert.Equal(a.Authority, second.Pick(Now, null, hash)!.Authority);
        }
    }

    [Fact]
    public void Pick_EndpointRemoved_OnlyItsKeysMove()
    {
        var endpoints = Endpoints(5);
        var before = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        var removed = endpoints[2];
        var after = new RingHashLoadBalancer([.. endpoints.Where(e => e != removed)], RingHashSettings.Default, Random.Shared.Next);

        var orphaned = 0;
        var kept = 0;
        const int Keys = 5000;
        for (var key = 0; key < Keys; key++)
        {
            var hash = XxHash64.HashUtf8($"session-{key}");
            var old = before.Pick(Now, null, hash)!;
            var now = after.Pick(Now, null, hash)!;
            if (old == removed)
            {
                orphaned++;
                Assert.NotSame(removed, now);
            }
            else if (old == now)
            {
                kept++;
            }
        }

        // The removed endpoint owned about a fifth of the keys. As in Envoy, the ring is rescaled to the minimum size over
        // the endpoints left (205 → 256 points each here), and those new points take ~20 % of the ring; every other key
        // stays. Modulo hashing would move 80 % of all keys.
        Assert.InRange(orphaned, Keys / 5 * 0.7, Keys / 5 * 1.3);
        Assert.True(kept >= (Keys - orphaned) * 0.75, $"only {kept} of {Keys - orphaned} keys of the remaining endpoints stayed");
    }

    [Fact]
    public void Pick_ManyKeys_SpreadByWeight()
    {
        var endpoints = new[] { new MeshEndpoint("10.0.0.1", 80, weight: 1), new MeshEndpoint("10.0.0.2", 80, weight: 1), new MeshEndpoint("10.0.0.3", 80, weight: 2) };
        var balancer = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        var counts = endpoints.ToDictionary(e => e, _ => 0);
        const int Keys = 20_000;
        for (var key = 0; key < Keys; key++)
        {
            counts[balancer.Pick(Now, null, XxHash64.HashUtf8($"k{key}"))!]++;
        }

        Assert.InRange(counts[endpoints[0]], Keys * 0.25 * 0.8, Keys * 0.25 * 1.2);
        Assert.InRange(counts[endpoints[1]], Keys * 0.25 * 0.8, Keys * 0.25 * 1.2);
        Assert.InRange(counts[endpoints[2]], Keys * 0.5 * 0.85, Keys * 0.5 * 1.15);
    }

    /// <summary>
    /// The attacker's path: a caller who varies the hash header at will cannot pile its requests on one endpoint beyond that
    /// endpoint's share of the ring: every key an attacker may choose maps through the same ring, so the best it can do is
    /// hunt keys that land on one endpoint — which it then shares with every key there, and never exceeds one endpoint.
    /// Sequential, similar keys (what a naive caller varies) must not cluster either.
    /// </summary>
    [Fact]
    public void Pick_VaryingKeys_NeverConcentrateBeyondTheRingShare()
    {
        var endpoints = Endpoints(4);
        var balancer = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        foreach (var pattern in new Func<int, string>[] { i => i.ToString(System.Globalization.CultureInfo.InvariantCulture), i => "aaaa" + (char)('a' + (i % 26)) + (i / 26), i => new string('x', i % 64) + i })
        {
            var counts = endpoints.ToDictionary(e => e, _ => 0);
            const int Keys = 8000;
            for (var i = 0; i < Keys; i++)
            {
                counts[balancer.Pick(Now, null, XxHash64.HashUtf8(pattern(i)))!]++;
            }

            Assert.All(counts.Values, c => Assert.InRange(c, Keys / 4 * 0.75, Keys / 4 * 1.25));
        }
    }

    [Fact]
    public void Pick_WithoutKey_SpreadsAtRandom()
    {
        var endpoints = Endpoints(4);
        var balancer = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        var counts = endpoints.ToDictionary(e => e, _ => 0);
        for (var i = 0; i < 8000; i++)
        {
            counts[balancer.Pick(Now, null)!]++;
        }

        Assert.All(counts.Values, c => Assert.InRange(c, 2000 * 0.8, 2000 * 1.2));
    }

    [Fact]
    public void Pick_OwnerEjectedOrAvoided_NextEndpointOnTheRing_AndBackWhenItRecovers()
    {
        var endpoints = Endpoints(3);
        var balancer = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        var hash = XxHash64.HashUtf8("sticky");
        var owner = balancer.Pick(Now, null, hash)!;

        var other = balancer.Pick(Now, owner, hash)!;
        Assert.NotSame(owner, other);

        Assert.True(owner.TryEject(Now, maxMultiplier: 1));
        Assert.Same(other, balancer.Pick(Now, null, hash));

        owner.Uneject();
        Assert.Same(owner, balancer.Pick(Now, null, hash));
    }

    [Fact]
    public void Pick_EdsUnhealthyEndpoints_AreNotOnTheRing()
    {
        var sick = new MeshEndpoint("10.0.0.9", 80, isHealthy: false);
        var endpoints = Endpoints(2).Append(sick).ToArray();
        var balancer = new RingHashLoadBalancer([.. endpoints], RingHashSettings.Default, Random.Shared.Next);
        for (var key = 0; key < 500; key++)
        {
            Assert.NotSame(sick, balancer.Pick(Now, null, XxHash64.HashUtf8($"k{key}")));
        }
    }

    [Fact]
    public void Registry_NamesEveryPolicy_AndBuildsIt()
    {
        Assert.Equal(["LEAST_REQUEST", "RANDOM", "RING_HASH", "ROUND_ROBIN"], LoadBalancerRegistry.Names.Order(StringComparer.Ordinal));
        foreach (var policy in Enum.GetValues<LoadBalancingPolicy>())
        {
            var balancer = LoadBalancerFactory.Create(policy, [.. Endpoints(2)]);
            Assert.Equal(LoadBalancerRegistry.NameOf(policy), balancer.Name);
        }
    }

    internal static MeshEndpoint[] Endpoints(int count) =>
        Enumerable.Range(1, count).Select(i => new MeshEndpoint($"10.0.0.{i}", 8080)).ToArray();
}
