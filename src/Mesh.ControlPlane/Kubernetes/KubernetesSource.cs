using System.Collections.Immutable;
using System.Text.Json;
using k8s;
using k8s.Models;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Telemetry;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>
/// The Kubernetes API as a source: one <see cref="KubernetesInformer{T}"/> per kind (per namespace when
/// ControlPlane:Kubernetes:Namespaces is set; Nodes are cluster-scoped) over the process's one <see cref="IKubernetes"/>.
/// </summary>
/// <remarks>
/// An informer's change does not apply here: it schedules <see cref="Refresh"/> on <see cref="XdsPublisher.Schedule"/>,
/// like a folder file event, so a burst of watch events (a rollout) is read once, right before the translation. Nothing
/// is applied until every informer has listed once: until then the store is not ready and ADS is refused, so a restart
/// against a slow API server never pushes a mesh without its Kubernetes half. While the API server is down, the informers
/// keep their last objects and the store its last snapshot.
/// </remarks>
internal sealed partial class KubernetesSource : BackgroundService
{
    private readonly ConfigStore _store;
    private readonly XdsPublisher _publisher;
    private readonly KubernetesOptions _options;
    private readonly ILogger<KubernetesSource> _logger;
    private readonly Action _refresh;
    private readonly List<KubernetesInformer<V1Service>> _services = [];
    private readonly List<KubernetesInformer<V1EndpointSlice>> _slices = [];
    private readonly List<KubernetesInformer<V1Pod>> _pods = [];
    private readonly KubernetesInformer<V1Node> _nodes;
    private readonly List<KubernetesInformer<CustomObject>> _custom = [];
    private readonly List<IKubernetesInformer> _all = [];
    private object[]? _translatedFrom;
    private KubernetesServices _translated = new([], [], []);
    private object[]? _objectsFrom;
    private IReadOnlyList<KubernetesObjectText> _objects = [];

    public KubernetesSource(IKubernetes client, ControlPlaneOptions options, ConfigStore store, XdsPublisher publisher, TimeProvider time, ILoggerFactory loggerFactory, ControlPlaneMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _store = store;
        _publisher = publisher;
        _options = options.Kubernetes;
        _logger = loggerFactory.CreateLogger<KubernetesSource>();
        _refresh = Refresh;
        var informerLogger = loggerFactory.CreateLogger("Mesh.ControlPlane.Kubernetes.KubernetesInformer");
        // Shared by informers running in parallel: only Random.Shared is safe for that.
        var random = Random.Shared;
        void Changed() => _publisher.Schedule(_refresh);
        KubernetesInformer<T> Add<T>(KubernetesResourceKind<T> kind, string? ns)
            where T : class
        {
            var informer = new KubernetesInformer<T>(client, kind, ns, _options.WatchIdleTimeout, time, random, Changed, informerLogger, metrics);
            _all.Add(informer);
            return informer;
        }

        string?[] namespaces = _options.Namespaces.IsEmpty ? [null] : [.. _options.Namespaces];
        foreach (var ns in namespaces)
        {
            _services.Add(Add(KubernetesKinds.Service, ns));
            _slices.Add(Add(KubernetesKinds.EndpointSlice, ns));
            _pods.Add(Add(KubernetesKinds.Pod, ns));
            foreach (var kind in KubernetesKinds.Istio)
            {
                _custom.Add(Add(kind, ns));
            }
        }

        _nodes = Add(KubernetesKinds.Node, null);
    }

    public IReadOnlyList<IKubernetesInformer> Informers => _all;

    public bool HasSynced => _all.TrueForAll(i => i.HasSynced);

    /// <summary>For readiness messages: the informers that have not listed yet.</summary>
    public string WaitingFor()
    {
        var pending = _all.Where(i => !i.HasSynced).Select(i => i.Name).ToList();
        return pending.Count == 0
            ? "the Kubernetes source is applying its first list"
            : $"the Kubernetes source has not listed {string.Join(", ", pending.Take(5))}{(pending.Count > 5 ? $" and {pending.Count - 5} more" : string.Empty)} yet (is the API server reachable, and may this identity list them?)";
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        LogStarting(_logger, _all.Count, _options.Namespaces.IsEmpty ? "all namespaces" : string.Join(", ", _options.Namespaces));

        // Each loop on the thread pool, none on the host's start path; each catches everything but cancellation.
        return Task.WhenAll(_all.Select(i => Task.Run(() => i.RunAsync(stoppingToken), CancellationToken.None)));
    }

    /// <summary>Reads every informer and hands the store the complete view (runs on the publisher, before a translation).</summary>
    internal void Refresh()
    {
        if (!HasSynced)
        {
            return;
        }

        try
        {
            Apply();
        }
        catch (Exception ex)
        {
            // This runs on the publisher's loop, which must outlive any bug in a translation: the last snapshot keeps
            // serving and the next change tries again.
            LogRefreshFailed(_logger, ex);
        }
    }

    private void Apply()
    {

        var services = _services.Select(i => i.Items).ToList();
        var slices = _slices.Select(i => i.Items).ToList();
        var pods = _pods.Select(i => i.Items).ToList();
        var nodes = _nodes.Items;
        object[] from = [.. services, .. slices, .. pods, nodes];
        if (_translatedFrom is null || !from.SequenceEqual(_translatedFrom, ReferenceEqualityComparer.Instance))
        {
            _translated = KubernetesServiceTranslator.Translate(
                [.. services.SelectMany(s => s.Values)],
                [.. slices.SelectMany(s => s.Values)],
                [.. pods.SelectMany(p => p.Values)],
                [.. nodes.Values],
                _options.ClusterDomain);
            _translatedFrom = from;
        }

        var custom = _custom.Select(i => (object)i.Items).ToArray();
        if (_objectsFrom is null || !custom.SequenceEqual(_objectsFrom, ReferenceEqualityComparer.Instance))
        {
            _objects = [.. _custom.SelectMany(i => i.Items.Values.Select(o => ToText(i.Kind, o)))];
            _objectsFrom = custom;
        }

        _store.ApplyKubernetes(_objects, _translated);
    }

    /// <summary>
    /// The object as the folder would hold it: apiVersion, kind, metadata.name/namespace and spec (status, managedFields
    /// and the rest of metadata are the API server's, not config). JSON is YAML, so the folder's parser reads it as is.
    /// </summary>
    internal static KubernetesObjectText ToText(string kind, CustomObject item)
    {
        var json = item.Json;
        var ns = KubernetesKinds.Text(item.Metadata, "namespace");
        var name = KubernetesKinds.Text(item.Metadata, "name");
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            if (KubernetesKinds.Text(json, "apiVersion") is { } apiVersion)
            {
                writer.WriteString("apiVersion", apiVersion);
            }

            writer.WriteString("kind", KubernetesKinds.Text(json, "kind") ?? kind);
            writer.WriteStartObject("metadata");
            if (name is not null)
            {
                writer.WriteString("name", name);
            }

            if (ns is not null)
            {
                writer.WriteString("namespace", ns);
            }

            writer.WriteEndObject();
            if (json.ValueKind == JsonValueKind.Object && json.TryGetProperty("spec", out var spec))
            {
                writer.WritePropertyName("spec");
                spec.WriteTo(writer);
            }

            writer.WriteEndObject();
        }

        var created = KubernetesKinds.Text(item.Metadata, "creationTimestamp") is { } timestamp
            && DateTimeOffset.TryParse(timestamp, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var at) ? at : (DateTimeOffset?)null;
        return new KubernetesObjectText($"{kind} {ns}/{name}", kind, System.Text.Encoding.UTF8.GetString(buffer.ToArray()), created);
    }

    [LoggerMessage(EventId = 1, EventName = "KubernetesSourceStarting", Level = LogLevel.Information, Message = "Kubernetes source: {Count} informers over {Namespaces}; not ready until each has listed once")]
    private static partial void LogStarting(ILogger logger, int count, string namespaces);

    [LoggerMessage(EventId = 2, EventName = "KubernetesRefreshFailed", Level = LogLevel.Error, Message = "Kubernetes source: applying the objects failed; the last good config keeps serving")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception);
}
