using System.Collections.Immutable;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// Holds the last good YAML config plus the live registrations and publishes them as one
/// immutable <see cref="MeshSnapshot"/>. An invalid YAML update never replaces the last good config.
/// </summary>
internal sealed partial class ConfigStore(ILogger<ConfigStore> logger, ControlPlaneMetrics? metrics = null)
{
    private readonly Lock _gate = new();
    private MeshSnapshot _current = MeshSnapshot.Empty;
    private ImmutableArray<ConfigError> _errors = [];
    private volatile bool _loaded;

    /// <summary>Raised after every snapshot replacement (outside any lock).</summary>
    public event Action? Changed;

    public MeshSnapshot Current => Volatile.Read(ref _current);

    public ImmutableArray<ConfigError> Errors
    {
        get
        {
            lock (_gate)
            {
                return _errors;
            }
        }
    }

    /// <summary>
    /// True once a valid config folder was accepted. Until then the control plane is not ready and serves no ADS: an empty
    /// snapshot would make every client drop its last good config (a restart with a broken folder must cost nothing).
    /// </summary>
    public bool HasValidConfig => _loaded;

    /// <summary>Applies a folder load; returns false when it was rejected and the last good config kept.</summary>
    public bool ApplyYaml(YamlLoadResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        foreach (var error in result.Errors)
        {
            if (error.IsWarning)
            {
                LogConfigWarning(logger, error.ToString());
            }
            else
            {
                LogConfigError(logger, error.ToString());
            }
        }

        bool accepted;
        lock (_gate)
        {
            _errors = result.Errors;
            metrics?.ConfigLoaded(result.Errors);
            accepted = !result.HasErrors;
            if (accepted)
            {
                _current = _current with { Version = _current.Version + 1, Config = result.Config };
                _loaded = true;
            }
        }

        if (accepted)
        {
            LogConfigAccepted(logger, result.Config.ServiceEntries.Length, result.Config.WorkloadEntries.Length, result.Config.DestinationRules.Length);
            Changed?.Invoke();
        }
        else if (_loaded)
        {
            LogConfigRejected(logger, result.Errors.Count(e => !e.IsWarning));
        }
        else
        {
            LogNoValidConfig(logger, result.Errors.Count(e => !e.IsWarning));
        }

        return accepted;
    }

    public void SetRegistrations(ImmutableArray<WorkloadInstance> registrations)
    {
        lock (_gate)
        {
            _current = _current with { Version = _current.Version + 1, Registrations = registrations };
        }

        Changed?.Invoke();
    }

    [LoggerMessage(EventId = 1, EventName = "ConfigError", Level = LogLevel.Error, Message = "Config error: {Error}")]
    private static partial void LogConfigError(ILogger logger, string error);

    [LoggerMessage(EventId = 2, EventName = "ConfigWarning", Level = LogLevel.Warning, Message = "Config warning: {Warning}")]
    private static partial void LogConfigWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 3, EventName = "ConfigAccepted", Level = LogLevel.Information, Message = "Config accepted: {ServiceEntries} ServiceEntries, {WorkloadEntries} WorkloadEntries, {DestinationRules} DestinationRules")]
    private static partial void LogConfigAccepted(ILogger logger, int serviceEntries, int workloadEntries, int destinationRules);

    [LoggerMessage(EventId = 4, EventName = "ConfigRejected", Level = LogLevel.Error, Message = "Config rejected with {Count} errors; the last good config keeps serving")]
    private static partial void LogConfigRejected(ILogger logger, int count);

    [LoggerMessage(EventId = 5, EventName = "NoValidConfig", Level = LogLevel.Error, Message = "Config rejected with {Count} errors and no valid config was ever loaded: not ready, ADS refused (UNAVAILABLE) until the folder is fixed")]
    private static partial void LogNoValidConfig(ILogger logger, int count);
}
