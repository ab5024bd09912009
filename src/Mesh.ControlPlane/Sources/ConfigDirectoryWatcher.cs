using System.Threading.Channels;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Sources;

/// <summary>Loads the config folder at start and reloads it (debounced) whenever a file changes.</summary>
internal sealed partial class ConfigDirectoryWatcher : BackgroundService
{
    private readonly ConfigStore _store;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<ConfigDirectoryWatcher> _logger;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private FileSystemWatcher? _watcher;

    public ConfigDirectoryWatcher(ConfigStore store, ControlPlaneOptions options, TimeProvider time, ILogger<ConfigDirectoryWatcher> logger)
    {
        _store = store;
        _options = options;
        _time = time;
        _logger = logger;
    }

    public string Directory => Path.GetFullPath(_options.ConfigDirectory);

    /// <summary>Reads the folder now and applies it to the store.</summary>
    public bool Reload() => _store.ApplyYaml(YamlConfigLoader.LoadDirectory(Directory));

    public override Task StartAsync(CancellationToken cancellationToken)
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
        return base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _signal.Reader.WaitToReadAsync(stoppingToken))
            {
                // Editors save in bursts (temp file, rename, touch): wait for quiet, then read once.
                await Task.Delay(_options.DebounceInterval, _time, stoppingToken);
                _signal.Reader.TryRead(out _);
                Reload();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override void Dispose()
    {
        _watcher?.Dispose();
        base.Dispose();
    }

    private void OnFileEvent(object sender, FileSystemEventArgs e) => _signal.Writer.TryWrite(true);

    private void OnWatcherError(object sender, ErrorEventArgs e)
    {
        LogWatcherError(_logger, e.GetException());
        _signal.Writer.TryWrite(true);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Watching config folder {Directory}")]
    private static partial void LogWatching(ILogger logger, string directory);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Config folder watcher failed; reloading")]
    private static partial void LogWatcherError(ILogger logger, Exception exception);
}
