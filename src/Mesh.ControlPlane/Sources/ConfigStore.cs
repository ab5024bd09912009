using System.Collections.Immutable;
using Mesh.ControlPlane.Kubernetes;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Sources;

/// <summary>
/// Holds the last good YAML config, the Kubernetes source's objects and the live registrations, and publishes them as one
/// immutable <see cref="ModelSnapshot"/>. An invalid YAML update never replaces the last good config.
/// </summary>
/// <remarks>
/// <para>The snapshot's <see cref="ModelSnapshot.Config"/> is the folder merged with Kubernetes: the folder's resources, then
/// the ServiceEntries translated from Services/EndpointSlices/Pods, then Istio's custom objects that passed validation
/// (<see cref="YamlConfigLoader.LoadKubernetesObjects"/>). When two sources define the same host, the earlier one wins and
/// the later resource is left out with a message naming both: the folder is what the operator of this control plane
/// wrote on purpose (an override on a laptop or in a test); a Kubernetes Service wins over a ServiceEntry object for its
/// host, as in Istio, where the Kubernetes registry's service shadows a ServiceEntry of the same name. A Service that
/// loses to the folder is a warning (both are plausible on purpose); a custom object that loses is an error on that
/// object, reported and ignored like any invalid object, as is a second DestinationRule, VirtualService or namespace-wide
/// Sidecar for what the folder already covers.</para>
/// <para>An invalid custom object never rejects the rest (unlike a folder file): it got past the admission webhook (down,
/// or not installed) and the API server will keep serving it, so refusing everything would freeze the mesh on one
/// kubectl apply.</para>
/// </remarks>
internal sealed partial class ConfigStore(ILogger<ConfigStore> logger, ControlPlaneMetrics? metrics = null, Configuration.ControlPlaneOptions? options = null)
{
    private readonly Lock _gate = new();
    private readonly YamlParseCache _kubernetesParses = new();

    /// <summary>Gets the cluster domain short hosts of Kubernetes objects are qualified in (<c>Kubernetes:ClusterDomain</c>).</summary>
    private string ClusterDomain => options?.Kubernetes.ClusterDomain ?? HostNames.DefaultClusterDomain;
    private ModelSnapshot _current = ModelSnapshot.Empty;
    private YamlConfig _folder = YamlConfig.Empty;
    private ImmutableArray<ConfigError> _folderErrors = [];
    private ImmutableArray<ConfigError> _kubernetesErrors = [];
    private ImmutableArray<ConfigError> _errors = [];
    private IReadOnlyList<KubernetesObjectText> _kubernetesObjects = [];
    private KubernetesServices _kubernetesServices = new([], [], []);
    private KubernetesConfigResult _kubernetesConfig = KubernetesConfigResult.Empty;
    private (IReadOnlyList<KubernetesObjectText> Objects, YamlConfig Folder, string Services)? _kubernetesConfigInputs;
    private HashSet<string> _reportedKubernetesErrors = new(StringComparer.Ordinal);
    private Func<string>? _kubernetesWaitingFor;
    private volatile bool _loaded;
    private volatile bool _kubernetesSynced;

    /// <summary>Raised after every snapshot replacement (outside any lock).</summary>
    public event Action? Changed;

    public ModelSnapshot Current => Volatile.Read(ref _current);

    /// <summary>The folder's last load's errors and warnings, then the Kubernetes source's (objects reported and ignored).</summary>
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

    /// <summary>The folder's last load's errors and warnings only.</summary>
    public ImmutableArray<ConfigError> FolderErrors
    {
        get
        {
            lock (_gate)
            {
                return _folderErrors;
            }
        }
    }

    /// <summary>True once a valid config folder was accepted (whatever the Kubernetes source's state).</summary>
    public bool FolderLoaded => _loaded;

    /// <summary>
    /// True once a valid config folder was accepted and, when the Kubernetes source is on, every informer has listed once.
    /// Until then the control plane is not ready and serves no ADS: an empty snapshot would make every client drop its
    /// last good config (a restart with a broken folder, or against a slow API server, must cost nothing).
    /// </summary>
    public bool HasValidConfig => _loaded && (_kubernetesWaitingFor is null || _kubernetesSynced);

    /// <summary>What the Kubernetes source still waits for (e.g. "the first list of Pod, VirtualService"); null when nothing.</summary>
    public string? KubernetesPending => _kubernetesWaitingFor is { } waitingFor && !_kubernetesSynced ? waitingFor() : null;

    /// <summary>Makes readiness wait for the Kubernetes source's first complete list; called before the host starts.</summary>
    public void RequireKubernetes(Func<string> waitingFor)
    {
        ArgumentNullException.ThrowIfNull(waitingFor);
        _kubernetesWaitingFor = waitingFor;
    }

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
        List<ConfigError> newKubernetesErrors;
        lock (_gate)
        {
            _folderErrors = result.Errors;
            accepted = !result.HasErrors;
            if (accepted)
            {
                _folder = result.Config;
                _loaded = true;
            }

            newKubernetesErrors = Compose(bumpVersion: accepted);
        }

        ReportKubernetesErrors(newKubernetesErrors);
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

    /// <summary>
    /// Applies the Kubernetes source's complete view (called once every informer has listed, then on every change):
    /// Istio's custom objects as JSON, validated here against the folder, and the translated Services.
    /// </summary>
    public void ApplyKubernetes(IReadOnlyList<KubernetesObjectText> objects, KubernetesServices services)
    {
        ArgumentNullException.ThrowIfNull(objects);
        ArgumentNullException.ThrowIfNull(services);
        List<ConfigError> newErrors;
        var first = !_kubernetesSynced;
        lock (_gate)
        {
            _kubernetesObjects = objects;
            _kubernetesServices = services;
            _kubernetesSynced = true;
            newErrors = Compose(bumpVersion: true);
        }

        ReportKubernetesErrors(newErrors);
        var config = Current.Config;
        if (first)
        {
            LogKubernetesSynced(logger, services.Services.Length, services.Workloads.Length, objects.Count, _kubernetesConfig.Ignored.Length);
        }
        else
        {
            LogKubernetesApplied(logger, services.Services.Length, services.Workloads.Length, objects.Count, _kubernetesConfig.Ignored.Length, config.ServiceEntries.Length);
        }

        Changed?.Invoke();
    }

    public void SetRegistrations(ImmutableArray<WorkloadInstance> registrations)
    {
        lock (_gate)
        {
            _current = _current with { Version = _current.Version + 1, Registrations = registrations };
        }

        Changed?.Invoke();
    }

    /// <summary>Merges the folder and Kubernetes into the snapshot (under the lock); returns the Kubernetes errors not reported before.</summary>
    private List<ConfigError> Compose(bool bumpVersion)
    {
        var kubernetesErrors = new List<ConfigError>();
        var config = _folder;
        if (_kubernetesSynced)
        {
            var folderHosts = new Dictionary<string, ServiceEntryModel>(StringComparer.Ordinal);
            foreach (var entry in _folder.ServiceEntries)
            {
                foreach (var host in entry.Hosts)
                {
                    folderHosts.TryAdd(host, entry);
                }
            }

            var services = new List<ServiceEntryModel>();
            foreach (var service in _kubernetesServices.Services)
            {
                var shadowed = service.Hosts.FirstOrDefault(folderHosts.ContainsKey);
                if (shadowed is null)
                {
                    services.Add(service);
                    continue;
                }

                var owner = folderHosts[shadowed];
                kubernetesErrors.Add(new ConfigError($"Service {service.Namespace}/{service.Name}", 0,
                    $"Service {service.Namespace}/{service.Name}: host {shadowed} is also declared by the config folder's ServiceEntry {owner.Namespace}/{owner.Name}; the folder's wins and this Service is ignored",
                    IsWarning: true, Kind: "Service"));
            }

            var kept = services.ToImmutableArray();
            var signature = string.Join(";", kept.Select(s => $"{string.Join(",", s.Hosts)}:{string.Join(",", s.Ports.Select(p => p.Number))}"));
            if (_kubernetesConfigInputs is not { } inputs || !ReferenceEquals(inputs.Objects, _kubernetesObjects) || !ReferenceEquals(inputs.Folder, _folder) || inputs.Services != signature)
            {
                _kubernetesConfig = YamlConfigLoader.LoadKubernetesObjects(_kubernetesObjects, _folder, kept, _kubernetesParses, options?.RootNamespace ?? SecurityScopes.DefaultRootNamespace, ClusterDomain);
                _kubernetesConfigInputs = (_kubernetesObjects, _folder, signature);
            }

            kubernetesErrors.AddRange(_kubernetesServices.Errors);
            kubernetesErrors.AddRange(_kubernetesConfig.Errors);
            var objects = _kubernetesConfig.Config;
            config = _folder with
            {
                ServiceEntries = [.. _folder.ServiceEntries, .. kept, .. objects.ServiceEntries],
                WorkloadEntries = [.. _folder.WorkloadEntries, .. _kubernetesServices.Workloads, .. objects.WorkloadEntries],
                DestinationRules = [.. _folder.DestinationRules, .. objects.DestinationRules],
                VirtualServices = [.. _folder.VirtualServices, .. objects.VirtualServices],
                Sidecars = [.. _folder.Sidecars, .. objects.Sidecars],
                InboundOnlyWorkloads = _kubernetesServices.InboundOnly,
                PeerAuthentications = [.. _folder.PeerAuthentications, .. objects.PeerAuthentications],
                AuthorizationPolicies = [.. _folder.AuthorizationPolicies, .. objects.AuthorizationPolicies],
                RequestAuthentications = [.. _folder.RequestAuthentications, .. objects.RequestAuthentications],
                ClusterDomain = ClusterDomain,
            };
        }

        _kubernetesErrors = [.. kubernetesErrors];
        _errors = [.. _folderErrors, .. _kubernetesErrors];
        metrics?.ConfigLoaded(_errors);
        if (bumpVersion)
        {
            _current = _current with { Version = _current.Version + 1, Config = config };
        }

        // Each error is logged when it first appears, not again on every endpoint change while it stands.
        var current = _kubernetesErrors.Select(e => e.Message).ToHashSet(StringComparer.Ordinal);
        var fresh = _kubernetesErrors.Where(e => !_reportedKubernetesErrors.Contains(e.Message)).ToList();
        _reportedKubernetesErrors = current;
        return fresh;
    }

    private void ReportKubernetesErrors(List<ConfigError> errors)
    {
        foreach (var error in errors)
        {
            if (error.IsWarning)
            {
                LogKubernetesWarning(logger, error.Message);
            }
            else
            {
                LogKubernetesObjectIgnored(logger, error.Message);
            }
        }
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

    [LoggerMessage(EventId = 6, EventName = "KubernetesObjectIgnored", Level = LogLevel.Error, Message = "Kubernetes config error, the object is ignored and the rest applies: {Error}")]
    private static partial void LogKubernetesObjectIgnored(ILogger logger, string error);

    [LoggerMessage(EventId = 7, EventName = "KubernetesConfigWarning", Level = LogLevel.Warning, Message = "Kubernetes config warning: {Warning}")]
    private static partial void LogKubernetesWarning(ILogger logger, string warning);

    [LoggerMessage(EventId = 8, EventName = "KubernetesSynced", Level = LogLevel.Information, Message = "Kubernetes source synced: {Services} Services, {Workloads} endpoints, {Objects} Istio objects ({Ignored} ignored as invalid)")]
    private static partial void LogKubernetesSynced(ILogger logger, int services, int workloads, int objects, int ignored);

    [LoggerMessage(EventId = 9, EventName = "KubernetesApplied", Level = LogLevel.Debug, Message = "Kubernetes change applied: {Services} Services, {Workloads} endpoints, {Objects} Istio objects ({Ignored} ignored); {ServiceEntries} services in the mesh")]
    private static partial void LogKubernetesApplied(ILogger logger, int services, int workloads, int objects, int ignored, int serviceEntries);
}
