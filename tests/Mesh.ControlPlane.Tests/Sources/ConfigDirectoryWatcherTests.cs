using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Tests.Support;
using Mesh.ControlPlane.Xds;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Mesh.ControlPlane.Tests.Sources;

/// <summary>The folder watcher on the real publisher: a file the reader cannot read costs that file, never the loop or the last good config.</summary>
public sealed class ConfigDirectoryWatcherTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "mesh-cp-watch-" + Guid.NewGuid().ToString("N"));

    public ConfigDirectoryWatcherTests() => Directory.CreateDirectory(_directory);

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    internal static string Workload(string address, string ports) => $"""
        apiVersion: networking.istio.io/v1
        kind: WorkloadEntry
        metadata:
          name: w
        spec:
          address: {address}
          labels: {"{app: a}"}
          ports: {ports}

        """;

    [Fact]
    public async Task StartAsync_ApplyingTheFolderThrows_StartCompletesAndTheErrorNamesTheFolder()
    {
        await File.WriteAllTextAsync(Path.Combine(_directory, "w.yaml"), Workload("10.0.0.1", "{http: 8080}"));
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        store.Changed += () => throw new InvalidOperationException("a subscriber's bug");
        var options = new ControlPlaneOptions { ConfigDirectory = _directory };
        using var logs = new LogSink();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(logs));
        using var publisher = new XdsPublisher(store, options, TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        using var watcher = new ConfigDirectoryWatcher(store, options, publisher, loggers.CreateLogger<ConfigDirectoryWatcher>());

        await watcher.StartAsync(CancellationToken.None);

        var error = Assert.Single(logs.Entries, e => e.EventName == "ConfigReloadFailed");
        Assert.Equal(LogLevel.Error, error.Level);
        Assert.Contains(watcher.Directory, error.Message, StringComparison.Ordinal);
        Assert.IsType<InvalidOperationException>(error.Exception);
        await watcher.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task Reload_FileWithAMappingAsPortNameThenFixed_ErrorAtFileLineLastGoodKeptAndTheFixApplied()
    {
        await File.WriteAllTextAsync(Path.Combine(_directory, "w.yaml"), Workload("10.0.0.1", "{http: 8080}"));
        var store = new ConfigStore(NullLogger<ConfigStore>.Instance);
        var options = new ControlPlaneOptions { ConfigDirectory = _directory, DebounceInterval = TimeSpan.FromMilliseconds(20) };
        using var publisher = new XdsPublisher(store, options, TimeProvider.System, NullLogger<XdsPublisher>.Instance);
        using var watcher = new ConfigDirectoryWatcher(store, options, publisher, NullLogger<ConfigDirectoryWatcher>.Instance);
        await publisher.StartAsync(CancellationToken.None);
        await watcher.StartAsync(CancellationToken.None);
        Assert.Equal("10.0.0.1", Assert.Single(store.Current.Config.WorkloadEntries).Address);

        // An unrendered Helm template: a flow mapping whose key is a mapping.
        await File.WriteAllTextAsync(Path.Combine(_directory, "w.yaml"), Workload("10.0.0.2", "{{ .Values.ports }}"));
        await Poll.UntilAsync(() => store.FolderErrors.Any(e => !e.IsWarning), "the bad file was not reported");

        var error = Assert.Single(store.FolderErrors, e => !e.IsWarning);
        Assert.Equal("w.yaml:8: WorkloadEntry default/w: spec.ports: port names must be non-empty strings, like ports: {http: 8080}", error.ToString());
        Assert.Equal("10.0.0.1", Assert.Single(store.Current.Config.WorkloadEntries).Address);
        Assert.False(publisher.ExecuteTask!.IsCompleted, "the publisher's loop ended: " + publisher.ExecuteTask.Exception);

        await File.WriteAllTextAsync(Path.Combine(_directory, "w.yaml"), Workload("10.0.0.9", "{http: 8080}"));
        await Poll.UntilAsync(() => store.Current.Config.WorkloadEntries.Any(w => w.Address == "10.0.0.9"), "the fixed file was never applied");
        await Poll.UntilAsync(() => publisher.Current.Version > 1 && store.FolderErrors.IsEmpty, "the fixed folder was not published");

        await watcher.StopAsync(CancellationToken.None);
        await publisher.StopAsync(CancellationToken.None);
    }
}
