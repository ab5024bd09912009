using System.Globalization;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace Mesh.KubernetesFake;

/// <summary>One change in the store's history: the object after the change (the last state for DELETED) and before it.</summary>
internal sealed record StoredEvent(long ResourceVersion, string Type, FakeResourceType ResourceType, JsonObject Object, JsonObject? Old);

/// <summary>A page of a list: items, the version it shows, the key to continue after (null when complete), how many remain.</summary>
internal sealed record ListResult(List<JsonObject> Items, long ResourceVersion, string? ContinueAfter, int Remaining);

/// <summary>What a watch stream writes next.</summary>
internal sealed record WatchItem(string Type, JsonObject Object);

/// <summary>One open watch: what it selects and the queue its HTTP response drains.</summary>
internal sealed class Watcher
{
    public required FakeResourceType ResourceType { get; init; }
    public required string Version { get; init; }
    public string? Namespace { get; init; }
    public LabelSelector? Labels { get; init; }
    public FieldSelector? Fields { get; init; }
    public bool Bookmarks { get; init; }
    public bool InitialEventsEnd { get; init; }
    public Channel<WatchItem> Queue { get; } = Channel.CreateUnbounded<WatchItem>(new UnboundedChannelOptions { SingleReader = true });

    /// <summary>Cancelled to end the stream: gracefully (end of response) or by aborting the connection.</summary>
    public CancellationTokenSource End { get; } = new();
    public bool Abort { get; set; }

    public bool Selects(JsonObject obj) =>
        (Namespace is null || KubeJson.NamespaceOf(obj) == Namespace)
        && (Labels is null || Labels.Matches(obj))
        && (Fields is null || Fields.Matches(obj));

    /// <summary>The event this watcher sees for a stored change, with transitions in and out of its selector as ADDED / DELETED.</summary>
    public WatchItem? Translate(StoredEvent e)
    {
        if (e.ResourceType != ResourceType)
        {
            return null;
        }
        var now = Selects(e.Object);
        var before = e.Old is not null && Selects(e.Old);
        var type = e.Type switch
        {
            "ADDED" => now ? "ADDED" : null,
            "DELETED" => now ? "DELETED" : null,
            _ => (before, now) switch
            {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                _ => null,
            },
        };
        return type is null ? null : new WatchItem(type, KubeJson.ForVersion(e.Object, ResourceType, Version));
    }
}

/// <summary>
/// The objects, one global resourceVersion counter, the change history since the compaction point, and the open watches.
/// Everything happens under one lock so that a watch registered from version N sees exactly the changes after N.
/// </summary>
internal sealed class ObjectStore(TimeProvider time)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, JsonObject> _objects = new(StringComparer.Ordinal);
    private readonly List<StoredEvent> _history = [];
    private readonly List<Watcher> _watchers = [];
    private long _resourceVersion = 1000;
    private long _compactedAt = 1000;

    public event Action? Changed;

    public long ResourceVersion
    {
        get
        {
            lock (_gate)
            {
                return _resourceVersion;
            }
        }
    }

    public long CompactedAt
    {
        get
        {
            lock (_gate)
            {
                return _compactedAt;
            }
        }
    }

    public IReadOnlyList<Watcher> Watchers
    {
        get
        {
            lock (_gate)
            {
                return [.. _watchers];
            }
        }
    }

    private static string Key(FakeResourceType type, string? ns, string name) => $"{type.Group}/{type.Plural}/{ns}/{name}";

    public JsonObject Get(FakeResourceType type, string? ns, string name)
    {
        lock (_gate)
        {
            return _objects.TryGetValue(Key(type, ns, name), out var obj)
                ? (JsonObject)obj.DeepClone()
                : throw FakeKubernetesStatusException.NotFound(type, name);
        }
    }

    public (List<JsonObject> Items, long ResourceVersion) List(FakeResourceType type, string? ns, LabelSelector? labels, FieldSelector? fields)
    {
        var page = ListPage(type, ns, labels, fields, atResourceVersion: null, afterKey: null, limit: 0);
        return (page.Items, page.ResourceVersion);
    }

    /// <summary>
    /// One page of a list, ordered by namespace/name: the state now, or at <paramref name="atResourceVersion"/> (rebuilt from
    /// the history; 410 Expired when compacted), after <paramref name="afterKey"/>, at most <paramref name="limit"/> items (0 = all).
    /// </summary>
    public ListResult ListPage(FakeResourceType type, string? ns, LabelSelector? labels, FieldSelector? fields, long? atResourceVersion, string? afterKey, int limit)
    {
        lock (_gate)
        {
            var at = atResourceVersion ?? _resourceVersion;
            if (at < _compactedAt)
            {
                throw FakeKubernetesStatusException.Expired(at, _compactedAt);
            }
            if (at > _resourceVersion)
            {
                throw new FakeKubernetesStatusException(504, "Timeout", $"Too large resource version: {at}, current: {_resourceVersion}");
            }
            var objects = at == _resourceVersion ? _objects : StateAtLocked(at);
            var prefix = ns is null ? $"{type.Group}/{type.Plural}/" : $"{type.Group}/{type.Plural}/{ns}/";
            var matching = objects
                .Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal) && (afterKey is null || string.CompareOrdinal(kv.Key, afterKey) > 0))
                .OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Where(kv => (labels is null || labels.Matches(kv.Value)) && (fields is null || fields.Matches(kv.Value)))
                .ToList();
            var page = limit > 0 ? matching.Take(limit).ToList() : matching;
            var more = page.Count < matching.Count;
            return new ListResult(
                [.. page.Select(kv => (JsonObject)kv.Value.DeepClone())],
                at,
                more ? page[^1].Key : null,
                more ? matching.Count - page.Count : 0);
        }
    }

    /// <summary>The objects as they were at a resourceVersion: the current ones with the later history undone.</summary>
    private Dictionary<string, JsonObject> StateAtLocked(long at)
    {
        var state = new Dictionary<string, JsonObject>(_objects, StringComparer.Ordinal);
        for (var i = _history.Count - 1; i >= 0 && _history[i].ResourceVersion > at; i--)
        {
            var e = _history[i];
            var key = Key(e.ResourceType, KubeJson.NamespaceOf(e.Object), KubeJson.NameOf(e.Object));
            switch (e.Type)
            {
                case "ADDED":
                    state.Remove(key);
                    break;
                case "MODIFIED":
                    state[key] = e.Old!;
                    break;
                default:
                    state[key] = e.Object;
                    break;
            }
        }
        return state;
    }

    public JsonObject Create(FakeResourceType type, string? ns, JsonObject body, bool seeding = false)
    {
        var obj = (JsonObject)body.DeepClone();
        var metadata = Metadata(obj);
        CheckNamespace(type, ns, metadata);
        var name = metadata["name"]?.GetValue<string>();
        if (string.IsNullOrEmpty(name))
        {
            var generate = metadata["generateName"]?.GetValue<string>();
            if (string.IsNullOrEmpty(generate))
            {
                throw FakeKubernetesStatusException.Invalid(type, "", "metadata.name: Required value: name or generateName is required");
            }
            name = generate + Guid.NewGuid().ToString("N")[..5];
            metadata["name"] = name;
        }
        lock (_gate)
        {
            var key = Key(type, ns, name);
            if (_objects.ContainsKey(key))
            {
                throw FakeKubernetesStatusException.AlreadyExists(type, name);
            }
            metadata["uid"] = Guid.NewGuid().ToString();
            metadata["creationTimestamp"] = Timestamp();
            metadata["generation"] = 1;
            if (!seeding)
            {
                metadata.Remove("deletionTimestamp");
            }
            Commit(type, key, "ADDED", obj, old: null);
            return (JsonObject)obj.DeepClone();
        }
    }

    public JsonObject Update(FakeResourceType type, string? ns, string name, JsonObject body)
    {
        var obj = (JsonObject)body.DeepClone();
        var metadata = Metadata(obj);
        CheckNamespace(type, ns, metadata);
        var bodyName = metadata["name"]?.GetValue<string>();
        if (bodyName is not null && bodyName != name)
        {
            throw FakeKubernetesStatusException.BadRequest("the name of the object (" + bodyName + ") does not match the name on the URL (" + name + ")");
        }
        metadata["name"] = name;
        lock (_gate)
        {
            var key = Key(type, ns, name);
            if (!_objects.TryGetValue(key, out var existing))
            {
                throw FakeKubernetesStatusException.NotFound(type, name);
            }
            var requested = metadata["resourceVersion"]?.GetValue<string>();
            if (!string.IsNullOrEmpty(requested) && requested != existing["metadata"]!["resourceVersion"]!.GetValue<string>())
            {
                throw FakeKubernetesStatusException.Conflict(type, name);
            }
            return ReplaceLocked(type, key, existing, obj);
        }
    }

    /// <summary>JSON merge patch (RFC 7386); a metadata.resourceVersion in the patch is a precondition, as on the real server.</summary>
    public JsonObject Patch(FakeResourceType type, string? ns, string name, JsonObject patch)
    {
        lock (_gate)
        {
            var key = Key(type, ns, name);
            if (!_objects.TryGetValue(key, out var existing))
            {
                throw FakeKubernetesStatusException.NotFound(type, name);
            }
            var requested = patch["metadata"]?["resourceVersion"]?.GetValue<string>();
            if (!string.IsNullOrEmpty(requested) && requested != existing["metadata"]!["resourceVersion"]!.GetValue<string>())
            {
                throw FakeKubernetesStatusException.Conflict(type, name);
            }
            var merged = (JsonObject)existing.DeepClone();
            KubeJson.MergePatch(merged, patch);
            return ReplaceLocked(type, key, existing, merged);
        }
    }

    /// <summary>Creates or replaces regardless of resourceVersion (test seeding).</summary>
    public JsonObject Upsert(FakeResourceType type, JsonObject body)
    {
        var obj = (JsonObject)body.DeepClone();
        var metadata = Metadata(obj);
        var ns = type.Namespaced ? metadata["namespace"]?.GetValue<string>() ?? "default" : null;
        if (type.Namespaced)
        {
            metadata["namespace"] = ns;
        }
        var name = metadata["name"]?.GetValue<string>() ?? throw new ArgumentException("metadata.name is required", nameof(body));
        lock (_gate)
        {
            var key = Key(type, ns, name);
            if (_objects.TryGetValue(key, out var existing))
            {
                metadata.Remove("resourceVersion");
                return ReplaceLocked(type, key, existing, obj);
            }
        }
        return Create(type, ns, obj, seeding: true);
    }

    public JsonObject Delete(FakeResourceType type, string? ns, string name, string? preconditionResourceVersion)
    {
        lock (_gate)
        {
            var key = Key(type, ns, name);
            if (!_objects.TryGetValue(key, out var existing))
            {
                throw FakeKubernetesStatusException.NotFound(type, name);
            }
            if (!string.IsNullOrEmpty(preconditionResourceVersion)
                && preconditionResourceVersion != existing["metadata"]!["resourceVersion"]!.GetValue<string>())
            {
                throw FakeKubernetesStatusException.Conflict(type, name);
            }
            _objects.Remove(key);
            var last = (JsonObject)existing.DeepClone();
            Commit(type, key: null, "DELETED", last, existing);
            return (JsonObject)last.DeepClone();
        }
    }

    /// <summary>Registers a watch. From null/"0": ADDED for every selected object now; from N: the history after N (410 if compacted).</summary>
    public Watcher Watch(Watcher watcher, long? fromResourceVersion)
    {
        lock (_gate)
        {
            if (fromResourceVersion is { } from)
            {
                if (from < _compactedAt)
                {
                    throw FakeKubernetesStatusException.Expired(from, _compactedAt);
                }
                foreach (var e in _history)
                {
                    if (e.ResourceVersion > from && watcher.Translate(e) is { } item)
                    {
                        watcher.Queue.Writer.TryWrite(item);
                    }
                }
            }
            else
            {
                var prefix = $"{watcher.ResourceType.Group}/{watcher.ResourceType.Plural}/";
                foreach (var kv in _objects.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    if (watcher.Selects(kv.Value))
                    {
                        watcher.Queue.Writer.TryWrite(new WatchItem("ADDED", KubeJson.ForVersion(kv.Value, watcher.ResourceType, watcher.Version)));
                    }
                }
                if (watcher.InitialEventsEnd)
                {
                    var bookmark = KubeJson.BookmarkObject(watcher.ResourceType, watcher.Version, _resourceVersion);
                    ((JsonObject)bookmark["metadata"]!)["annotations"] = new JsonObject { ["k8s.io/initial-events-end"] = "true" };
                    watcher.Queue.Writer.TryWrite(new WatchItem("BOOKMARK", bookmark));
                }
            }
            _watchers.Add(watcher);
        }
        Changed?.Invoke();
        return watcher;
    }

    public void Unwatch(Watcher watcher)
    {
        lock (_gate)
        {
            _watchers.Remove(watcher);
        }
        Changed?.Invoke();
    }

    /// <summary>Queues a BOOKMARK at the current resourceVersion on every watch that asked for bookmarks.</summary>
    public void Bookmark()
    {
        lock (_gate)
        {
            foreach (var w in _watchers.Where(w => w.Bookmarks))
            {
                w.Queue.Writer.TryWrite(new WatchItem("BOOKMARK", KubeJson.BookmarkObject(w.ResourceType, w.Version, _resourceVersion)));
            }
        }
    }

    /// <summary>Forgets the history: a watch or exact list from any version before now gets 410 Expired.</summary>
    public void Compact()
    {
        lock (_gate)
        {
            _compactedAt = _resourceVersion;
            _history.Clear();
        }
    }

    private JsonObject ReplaceLocked(FakeResourceType type, string key, JsonObject existing, JsonObject obj)
    {
        var metadata = Metadata(obj);
        var oldMetadata = (JsonObject)existing["metadata"]!;
        metadata["uid"] = oldMetadata["uid"]?.DeepClone();
        metadata["creationTimestamp"] = oldMetadata["creationTimestamp"]?.DeepClone();
        if (type.Namespaced)
        {
            metadata["namespace"] = oldMetadata["namespace"]?.DeepClone();
        }
        var generation = KubeJson.ReadLong(oldMetadata["generation"]) ?? 1;
        if (!JsonNode.DeepEquals(existing["spec"], obj["spec"]))
        {
            generation++;
        }
        metadata["generation"] = generation;
        metadata["resourceVersion"] = oldMetadata["resourceVersion"]?.DeepClone();
        obj["apiVersion"] = existing["apiVersion"]?.DeepClone();
        obj["kind"] = existing["kind"]?.DeepClone();
        if (JsonNode.DeepEquals(existing, obj))
        {
            // As on the real server, an update that changes nothing is a no-op: same resourceVersion, no watch event.
            return (JsonObject)existing.DeepClone();
        }
        Commit(type, key, "MODIFIED", obj, existing);
        return (JsonObject)obj.DeepClone();
    }

    private void Commit(FakeResourceType type, string? key, string eventType, JsonObject obj, JsonObject? old)
    {
        _resourceVersion++;
        var metadata = Metadata(obj);
        metadata["resourceVersion"] = _resourceVersion.ToString(CultureInfo.InvariantCulture);
        obj["apiVersion"] = type.ApiVersion(type.Versions[0]);
        obj["kind"] = type.Kind;
        if (key is not null)
        {
            _objects[key] = obj;
        }
        var stored = new StoredEvent(_resourceVersion, eventType, type, (JsonObject)obj.DeepClone(), old);
        _history.Add(stored);
        foreach (var w in _watchers)
        {
            if (w.Translate(stored) is { } item)
            {
                w.Queue.Writer.TryWrite(item);
            }
        }
        Changed?.Invoke();
    }

    private static JsonObject Metadata(JsonObject obj)
    {
        if (obj["metadata"] is JsonObject metadata)
        {
            return metadata;
        }
        metadata = [];
        obj["metadata"] = metadata;
        return metadata;
    }

    private static void CheckNamespace(FakeResourceType type, string? ns, JsonObject metadata)
    {
        if (!type.Namespaced)
        {
            metadata.Remove("namespace");
            return;
        }
        var bodyNs = metadata["namespace"]?.GetValue<string>();
        if (!string.IsNullOrEmpty(bodyNs) && bodyNs != ns)
        {
            throw FakeKubernetesStatusException.BadRequest("the namespace of the provided object does not match the namespace sent on the request");
        }
        metadata["namespace"] = ns;
    }

    private string Timestamp() => time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
