using System.Threading.Channels;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Turns store changes into <see cref="XdsSnapshot"/>s, debounced by DebounceInterval, and
/// wakes every ADS connection so it can push what changed for its subscriptions.
/// </summary>
internal sealed partial class XdsPublisher : BackgroundService
{
    private readonly ConfigStore _store;
    private readonly ControlPlaneOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<XdsPublisher> _logger;
    private readonly JwksResolver? _jwks;
    private readonly Channel<bool> _signal = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Lock _gate = new();
    private readonly Lock _rebuildGate = new();
    private readonly List<Action> _subscribers = [];
    private XdsSnapshot _current;
    private long _generation;
    private long _pendingChangeAt; // first change since the last rebuild (TimeProvider timestamp), 0 when none
    private volatile bool _fromValidConfig;

    public XdsPublisher(ConfigStore store, ControlPlaneOptions options, TimeProvider time, ILogger<XdsPublisher> logger, JwksResolver? jwks = null)
    {
        _jwks = jwks;
        _store = store;
        _options = options;
        _time = time;
        _logger = logger;
        _fromValidConfig = store.HasValidConfig; // read before the model: a valid flag implies the model it was set with
        _current = XdsTranslator.Translate(store.Current, ++_generation, options.RootNamespace, options.TrustDomain, options.InboundPaths, jwks);
        _current.ChangedAt = time.GetTimestamp();
        store.Changed += OnChanged;
        if (jwks is not null)
        {
            // New keys for a jwksUri change the inbound listeners that inline them.
            jwks.Changed += OnChanged;
        }
    }

    public XdsSnapshot Current => Volatile.Read(ref _current);

    /// <summary>
    /// Gets whether <see cref="Current"/> was built from a valid config folder. The store turns valid a debounce before
    /// the first such snapshot exists; ADS and readiness wait for the snapshot, so no client ever sees the empty one.
    /// </summary>
    public bool HasValidSnapshot => _fromValidConfig;

    /// <summary>Registers a callback run after each new snapshot; dispose to unsubscribe.</summary>
    public IDisposable Subscribe(Action onSnapshot)
    {
        lock (_gate)
        {
            _subscribers.Add(onSnapshot);
        }

        return new Subscription(this, onSnapshot);
    }

    /// <summary>Translates the store's current model now (used at start and by tests).</summary>
    public void Rebuild()
    {
        // Before the model: a change whose time is taken here is already in the store (it signals after updating).
        var changedAt = Interlocked.Exchange(ref _pendingChangeAt, 0);
        var valid = _store.HasValidConfig; // before the model: once valid, the model read next is a valid one
        var model = _store.Current;
        XdsSnapshot snapshot;
        lock (_rebuildGate)
        {
            snapshot = XdsTranslator.Translate(model, ++_generation, _options.RootNamespace, _options.TrustDomain, _options.InboundPaths, _jwks);
            snapshot.ChangedAt = changedAt != 0 ? changedAt : _time.GetTimestamp();
            Volatile.Write(ref _current, snapshot);
            _fromValidConfig = valid;
        }

        LogSnapshot(_logger, snapshot.Version, snapshot.Clusters.Count, model.Registrations.Length);
        Action[] subscribers;
        lock (_gate)
        {
            subscribers = [.. _subscribers];
        }

        foreach (var subscriber in subscribers)
        {
            subscriber();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (await _signal.Reader.WaitToReadAsync(stoppingToken))
            {
                // Coalesce bursts (many registrations, a folder of files saved at once) into one push.
                if (_options.DebounceInterval > TimeSpan.Zero)
                {
                    await Task.Delay(_options.DebounceInterval, _time, stoppingToken);
                }

                _signal.Reader.TryRead(out _);
                Rebuild();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private void OnChanged()
    {
        Interlocked.CompareExchange(ref _pendingChangeAt, _time.GetTimestamp(), 0);
        _signal.Writer.TryWrite(true);
    }

    private void Unsubscribe(Action onSnapshot)
    {
        lock (_gate)
        {
            _subscribers.Remove(onSnapshot);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "xDS snapshot {Version}: {Clusters} clusters, {Registrations} registrations")]
    private static partial void LogSnapshot(ILogger logger, long version, int clusters, int registrations);

    private sealed class Subscription(XdsPublisher owner, Action onSnapshot) : IDisposable
    {
        public void Dispose() => owner.Unsubscribe(onSnapshot);
    }
}
