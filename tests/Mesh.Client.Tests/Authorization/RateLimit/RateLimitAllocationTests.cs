using Mesh.Client.Authorization.RateLimit;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests.Authorization.RateLimit;

public sealed class RateLimitAllocationTests
{
    /// <summary>The allowed path (caller's bucket, override, total, header values): nothing allocated per request for known callers.</summary>
    [Fact]
    public void TryAcquire_AllowedKnownCallers_AllocatesNothing()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var errors = new List<string>();
        var limiter = LocalRateLimiter.Compile(LocalRateLimiterTests.Config(total: 1_000_000, identity: 100_000, ("vip", 200_000)), "filter", errors, time)!;
        Assert.Empty(errors);
        string?[] peers = ["spiffe://cluster.local/ns/default/sa/alice", "spiffe://cluster.local/ns/default/sa/vip", null];

        var allowed = 0;
        var headerLength = 0;
        void Run(int count)
        {
            for (var i = 0; i < count; i++)
            {
                foreach (var peer in peers)
                {
                    allowed += limiter.TryAcquire(peer, out var status, out _) ? 1 : 0;
                    headerLength += LocalRateLimiter.HeaderValue(status.Limit % 4096).Length + LocalRateLimiter.HeaderValue(status.Remaining % 4096).Length + LocalRateLimiter.HeaderValue(status.ResetSeconds).Length;
                }
            }
        }

        Run(4096); // every cached header value up to 4095 exists afterwards
        var before = GC.GetAllocatedBytesForCurrentThread();
        Run(1000);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(3 * 5096, allowed);
        Assert.True(headerLength > 0);
    }
}
