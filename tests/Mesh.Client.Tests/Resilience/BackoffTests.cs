using Mesh.Xds.Retry;

namespace Mesh.Client.Tests.Resilience;

public sealed class BackoffTests
{
    [Theory]
    [InlineData(1, 0.0, 0)]
    [InlineData(1, 0.999, 999)]
    [InlineData(3, 0.5, 2000)]
    [InlineData(10, 0.999, 29_970)]
    [InlineData(int.MaxValue, 0.5, 15_000)]
    public void Reconnect_doubles_from_the_initial_delay_up_to_the_cap_with_full_jitter(int attempt, double random, int expectedMs)
    {
        var delay = Backoff.Reconnect(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(30), attempt, random);

        Assert.Equal(expectedMs, delay.TotalMilliseconds, precision: 0);
    }

    [Fact]
    public void Reconnect_with_a_minimum_share_never_waits_less_than_that_share_of_the_ceiling()
    {
        Assert.Equal(2000, Backoff.Reconnect(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(1), 3, random: 0, minShare: 0.5).TotalMilliseconds);
        Assert.Equal(4000, Backoff.Reconnect(TimeSpan.FromSeconds(1), TimeSpan.FromMinutes(1), 3, random: 1, minShare: 0.5).TotalMilliseconds);
    }

    [Theory]
    [InlineData(1, 25)]
    [InlineData(2, 75)]
    [InlineData(3, 175)]
    [InlineData(4, 250)]
    [InlineData(60, 250)]
    public void Retry_is_envoys_2n_minus_1_times_base_capped_at_the_maximum(int retry, int ceilingMs)
    {
        Assert.Equal(ceilingMs, Backoff.Retry(TimeSpan.FromMilliseconds(25), TimeSpan.FromMilliseconds(250), retry, random: 1).TotalMilliseconds);
        Assert.Equal(0, Backoff.Retry(TimeSpan.FromMilliseconds(25), TimeSpan.FromMilliseconds(250), retry, random: 0).TotalMilliseconds);
    }

    [Fact]
    public void Retry_saturates_at_the_maximum_for_a_base_of_weeks_instead_of_overflowing()
    {
        Assert.Equal(TimeSpan.FromDays(49), Backoff.Retry(TimeSpan.FromDays(40), TimeSpan.FromDays(49), 30, random: 1));
    }
}
