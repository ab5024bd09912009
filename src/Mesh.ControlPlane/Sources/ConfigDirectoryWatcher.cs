using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Sources;

/// <summary>Loads the config folder at start and reloads it whenever a file changes.</summary>
/// <remarks>
/// A file event does not wait here: it schedules the reload on <see cref="XdsPublisher.Schedule"/>, whose debounce
/// (DebounceInterval of quiet, at most DebounceMax) is the only one between a save and a push. Editors save in bursts
/// (temp file, rename, touch); the burst restarts that quiet period and the folder is read once, right before translation.
/// </remarks>
internal sealed partial class ConfigDirectoryWatcher : IHostedService, IDisposable
{
    private readonly ConfigStore _store;
    private readonly ControlPlaneOptions _options;
    private readonly XdsPublisher _publisher;
    private readonly ILogger<ConfigDirectoryWatcher> _logger;
    private readonly Action _reload;
    private FileSystemWatcher? _watcher;

    public ConfigDirectoryWatcher(ConfigStore store, ControlPlaneOptions options, XdsPublisher publisher, ILogger<ConfigDirectoryWatcher> logger)
    {
        _store = store;
        _options = options;
        _publisher = publisher;
        _logger = logger;
        _reload = () => Reload();
    }

    // The folder's files as last parsed: one edited file of thousands is the only one parsed again.
    private readonly YamlParseCache _parsed = new();

    public string Directory => Path.GetFullPath(_options.ConfigDirectory);

    /// <summary>
    /// Reads the folder now and applies it to the store (parsing again only the files whose text changed); returns false
    /// when the folder was rejected and the last good config kept, or applying it failed.
    /// </summary>
    /// <remarks>
    /// Runs at start and on the publisher's loop, which must both outlive a bug in the reader: an unexpected exception is
    /// logged and reported as the folder's error (so readiness names it), and the last good config keeps serving.
    /// </remarks>
    public bool Reload()
    {
        YamlLoadResult result;
        try
        {
            result = YamlConfigLoader.LoadDirectory(Directory, _parsed, _options.Kubernetes.ClusterDomain);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogReloadFailed(_logger, Directory, ex);
            result = new YamlLoadResult(YamlConfig.Empty, [new ConfigError(Directory, 0,
                $"cannot read the config folder ({ex.GetType().Name}: {ex.Message}); this is a bug in the control plane, please report it with the folder's files")]);
        }

        try
        {
            return _store.ApplyYaml(result);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            LogReloadFailed(_logger, Directory, ex);
            return false;
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        System.IO.Directory.CreateDirectory(Directory);
        _watcher = new FileSystemWatcher(Directory)
        {
            NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
            IncludeSubdirectories = false,
        };
        _watcher.Changed += OnFileEvent;
        _watcher.Created += OnFileEvent;
        _watcher.Deleted += OnFileEvent;
        _watcher.Renamed += OnFileEvent;
        _watcher.Error += OnWatcherError;
        _watcher.EnableRaisingEvents = true;
        LogWatching(_logger, Directory);
        Reload();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        if (_watcher is not null)
        {
            _watcher.EnableRaisingEvents = false;
        }

        return Task.CompletedTask;
    }

    public void Dispose() => _watcher?.Dispose();

    private void OnFileEvent(object sender, FileSystemEventArgs e) => _publisher.Schedule(_reload);

    private void OnWatcherError(object sender, ErrorEventArgs e)
    {
        LogWatcherError(_logger, e.GetException());
        _publisher.Schedule(_reload);
    }
}
