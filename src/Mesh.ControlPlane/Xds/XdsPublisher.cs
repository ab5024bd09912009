using System.Collections.Concurrent;
using System.Threading.Channels;
using Mesh.ControlPlane.Configuration;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;

namespace Mesh.ControlPlane.Xds;

/// <summary>
/// Turns store changes into <see cref="XdsSnapshot"/>s and wakes every ADS connection so it can push what changed for its
/// subscriptions. Changes are debounced as istiod does (PILOT_DEBOUNCE_AFTER / PILOT_DEBOUNCE_MAX): a translation waits
/// for <c>DebounceInterval</c> of quiet, each new change restarting it, but never more than <c>DebounceMax</c> after the
/// first change it carries.
/// </summary>
/// <remarks>
/// This is the only debounce between a change and a push: the config folder watcher does not wait on its own, it hands
/// its reload to <see cref="Schedule"/>, which runs it right before the translation (one read of the folder per burst).
/// </remarks>
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
    private readonly ConcurrentDictionary<Action, byte> _refreshes = new();
    private XdsSnapshot _current;
    private long _generation;
    private long _pendingChangeAt; // first change since the last rebuild (TimeProvider timestamp), 0 when none
    private volatile bool _fromValidConfig;
    private volatile bool _refreshing;
    private volatile string? _translationError;

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

    /// <summary>Gets why the last translation failed (a bug), or null when it succeeded; <see cref="Current"/> is then older than the store.</summary>
    public string? TranslationError => _translationError;

    /// <summary>Registers a callback run after each new snapshot; dispose to unsubscribe.</summary>
    public IDisposable Subscribe(Action onSnapshot)
    {
        lock (_gate)
        {
            _subscribers.Add(onSnapshot);
        }

        return new Subscription(this, onSnapshot);
    }

    /// <summary>
    /// Debounces a change whose source must be read again (the config folder): <paramref name="refresh"/> runs once,
    /// after the quiet period and right before the translation, however many times it was scheduled meanwhile.
    /// </summary>
    public void Schedule(Action refresh)
    {
        ArgumentNullException.ThrowIfNull(refresh);
        _refreshes.TryAdd(refresh, 0);
        Interlocked.CompareExchange(ref _pendingChangeAt, _time.GetTimestamp(), 0);

        // Always a signal, even during a refresh: a file written after the running refresh read past it must get another
        // round (the store change the running refresh makes is what stays silent, below).
        _signal.Writer.TryWrite(true);
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
            // The previous snapshot lends its unchanged resources (same instances, serialized once) and is the base of Changes.
            var previous = Volatile.Read(ref _current);
            try
            {
                snapshot = XdsTranslator.Translate(model, ++_generation, _options.RootNamespace, _options.TrustDomain, _options.InboundPaths, _jwks, previous);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // A bug in a translation must not stop the control plane (at start or on the loop): the last snapshot keeps
                // serving, readiness says why (not ready before the first snapshot, a warning after it), and the next change tries again.
                // Logged first: whoever sees the error (readiness, a test) also finds the log line.
                LogTranslationFailed(_logger, model.Version, ex);
                _translationError = $"translating the config failed ({ex.GetType().Name}: {ex.Message}); the last good snapshot keeps serving";
                return;
            }

            snapshot.ChangedAt = changedAt != 0 ? changedAt : _time.GetTimestamp();
            Volatile.Write(ref _current, snapshot);
            _fromValidConfig = valid;
            _translationError = null;
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
                _signal.Reader.TryRead(out _);
                await DebounceAsync(stoppingToken);
                try
                {
                    RunRefreshes();
                    Rebuild();
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // The loop also carries registrations, lease expiries and the CA's pushes: a bug in one round (a
                    // subscriber, say) is logged and the next change gets its round.
                    LogRoundFailed(_logger, ex);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Coalesces bursts (many registrations, a folder of files saved at once) into one push: waits until no change came for
    /// DebounceInterval, or DebounceMax passed since the first one.
    /// </summary>
    private async Task DebounceAsync(CancellationToken stoppingToken)
    {
        var quiet = _options.DebounceInterval;
        if (quiet <= TimeSpan.Zero)
        {
            return;
        }

        var started = _time.GetTimestamp();
        while (true)
        {
            var left = _options.DebounceMax - _time.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                return;
            }

            using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var delay = Task.Delay(quiet < left ? quiet : left, _time, wait.Token);
            var change = _signal.Reader.WaitToReadAsync(wait.Token).AsTask();
            var first = await Task.WhenAny(delay, change);
            await wait.CancelAsync();
            stoppingToken.ThrowIfCancellationRequested();
            if (first == delay || !_signal.Reader.TryRead(out _))
            {
                return;
            }

            // Another change: the quiet period starts again (within DebounceMax).
        }
    }

    private void RunRefreshes()
    {
        if (_refreshes.IsEmpty)
        {
            return;
        }

        // The store changes a refresh causes are the ones this translation is about to carry: they signal no second round.
        _refreshing = true;
        try
        {
            foreach (var refresh in _refreshes.Keys)
            {
                _refreshes.TryRemove(refresh, out _);
                try
                {
                    refresh();
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    // The last good config keeps serving; the next change schedules the refresh again.
                    LogRefreshFailed(_logger, ex);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    // A bug in a source's reader: the same, logged as an error (the other refreshes and the translation go on).
                    LogRefreshBug(_logger, ex);
                }
            }
        }
        finally
        {
            _refreshing = false;
        }
    }

    private void OnChanged()
    {
        Interlocked.CompareExchange(ref _pendingChangeAt, _time.GetTimestamp(), 0);
        if (!_refreshing)
        {
            _signal.Writer.TryWrite(true);
        }
    }

    private void Unsubscribe(Action onSnapshot)
    {
        lock (_gate)
        {
            _subscribers.Remove(onSnapshot);
        }
    }

    private sealed class Subscription(XdsPublisher owner, Action onSnapshot) : IDisposable
    {
        public void Dispose() => owner.Unsubscribe(onSnapshot);
    }
}
