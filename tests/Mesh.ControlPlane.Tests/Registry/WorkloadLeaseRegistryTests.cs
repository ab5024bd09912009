using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Registry;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Tests.Support;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using static Mesh.ControlPlane.Tests.TestModels;

namespace Mesh.ControlPlane.Tests.Registry;

public sealed class WorkloadLeaseRegistryTests : IDisposable
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), "mesh-cp-state-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public void Dispose()
    {
        if (Directory.Exists(_state))
        {
            Directory.Delete(_state, recursive: true);
        }
    }

    [Fact]
    public void Register_SameIdentityTwice_ReturnsSameLeaseAndOneWorkload()
    {
        var registry = NewRegistry();
        var changes = 0;
        registry.Changed += () => changes++;

        var first = registry.Register(Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }), null);
        var second = registry.Register(Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }), null);

        Assert.Equal(first.Id, second.Id);
        Assert.Single(registry.Workloads());
        Assert.Equal(1, changes);
        Assert.Equal(TimeSpan.FromSeconds(10), first.Ttl);
    }

    [Fact]
    public void Register_DifferentLabels_CreatesSecondLease()
    {
        var registry = NewRegistry();
        var a = registry.Register(Workload("10.0.0.1"), null);
        var b = registry.Register(Workload("10.0.0.1", labels: new Dictionary<string, string> { ["app"] = "payments" }), null);

        Assert.NotEqual(a.Id, b.Id);
        Assert.Equal(2, registry.Workloads().Length);
    }

    [Theory]
    [InlineData(0.1, 1)]
    [InlineData(30, 30)]
    [InlineData(3600, 300)]
    public void Register_RequestedTtl_IsClampedToOneSecondToFiveMinutes(double requestedSeconds, double expectedSeconds)
    {
        var lease = NewRegistry().Register(Workload("10.0.0.1"), TimeSpan.FromSeconds(requestedSeconds));
        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), lease.Ttl);
    }

    [Fact]
    public void Renew_BeforeExpiry_ExtendsLease()
    {
        var registry = NewRegistry();
        var lease = registry.Register(Workload("10.0.0.1"), null);

        _time.Advance(TimeSpan.FromSeconds(8));
        Assert.NotNull(registry.Renew(lease.Id));
        _time.Advance(TimeSpan.FromSeconds(8));

        Assert.Equal(0, registry.RemoveExpired());
        Assert.Single(registry.Workloads());
    }

    [Fact]
    public void Renew_UnknownOrExpired_ReturnsNull()
    {
        var registry = NewRegistry();
        var lease = registry.Register(Workload("10.0.0.1"), null);
        _time.Advance(TimeSpan.FromSeconds(11));

        Assert.Null(registry.Renew(lease.Id));
        Assert.Null(registry.Renew("nope"));
    }

    [Fact]
    public void Deregister_KnownLease_RemovesAndRaisesChanged()
    {
        var registry = NewRegistry();
        var lease = registry.Register(Workload("10.0.0.1"), null);
        var changed = false;
        registry.Changed += () => changed = true;

        Assert.True(registry.Deregister(lease.Id));
        Assert.True(changed);
        Assert.Empty(registry.Workloads());
        Assert.False(registry.Deregister(lease.Id));
    }

    [Fact]
    public async Task ExpiryLoop_LeaseNotRenewed_RemovesWorkloadAndRaisesChanged()
    {
        var registry = NewRegistry();
        registry.Register(Workload("10.0.0.1"), TimeSpan.FromSeconds(2));
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        registry.Changed += () => removed.TrySetResult();
        using var loop = new LeaseExpiryService(registry, ValidConfig(), _time);
        await loop.StartAsync(CancellationToken.None);

        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Single(registry.Workloads());
        _time.Advance(TimeSpan.FromSeconds(1) + LeaseExpiryService.Period);

        await removed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(registry.Workloads());
        await loop.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task ExpiryLoop_NoValidConfig_HoldsLeasesUntilOneTtlAfterRenewalsArePossibleAgain()
    {
        // A control plane restarted on an invalid folder refuses renewals; its outage must not deregister the workloads.
        var registry = NewRegistry();
        registry.Register(Workload("10.0.0.1"), TimeSpan.FromSeconds(2));
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        registry.Changed += () => removed.TrySetResult();
        using var loop = new LeaseExpiryService(registry, store, _time);
        await loop.StartAsync(CancellationToken.None);

        // Five TTLs of fake time, one timer period at a time, each step waiting for the loop to have held the lease.
        for (var i = 0; i < 40; i++)
        {
            _time.Advance(LeaseExpiryService.Period);
            var now = _time.GetUtcNow();
            await Poll.UntilAsync(() => registry.Leases()[0].ExpiresAt >= now + TimeSpan.FromSeconds(2), $"the expiry loop to hold the lease at step {i}");
        }

        Assert.Single(registry.Workloads());
        Assert.NotNull(registry.Renew(registry.Leases()[0].Id));

        // Fixed: from now on an unrenewed lease expires as usual, one TTL later.
        Assert.True(store.ApplyYaml(new YamlLoadResult(YamlConfig.Empty, [])));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Single(registry.Workloads());
        _time.Advance(TimeSpan.FromSeconds(1) + LeaseExpiryService.Period);
        await removed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(registry.Workloads());
        await loop.StopAsync(CancellationToken.None);
    }

    private static ConfigStore ValidConfig()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        Assert.True(store.ApplyYaml(new YamlLoadResult(YamlConfig.Empty, [])));
        return store;
    }

    [Fact]
    public void LoadState_AfterRestart_RestoresLeasesWithFreshDeadline()
    {
        var registry = NewRegistry();
        var lease = registry.Register(Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }, locality: "eu/west", weight: 3), TimeSpan.FromSeconds(30));
        Assert.True(File.Exists(registry.StateFile));
        Assert.False(File.Exists(registry.StateFile + ".tmp"));

        _time.Advance(TimeSpan.FromMinutes(10));
        var restarted = NewRegistry();
        restarted.LoadState();

        var restored = Assert.Single(restarted.Leases());
        Assert.Equal(lease.Id, restored.Id);
        Assert.Equal(lease.Workload.Address, restored.Workload.Address);
        Assert.Equal(5001u, restored.Workload.Ports["http"]);
        Assert.Equal("orders", restored.Workload.Labels["app"]);
        Assert.Equal(("eu/west", 3u, EndpointSources.Registration), (restored.Workload.Locality, restored.Workload.Weight, restored.Workload.Source));
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(10), restored.ExpiresAt);
        Assert.NotNull(restarted.Renew(lease.Id));
        Assert.Equal(lease.Id, restarted.Register(Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }, locality: "eu/west", weight: 3), null).Id);
    }

    [Fact]
    public void LoadState_DamagedEntries_SkippedWithAWarningNamingFileAndIndexGoodOnesRestored()
    {
        var lease = NewRegistry().Register(Workload("10.0.0.1", new Dictionary<string, uint> { ["http"] = 5001 }), null);
        var restarted = NewRegistry();
        var good = File.ReadAllText(restarted.StateFile).Trim().TrimStart('[').TrimEnd(']');

        // A hand edit or a bad merge: a null entry, an empty one, one without leaseId, then the good one.
        File.WriteAllText(restarted.StateFile, $$"""[null, {}, {"namespace": "default", "name": "w", "address": "10.0.0.2"}, {{good}}]""");
        using var logs = new LogSink();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs));
        restarted = new WorkloadLeaseRegistry(new ControlPlaneOptions { StateDirectory = _state }, _time, loggers.CreateLogger<WorkloadLeaseRegistry>());

        restarted.LoadState();

        Assert.Equal(lease.Id, Assert.Single(restarted.Leases()).Id);
        Assert.Equal(
            [
                $"Warning Registration state {restarted.StateFile} entry 0: the entry is null; the entry is ignored (its workload registers again at its next renewal)",
                $"Warning Registration state {restarted.StateFile} entry 1: leaseId is required; the entry is ignored (its workload registers again at its next renewal)",
                $"Warning Registration state {restarted.StateFile} entry 2: leaseId is required; the entry is ignored (its workload registers again at its next renewal)",
            ],
            logs.Lines.Where(l => l.StartsWith("Warning", StringComparison.Ordinal)).ToArray());
    }

    private WorkloadLeaseRegistry NewRegistry() =>
        new(new ControlPlaneOptions { StateDirectory = _state }, _time, NullLogger<WorkloadLeaseRegistry>.Instance);
}
