using Mesh.Client.Discovery;
using Microsoft.Extensions.Time.Testing;

namespace Mesh.Client.Tests;

public sealed class OutlierDetectorTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan Base = TimeSpan.FromSeconds(30);

    private readonly FakeTimeProvider _time = new();

    [Fact]
    public void OnError_FiveConsecutive5xx_EjectsAtOnce()
    {
        var (cluster, endpoints) = Cluster(3, Settings());
        Sweep(cluster);

        for (var i = 0; i < 4; i++)
        {
            Assert.False(cluster.Outlier.OnError(endpoints[0], 500, Now));
        }

        Assert.True(cluster.Outlier.OnError(endpoints[0], 500, Now));
        Assert.True(endpoints[0].IsEjected(Now));
        Assert.Equal(1, endpoints[0].EjectionMultiplier);
    }

    [Fact]
    public void OnError_AlternatingWithSuccess_NeverEjects()
    {
        // Envoy's consecutive detectors: any non-5xx answer ends the streak, however fast the endpoint alternates.
        var (cluster, endpoints) = Cluster(3, Settings());
        for (var i = 0; i < 100; i++)
        {
            Assert.False(cluster.Outlier.OnError(endpoints[0], 500, Now));
            OutlierDetector.OnSuccess(endpoints[0]);
        }

        Assert.False(endpoints[0].IsEjected(Now));
    }

    [Fact]
    public void OnError_GatewayErrors_EjectOnlyWhenConfigured()
    {
        var (off, offEndpoints) = Cluster(3, Settings() with { Consecutive5xx = 0 });
        var (on, onEndpoints) = Cluster(3, Settings() with { Consecutive5xx = 0, ConsecutiveGatewayFailure = 2 });

        Assert.False(off.Outlier.OnError(offEndpoints[0], 503, Now));
        Assert.False(off.Outlier.OnError(offEndpoints[0], 503, Now));
        Assert.False(on.Outlier.OnError(onEndpoints[0], 502, Now));
        Assert.False(on.Outlier.OnError(onEndpoints[0], 500, Now)); // a 500 ends the gateway streak
        Assert.False(on.Outlier.OnError(onEndpoints[0], 504, Now));
        Assert.True(on.Outlier.OnError(onEndpoints[0], 503, Now));
    }

    [Fact]
    public void Sweep_UnejectsAfterBaseTimesMultiplier_AndOnlyAtTheSweep()
    {
        var (cluster, endpoints) = Cluster(3, Settings());
        Sweep(cluster);
        Eject(cluster, endpoints[0]);

        _time.Advance(TimeSpan.FromSeconds(29));
        Sweep(cluster);
        Assert.True(endpoints[0].IsEjected(Now));

        // 30 s have passed mid-interval: the endpoint stays out until the sweep at 30 s (sweeps every 10 s from 0).
        _time.Advance(TimeSpan.FromSeconds(1));
        Sweep(cluster);
        Assert.False(endpoints[0].IsEjected(Now));

        // The second ejection lasts twice the base.
        Eject(cluster, endpoints[0]);
        Assert.Equal(2, endpoints[0].EjectionMultiplier);
        _time.Advance(TimeSpan.FromSeconds(50));
        Sweep(cluster);
        Assert.True(endpoints[0].IsEjected(Now));
        _time.Advance(TimeSpan.FromSeconds(10));
        Sweep(cluster);
        Assert.False(endpoints[0].IsEjected(Now));
    }

    [Fact]
    public void Sweep_HealthyIntervals_DecayTheMultiplierBackToBase()
    {
        var (cluster, endpoints) = Cluster(3, Settings());
        Sweep(cluster);
        for (var round = 1; round <= 3; round++)
        {
            Eject(cluster, endpoints[0]);
            _time.Advance(Base * round);
            Sweep(cluster);
            Assert.False(endpoints[0].IsEjected(Now));
        }

        Assert.Equal(3, endpoints[0].EjectionMultiplier);

        // Each sweep that finds the endpoint in rotation takes one off (Envoy); three healthy intervals reset it.
        _time.Advance(Interval);
        Sweep(cluster);
        Assert.Equal(2, endpoints[0].EjectionMultiplier);
        _time.Advance(Interval * 2);
        Sweep(cluster);
        Assert.Equal(0, endpoints[0].EjectionMultiplier);

        Eject(cluster, endpoints[0]);
        Assert.Equal(1, endpoints[0].EjectionMultiplier);
    }

    [Fact]
    public void Eject_Repeatedly_IsCappedAtMaxEjectionTime()
    {
        var (cluster, endpoints) = Cluster(3, Settings() with { MaxEjectionTime = TimeSpan.FromSeconds(90) });
        Sweep(cluster);
        for (var round = 0; round < 10; round++)
        {
            Eject(cluster, endpoints[0]);
            _time.Advance(TimeSpan.FromSeconds(90));
            Sweep(cluster);
            Assert.False(endpoints[0].IsEjected(Now), $"round {round}: ejected longer than max_ejection_time");
        }

        Assert.Equal(4, endpoints[0].EjectionMultiplier); // stops growing once base × multiplier passes the maximum
    }

    [Theory]
    [InlineData(3, 10, 0)]
    [InlineData(3, 34, 1)]
    [InlineData(3, 66, 1)]
    [InlineData(3, 67, 2)]
    [InlineData(3, 100, 3)]
    [InlineData(4, 50, 2)]
    [InlineData(10, 0, 0)]
    public void OnError_EveryEndpointFailing_EjectsNoMoreThanMaxEjectionPercent(int count, int maxPercent, int expected)
    {
        var (cluster, endpoints) = Cluster(count, Settings() with { MaxEjectionPercent = maxPercent, PanicThresholdPercent = 0 });
        foreach (var endpoint in endpoints)
        {
            for (var i = 0; i < 20; i++)
            {
                cluster.Outlier.OnError(endpoint, 500, Now);
            }
        }

        Assert.Equal(expected, endpoints.Count(e => e.IsEjected(Now)));
        Assert.Equal(expected, cluster.Outlier.EjectedCount);
    }

    [Fact]
    public void AlwaysEjectOneHost_EjectsOneEvenAtZeroPercent()
    {
        var (cluster, endpoints) = Cluster(3, Settings() with { MaxEjectionPercent = 0, AlwaysEjectOneHost = true });
        Eject(cluster, endpoints[0]);
        for (var i = 0; i < 5; i++)
        {
            cluster.Outlier.OnError(endpoints[1], 500, Now);
        }

        Assert.Equal(1, cluster.Outlier.EjectedCount);
    }

    [Fact]
    public void PickEndpoint_BelowPanicThreshold_BalancesOverAllEndpoints()
    {
        var (cluster, endpoints) = Cluster(4, Settings() with { MaxEjectionPercent = 100, PanicThresholdPercent = 50 });
        Eject(cluster, endpoints[0]);
        Eject(cluster, endpoints[1]);
        Assert.False(cluster.Outlier.IsPanicking); // 2 of 4 healthy: 50 % is not below 50 %
        var picked = Enumerable.Range(0, 40).Select(_ => cluster.PickEndpoint(Now, _time.TimestampFrequency, null)!).ToHashSet();
        Assert.Equal([endpoints[2], endpoints[3]], picked.OrderBy(e => e.Port));

        Eject(cluster, endpoints[2]);
        Assert.True(cluster.Outlier.IsPanicking);
        picked = Enumerable.Range(0, 40).Select(_ => cluster.PickEndpoint(Now, _time.TimestampFrequency, null)!).ToHashSet();
        Assert.Equal(4, picked.Count);
    }

    [Fact]
    public void PickEndpoint_PanicDisabledAndAllEjected_ReturnsNull()
    {
        var (cluster, endpoints) = Cluster(2, Settings() with { MaxEjectionPercent = 100, PanicThresholdPercent = 0 });
        Eject(cluster, endpoints[0]);
        Eject(cluster, endpoints[1]);

        Assert.Null(cluster.PickEndpoint(Now, _time.TimestampFrequency, null));
    }

    [Fact]
    public void NewCluster_SameEndpoints_KeepsEjectionsAndCountsThem()
    {
        var (cluster, endpoints) = Cluster(3, Settings() with { MaxEjectionPercent = 34 });
        Eject(cluster, endpoints[0]);

        var next = new MeshCluster(cluster.Name, cluster.ServiceHost, cluster.Policy, cluster.Endpoints, cluster.OutlierDetection);
        for (var i = 0; i < 5; i++)
        {
            next.Outlier.OnError(endpoints[1], 500, Now);
        }

        Assert.True(endpoints[0].IsEjected(Now));
        Assert.False(endpoints[1].IsEjected(Now)); // a second ejection would pass 34 %
    }

    private long Now => _time.GetTimestamp();

    private static OutlierDetectionSettings Settings() =>
        OutlierDetectionSettings.EnvoyDefaults with { Interval = Interval, BaseEjectionTime = Base, MaxEjectionPercent = 100 };

    private static (MeshCluster Cluster, MeshEndpoint[] Endpoints) Cluster(int count, OutlierDetectionSettings settings)
    {
        var endpoints = Enumerable.Range(0, count).Select(i => new MeshEndpoint("10.0.0.1", 8000 + i)).ToArray();
        return (new MeshCluster("outbound|80||orders.default.svc.cluster.local", "orders.default.svc.cluster.local", LoadBalancingPolicy.RoundRobin, [.. endpoints], settings), endpoints);
    }

    private void Sweep(MeshCluster cluster) => cluster.Outlier.Sweep(Now, _time.TimestampFrequency);

    private void Eject(MeshCluster cluster, MeshEndpoint endpoint)
    {
        for (var i = 0; i < cluster.OutlierDetection.Consecutive5xx; i++)
        {
            cluster.Outlier.OnError(endpoint, 500, Now);
        }

        Assert.True(endpoint.IsEjected(Now));
    }
}
