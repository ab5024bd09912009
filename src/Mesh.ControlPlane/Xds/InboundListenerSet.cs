using System.Collections;
using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// The inbound listeners of one snapshot, by name, each built (and packed) the first time it is asked for and then shared
/// by every stream of that snapshot. A name whose address:port has no owner that may be served (see
/// <see cref="InboundListenerTranslator"/>) has no listener.
/// </summary>
/// <remarks>
/// Only the workload an inbound listener belongs to ever gets it, by name, so building them on demand costs a snapshot
/// what its connected workloads ask for, not one listener per endpoint of the mesh. Whether a workload's listener changed
/// is known only by building it: <see cref="XdsChanges.InboundListenersUnknown"/> tells a connection to compare the ones
/// it holds. A listener equal (bytes and identities) to the one the previous snapshot built for the name is that
/// instance.
/// </remarks>
internal sealed class InboundListenerSet : IReadOnlyDictionary<string, InboundListener>
{
    private readonly Func<FrozenSet<string>> _namesFactory;
    private FrozenSet<string>? _names;
    private readonly Func<string, InboundListener?> _build;
    private readonly Func<string, ImmutableArray<string>?> _identitiesOf;
    private readonly ConcurrentDictionary<string, Lazy<InboundListener?>> _built = new(StringComparer.Ordinal);
    private ConcurrentDictionary<string, Lazy<InboundListener?>>? _previous;

    public InboundListenerSet(FrozenSet<string> names, Func<string, InboundListener?> build, Func<string, ImmutableArray<string>?> identitiesOf)
        : this(() => names, build, identitiesOf)
    {
        ArgumentNullException.ThrowIfNull(names);
    }

    /// <summary>A set whose names are listed by <paramref name="names"/> when first needed (not when the snapshot is built).</summary>
    public InboundListenerSet(Func<FrozenSet<string>> names, Func<string, InboundListener?> build, Func<string, ImmutableArray<string>?> identitiesOf)
    {
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(build);
        ArgumentNullException.ThrowIfNull(identitiesOf);
        _namesFactory = names;
        _build = build;
        _identitiesOf = identitiesOf;
    }

    private FrozenSet<string> Names => LazyInitializer.EnsureInitialized(ref _names, _namesFactory);

    public static InboundListenerSet Empty { get; } = new(FrozenSet<string>.Empty, _ => null, _ => null);

    /// <summary>
    /// Who the listener <paramref name="name"/> may be served to, without building it (null: no such listener): the
    /// identity check comes first, so a client asking for other workloads' listeners never makes them built.
    /// </summary>
    public ImmutableArray<string>? IdentitiesOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Names.Contains(name) ? _identitiesOf(name) : null;
    }

    /// <summary>Candidate names (every workload address:port); <see cref="TryGetValue"/> tells which have a listener.</summary>
    public IEnumerable<string> Keys => this.Select(p => p.Key);

    public IEnumerable<InboundListener> Values => this.Select(p => p.Value);

    /// <summary>How many listeners were built so far (for tests and diagnostics).</summary>
    internal int BuiltCount => _built.Count;

    /// <summary>The number of listeners (builds every one: for tests and diagnostics, not for a push).</summary>
    public int Count => Keys.Count();

    public InboundListener this[string key] => TryGetValue(key, out var listener) ? listener : throw new KeyNotFoundException(key);

    /// <summary>Reuses <paramref name="previous"/>'s listeners where they come out equal (the previous snapshot's, not older ones).</summary>
    public void CarryOver(InboundListenerSet previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        _previous = previous._built;
    }

    public bool ContainsKey(string key) => TryGetValue(key, out _);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out InboundListener value)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (!Names.Contains(key))
        {
            value = null;
            return false;
        }

        value = _built.GetOrAdd(key, name => new Lazy<InboundListener?>(() => Reuse(_build(name)))).Value;
        return value is not null;
    }

    public IEnumerator<KeyValuePair<string, InboundListener>> GetEnumerator()
    {
        foreach (var name in Names)
        {
            if (TryGetValue(name, out var listener))
            {
                yield return KeyValuePair.Create(name, listener);
            }
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private InboundListener? Reuse(InboundListener? built)
    {
        if (built is null || Volatile.Read(ref _previous) is not { } previous
            || !previous.TryGetValue(built.Name, out var lazy) || !lazy.IsValueCreated || lazy.Value is not { } old)
        {
            return built;
        }

        return XdsChanges.SameContent(old.Xds, built.Xds) && old.Identities.SequenceEqual(built.Identities, StringComparer.Ordinal) ? old : built;
    }
}
