using System.Text.Json;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Registry;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using static Mesh.ControlPlane.Tests.TestModels;

namespace Mesh.ControlPlane.Tests.Registry;

/// <summary>An address:port belongs to one identity; leases per identity are capped; the store stays consistent under concurrency.</summary>
public sealed class LeaseOwnershipTests : IDisposable
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), "mesh-cp-own-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public void Dispose()
    {
        if (Directory.Exists(_state))
        {
            Directory.Delete(_state, recursive: true);
        }
    }

    [Fact]
    public void Register_AddressPortOfAnotherCertifiedIdentity_RefusedNamingBoth()
    {
        var registry = NewRegistry();
        var orders = registry.Register(Certified("orders", 5001), null);

        var ex = Assert.Throws<LeaseRefusedException>(() => registry.Register(Certified("frontend", 5001), null));

        Assert.Equal(LeaseRefusal.HeldByAnotherIdentity, ex.Reason);
        Assert.Equal(
            $"address 10.0.0.1:5001 is held by spiffe://cluster.local/ns/default/sa/orders (lease {orders.Id}); spiffe://cluster.local/ns/default/sa/frontend may not register it. An address:port belongs to one identity until its lease ends",
            ex.Message);
        Assert.Equal(["orders"], registry.Workloads().Select(w => w.ServiceAccount));
    }

    [Fact]
    public void Register_SameAddressOtherPort_Accepted()
    {
        var registry = NewRegistry();
        registry.Register(Certified("orders", 5001), null);

        registry.Register(Certified("frontend", 5002), null);

        Assert.Equal(2, registry.Workloads().Length);
    }

    [Fact]
    public void Register_ClaimedEndpointPortOverlaps_Refused()
    {
        // A workload without ports serves the service's port: the claimed ports carry that.
        var registry = NewRegistry();
        registry.Register(Certified("orders", 5001), null);

        var ex = Assert.Throws<LeaseRefusedException>(() => registry.Register(Certified("frontend", ports: []), null, claimedPorts: [5001]));

        Assert.Equal(LeaseRefusal.HeldByAnotherIdentity, ex.Reason);
    }

    [Fact]
    public void Register_PlaintextOverCertifiedLease_RefusedAndLeaseUntouched()
    {
        var registry = NewRegistry();
        var orders = registry.Register(Certified("orders", 5001), null);

        // Same key, same claimed account: only the credential differs.
        var ex = Assert.Throws<LeaseRefusedException>(() => registry.Register(Plaintext("orders", 5001), TimeSpan.FromMinutes(5)));

        Assert.Contains("an unauthenticated plaintext registration claiming namespace 'default' service account 'orders' may not register it", ex.Message, StringComparison.Ordinal);
        var kept = Assert.Single(registry.Leases());
        Assert.Equal((orders.Id, true, orders.Ttl), (kept.Id, kept.Workload.CertifiedIdentity, kept.Ttl));
    }

    [Fact]
    public void Register_CertifiedOverPlaintextLease_ReplacesIt()
    {
        var registry = NewRegistry();
        var squatter = registry.Register(Plaintext("frontend", 5001), null);

        var orders = registry.Register(Certified("orders", 5001), null);

        var lease = Assert.Single(registry.Leases());
        Assert.Equal(orders.Id, lease.Id);
        Assert.NotEqual(squatter.Id, lease.Id);
        Assert.Null(registry.Find(squatter.Id));
    }

    [Fact]
    public void Register_BeyondPerIdentityCap_RefusedNamingCapAndKey()
    {
        var registry = NewRegistry(maxLeases: 2);
        registry.Register(Certified("orders", 5001), null);
        registry.Register(Certified("orders", 5002), null);

        var ex = Assert.Throws<LeaseRefusedException>(() => registry.Register(Certified("orders", 5003), null));

        Assert.Equal(LeaseRefusal.LimitReached, ex.Reason);
        Assert.StartsWith("spiffe://cluster.local/ns/default/sa/orders already holds 2 leases, the limit ControlPlane:MaxLeasesPerIdentity=2", ex.Message, StringComparison.Ordinal);

        // Refreshing a held lease and another identity's first lease are not capped.
        registry.Register(Certified("orders", 5002), null);
        registry.Register(Certified("frontend", 5003), null);
        Assert.Equal(3, registry.Leases().Length);
    }

    [Fact]
    public void Register_Plaintext_AllClaimedIdentitiesShareOneCap()
    {
        var registry = NewRegistry(maxLeases: 2);
        registry.Register(Plaintext("a", 5001), null);
        registry.Register(Plaintext("b", 5002), null);

        // A plaintext caller chooses the service account it claims: a new claim is not a new identity with a fresh cap.
        var ex = Assert.Throws<LeaseRefusedException>(() => registry.Register(Plaintext("c", 5003), null));

        Assert.Equal(LeaseRefusal.LimitReached, ex.Reason);
        Assert.StartsWith("plaintext registrations (all unauthenticated callers together) already hold 2 leases, the limit ControlPlane:MaxLeasesPerIdentity=2", ex.Message, StringComparison.Ordinal);

        // Certified identities keep their own caps.
        registry.Register(Certified("orders", 5004), null);
        registry.Register(Certified("orders", 5005), null);
        Assert.Equal(4, registry.Leases().Length);
    }

    [Fact]
    public void LoadState_KeepsOwnerAndClaimedPorts()
    {
        var registry = NewRegistry();
        var lease = registry.Register(Certified("orders", ports: []), null, claimedPorts: [5001]);

        var restarted = NewRegistry();
        restarted.LoadState();

        var restored = Assert.Single(restarted.Leases());
        Assert.Equal((lease.Id, true), (restored.Id, restored.Workload.CertifiedIdentity));
        Assert.Equal([5001u], restored.ClaimedPorts.ToArray());
        Assert.Throws<LeaseRefusedException>(() => restarted.Register(Certified("frontend", 5001), null));
    }

    [Fact]
    public async Task ParallelRegisterRenewDeregister_StateFileAndPublishedListMatchTheRegistryAfterEveryRound()
    {
        const int Workers = 8;
        var registry = NewRegistry(maxLeases: 10_000);
        WorkloadInstance[] published = [];

        // What ControlPlaneHost does: each change publishes the registry's list to the config store. The subscriber is slow
        // (as a real one may be), which widens the window in which an older list could be published after a newer one.
        registry.Changed += () =>
        {
            var list = registry.Workloads().ToArray();
            Thread.Sleep(1);
            Volatile.Write(ref published, list);
        };

        var previous = new string?[Workers];
        for (var round = 0; round < 25; round++)
        {
            using var start = new Barrier(Workers);
            var r = round;
            await Task.WhenAll(Enumerable.Range(0, Workers).Select(worker => Task.Run(() =>
            {
                start.SignalAndWait();
                var lease = registry.Register(Certified($"sa-{worker}", (uint)(10_000 + (worker * 100) + r)), null);
                Assert.NotNull(registry.Renew(lease.Id));
                if (r % 2 == 1 && previous[worker] is { } old)
                {
                    Assert.True(registry.Deregister(old));
                }

                previous[worker] = lease.Id;
            }))).WaitAsync(TimeSpan.FromSeconds(60));

            var expected = registry.Leases().Select(l => l.Id).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(expected, Volatile.Read(ref published).Select(w => w.LeaseId!).Order(StringComparer.Ordinal));
            Assert.False(File.Exists(registry.StateFile + ".tmp"), $"round {r}: a temp file was left behind");
            using var file = JsonDocument.Parse(await File.ReadAllTextAsync(registry.StateFile));
            Assert.Equal(expected, file.RootElement.EnumerateArray().Select(e => e.GetProperty("leaseId").GetString()!).Order(StringComparer.Ordinal));
        }
    }

    private static WorkloadInstance Certified(string serviceAccount, uint port) => Certified(serviceAccount, ports: [port]);

    private static WorkloadInstance Certified(string serviceAccount, uint[] ports) =>
        Workload("10.0.0.1", ports.Select((p, i) => (p, i)).ToDictionary(x => x.i == 0 ? "http" : $"http-{x.i}", x => x.p), new Dictionary<string, string> { ["app"] = serviceAccount }, source: EndpointSources.Registration)
            with { ServiceAccount = serviceAccount, CertifiedIdentity = true };

    private static WorkloadInstance Plaintext(string serviceAccount, uint port) => Certified(serviceAccount, port) with { CertifiedIdentity = false };

    private WorkloadLeaseRegistry NewRegistry(int maxLeases = 128) =>
        new(new ControlPlaneOptions { StateDirectory = _state, MaxLeasesPerIdentity = maxLeases }, _time, NullLogger<WorkloadLeaseRegistry>.Instance);
}
