using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Xds;

/// <summary>The publisher's loop carries every push: a bug in a source's reader or in a translation costs one round, never the loop or the last snapshot.</summary>
public sealed class XdsPublisherFaultTests
{
    private const string OrdersCluster = "outbound|80||orders.default.svc.cluster.local";
    private const string PaymentsCluster = "outbound|80||payments.default.svc.cluster.local";

    [Fact]
    public async Task Schedule_RefreshThrowsUnexpectedly_LoggedAsErrorAndTheNextRefreshIsPublished()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        using var logs = new LogSink();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs));
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions { DebounceInterval = TimeSpan.Zero }, TimeProvider.System, loggers.CreateLogger<XdsPublisher>());
        await publisher.StartAsync(CancellationToken.None);

        publisher.Schedule(() => throw new InvalidCastException("a reader's bug"));
        await Poll.UntilAsync(() => logs.Entries.Any(e => e.EventName == "RefreshBug"), "the failed refresh was not logged");
        publisher.Schedule(() => store.ApplyYaml(new YamlLoadResult(new YamlConfig([TestModels.Service()], [], []), [])));

        await Poll.UntilAsync(() => publisher.Current.Clusters.ContainsKey(OrdersCluster), "the refresh after the failed one was never published");
        var error = Assert.Single(logs.Entries, e => e.EventName == "RefreshBug");
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.IsType<InvalidCastException>(error.Exception);
        Assert.False(publisher.ExecuteTask!.IsCompleted);
        await publisher.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Rebuild_TranslationThrows_KeepsTheLastSnapshotSaysWhyAndTheNextChangeIsPublished()
    {
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        using var logs = new LogSink();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs));
        using var publisher = new XdsPublisher(store, new ControlPlaneOptions { DebounceInterval = TimeSpan.Zero }, TimeProvider.System, loggers.CreateLogger<XdsPublisher>());
        await publisher.StartAsync(CancellationToken.None);
        store.ApplyYaml(new YamlLoadResult(new YamlConfig([TestModels.Service()], [], []), []));
        await Poll.UntilAsync(() => publisher.Current.Clusters.ContainsKey(OrdersCluster), "the first config was never published");
        var good = publisher.Current;

        // A model no validation lets through (hosts never set) stands for a translator bug.
        var broken = TestModels.Service(host: "payments.default.svc.cluster.local") with { Hosts = default };
        store.ApplyYaml(new YamlLoadResult(new YamlConfig([TestModels.Service(), broken], [], []), []));
        await Poll.UntilAsync(() => publisher.TranslationError is not null, "the failed translation was not reported");

        Assert.Same(good, publisher.Current);
        Assert.True(publisher.HasValidSnapshot);
        Assert.Contains(logs.Entries, e => e.EventName == "TranslationFailed" && e.Level == LogLevel.Error);
        Assert.StartsWith("translating the config failed", publisher.TranslationError, StringComparison.Ordinal);
        var (status, text) = Mesh.ControlPlane.Admin.AdminEndpoints.Readiness(store, publisher, []);
        Assert.Equal(200, status);
        Assert.StartsWith("ready\nwarning: translating the config failed (", text, StringComparison.Ordinal);
        Assert.EndsWith("; no change is pushed until it translates", text, StringComparison.Ordinal);

        store.ApplyYaml(new YamlLoadResult(new YamlConfig([TestModels.Service(), TestModels.Service(host: "payments.default.svc.cluster.local")], [], []), []));
        await Poll.UntilAsync(() => publisher.Current.Clusters.ContainsKey(PaymentsCluster), "the change after the failed translation was never published");
        Assert.Null(publisher.TranslationError);
        Assert.Equal((200, "ready"), Mesh.ControlPlane.Admin.AdminEndpoints.Readiness(store, publisher, []));
        await publisher.StopAsync(CancellationToken.None);
    }
}
