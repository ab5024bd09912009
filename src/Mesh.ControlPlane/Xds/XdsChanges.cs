using System.Collections.Frozen;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// What changed from one snapshot to the next, per xDS type: the names added or changed (<see cref="Changed"/>) and the
/// names removed (<see cref="Removed"/>). A connection whose client is at <see cref="PreviousVersion"/> looks only at these
/// names, so a push costs what changed rather than what the client subscribes to.
/// </summary>
/// <remarks>
/// Resources that depend on the client beyond their name are listed whenever they exist in either snapshot, since whether
/// a given client's variant changed is only known per client: the route configurations of source-scoped VirtualServices
/// and the assignments of locality-aware clusters. Listeners are built per requested spelling, so LDS has one flag,
/// <see cref="ListenerTargetsChanged"/>, plus the inbound listener names.
/// </remarks>
internal sealed class XdsChanges
{
    private readonly FrozenDictionary<string, FrozenSet<string>> _changed;
    private readonly FrozenDictionary<string, FrozenSet<string>> _removed;

    public XdsChanges(
        long previousVersion,
        IReadOnlyDictionary<string, HashSet<string>> changed,
        IReadOnlyDictionary<string, HashSet<string>> removed,
        bool listenerTargetsChanged)
    {
        ArgumentNullException.ThrowIfNull(changed);
        ArgumentNullException.ThrowIfNull(removed);
        PreviousVersion = previousVersion;
        _changed = changed.ToFrozenDictionary(p => p.Key, p => p.Value.ToFrozenSet(StringComparer.Ordinal), StringComparer.Ordinal);
        _removed = removed.ToFrozenDictionary(p => p.Key, p => p.Value.ToFrozenSet(StringComparer.Ordinal), StringComparer.Ordinal);
        ListenerTargetsChanged = listenerTargetsChanged;
    }

    /// <summary>The version of the snapshot these changes are relative to.</summary>
    public long PreviousVersion { get; }

    /// <summary>Whether an outbound listener target was added, removed or now points at another route configuration.</summary>
    public bool ListenerTargetsChanged { get; }

    /// <summary>
    /// Gets whether inbound listeners may have changed without being listed: they are built when their workload asks
    /// (<see cref="InboundListenerSet"/>), so a connection holding some compares them itself.
    /// </summary>
    public bool InboundListenersUnknown { get; init; }

    /// <summary>
    /// Gets whether a client's Sidecar scope may have changed (<see cref="EgressScopes"/>): what it may see changed with no
    /// resource changing, so this list says nothing for it and a connection compares its whole subscription.
    /// </summary>
    public bool ScopesChanged { get; init; }

    /// <summary>Names of <paramref name="typeUrl"/> added or changed (for LDS: inbound listeners only).</summary>
    public FrozenSet<string> Changed(string typeUrl) => _changed.GetValueOrDefault(typeUrl) ?? FrozenSet<string>.Empty;

    /// <summary>Names of <paramref name="typeUrl"/> that no longer exist (for LDS: inbound listeners only).</summary>
    public FrozenSet<string> Removed(string typeUrl) => _removed.GetValueOrDefault(typeUrl) ?? FrozenSet<string>.Empty;

    /// <summary>Whether nothing of <paramref name="typeUrl"/> changed.</summary>
    public bool IsEmpty(string typeUrl) =>
        Changed(typeUrl).Count == 0 && Removed(typeUrl).Count == 0 && (typeUrl != TypeUrls.Listener || !(ListenerTargetsChanged || InboundListenersUnknown));

    /// <summary>
    /// Makes each resource of <paramref name="current"/> whose bytes equal <paramref name="previous"/>'s resource of the
    /// same name that instance (serialized once, shared across snapshots), and records the names added, changed or removed.
    /// </summary>
    internal static void Intern(Dictionary<string, XdsResource> current, IReadOnlyDictionary<string, XdsResource> previous, HashSet<string> changed, HashSet<string> removed)
    {
        ArgumentNullException.ThrowIfNull(current);
        ArgumentNullException.ThrowIfNull(previous);
        List<KeyValuePair<string, XdsResource>>? reused = null;
        foreach (var (name, resource) in current)
        {
            if (previous.TryGetValue(name, out var old) && SameContent(old, resource))
            {
                if (!ReferenceEquals(old, resource))
                {
                    (reused ??= []).Add(KeyValuePair.Create(name, old));
                }
            }
            else
            {
                changed.Add(name);
            }
        }

        foreach (var (name, old) in reused ?? [])
        {
            current[name] = old;
        }

        foreach (var name in previous.Keys)
        {
            if (!current.ContainsKey(name))
            {
                removed.Add(name);
            }
        }
    }

    /// <summary>Equal type and bytes (the version, a digest of the bytes, first: different resources rarely share it).</summary>
    internal static bool SameContent(XdsResource a, XdsResource b) =>
        ReferenceEquals(a, b)
        || (a.Version == b.Version && a.Resource.TypeUrl == b.Resource.TypeUrl && a.Resource.Value.Equals(b.Resource.Value));
}
