using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Registry;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using static Mesh.ControlPlane.Tests.TestModels;

namespace Mesh.ControlPlane.Tests.Registry;

public sealed class LeaseExpiryPushTests : IDisposable
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), "mesh-cp-push-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_state))
        {
            Directory.Delete(_state, recursive: true);
        }
    }

    [Fact]
    public async Task ExpiredLease_WithoutRenewal_PublishesSnapshotWithoutTheEndpoint()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var options = new ControlPlaneOptions { StateDirectory = _state, DebounceInterval = TimeSpan.Zero };
        var registry = new WorkloadLeaseRegistry(options, time, NullLogger<WorkloadLeaseRegistry>.Instance);
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        registry.Changed += () => store.SetRegistrations(registry.Workloads());
        store.ApplyYaml(new YamlLoadResult(new YamlConfig([Service(selector: new Dictionary<string, string> { ["app"] = "orders" })], [], []), []));
        using var publisher = new XdsPublisher(store, options, time, NullLogger<XdsPublisher>.Instance);
        using var expiry = new LeaseExpiryService(registry, store, time);
        await publisher.StartAsync(CancellationToken.None);
        await expiry.StartAsync(CancellationToken.None);

        registry.Register(Workload("10.0.0.7", new Dictionary<string, uint> { ["http"] = 5007 }, source: EndpointSources.Registration), TimeSpan.FromSeconds(5));
        await WaitForEndpointsAsync(publisher, 1);

        time.Advance(TimeSpan.FromSeconds(5) + LeaseExpiryService.Period);
        await WaitForEndpointsAsync(publisher, 0);

        await expiry.StopAsync(CancellationToken.None);
        await publisher.StopAsync(CancellationToken.None);
    }

    private static async Task WaitForEndpointsAsync(XdsPublisher publisher, int expected)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = publisher.Subscribe(() =>
        {
            if (Count(publisher.Current) == expected)
            {
                reached.TrySetResult();
            }
        });
        if (Count(publisher.Current) != expected)
        {
            await reached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static int Count(XdsSnapshot snapshot) =>
        snapshot.Services.IsDefaultOrEmpty ? 0 : snapshot.Services[0].Endpoints.Length;
}
