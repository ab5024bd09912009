using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using k8s;
using k8s.Autorest;
using Mesh.ControlPlane.Telemetry;

namespace Mesh.ControlPlane.Kubernetes;

/// <summary>The part of an informer the source needs without knowing its kind.</summary>
internal interface IKubernetesInformer
{
    /// <summary>"Service", or "Service in shop" when watching one namespace.</summary>
    string Name { get; }

    /// <summary>Whether a list succeeded once; from then on <c>Items</c> is a complete (if possibly stale) view.</summary>
    bool HasSynced { get; }

    Task RunAsync(CancellationToken cancellationToken);
}

/// <summary>
/// A list→watch cache of one kind (in one namespace, or all): lists, then watches from the list's resourceVersion with
/// bookmarks asked for and a watch timeout random in [5, 10) minutes (client-go's Reflector), advancing the
/// resourceVersion on every event, bookmarks included. On 410 Gone (an expired resourceVersion, as an HTTP status or an
/// in-stream Status) it relists and replaces the cache by the list, so an object deleted meanwhile disappears and none
/// appears twice. A watch that delivers nothing, not even a bookmark, for the idle timeout is cancelled and rewatched.
/// Failures back off (<see cref="WatchBackoff"/>); connection errors, 5xx and 429 rewatch from the last resourceVersion
/// without relisting (client-go's rule), other errors relist. The items keep serving through every failure; nothing
/// escapes the loop but cancellation. A 404 on the first list of a kind that may be absent (a CRD not installed) syncs it
/// as empty; once a list succeeded, a 404 is a failure like any other and never empties the cache.
/// </summary>
internal sealed partial class KubernetesInformer<T> : IKubernetesInformer
    where T : class
{
    private static readonly TimeSpan NotFoundWarningInterval = TimeSpan.FromMinutes(1);

    private readonly IKubernetes _client;
    private readonly KubernetesResourceKind<T> _kind;
    private readonly string? _namespace;
    private readonly TimeSpan _idleTimeout;
    private readonly TimeProvider _time;
    private readonly Random _random;
    private readonly Action _changed;
    private readonly ILogger _logger;
    private readonly ControlPlaneMetrics? _metrics;
    private ImmutableDictionary<string, T> _items = ImmutableDictionary.Create<string, T>(StringComparer.Ordinal);
    private volatile bool _synced;
    private bool _listed;
    private long _lastNotFoundWarning;
    private int _notFoundSinceWarning;
    private int _version;
    private long _lastList;

    public KubernetesInformer(IKubernetes client, KubernetesResourceKind<T> kind, string? ns, TimeSpan idleTimeout, TimeProvider time, Random random, Action changed, ILogger logger, ControlPlaneMetrics? metrics = null)
    {
        _client = client;
        _kind = kind;
        _namespace = ns;
        _idleTimeout = idleTimeout;
        _time = time;
        _random = random;
        _changed = changed;
        _logger = logger;
        _metrics = metrics;
        Name = ns is null ? kind.Kind : $"{kind.Kind} in {ns}";
    }

    public string Name { get; }

    public string Kind => _kind.Kind;

    public bool HasSynced => _synced;

    /// <summary>The objects as last seen, by namespace/name.</summary>
    public ImmutableDictionary<string, T> Items => Volatile.Read(ref _items);

    /// <summary>The resourceVersion the next watch starts from (the last list's, then every event's).</summary>
    public string? ResourceVersion { get; private set; }

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var backoff = new WatchBackoff(_time, _random);
        var relist = true;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (relist)
                {
                    await ListAsync(cancellationToken).ConfigureAwait(false);
                    relist = false;
                }

                var outcome = await WatchAsync(backoff, cancellationToken).ConfigureAwait(false);
                switch (outcome)
                {
                    case WatchOutcome.Expired:
                        LogExpired(_logger, Name, ResourceVersion);
                        _metrics?.KubernetesWatchRestarted(_kind.Kind, "expired");
                        relist = true;
                        await ThrottleRelistAsync(backoff, cancellationToken).ConfigureAwait(false);
                        continue;
                    case WatchOutcome.Idle:
                        LogIdle(_logger, Name, _idleTimeout);
                        _metrics?.KubernetesWatchRestarted(_kind.Kind, "idle");
                        continue;
                    case WatchOutcome.TooShort:
                        // client-go: a watch that closes within a second without a single event is an error, not a timeout.
                        _metrics?.KubernetesWatchRestarted(_kind.Kind, "error");
                        var wait = backoff.Next();
                        LogShortWatch(_logger, Name, wait);
                        await DelayAsync(wait, null, cancellationToken).ConfigureAwait(false);
                        continue;
                    default:
                        _metrics?.KubernetesWatchRestarted(_kind.Kind, "closed");
                        continue;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                if (IsExpired(ex))
                {
                    LogExpired(_logger, Name, ResourceVersion);
                    _metrics?.KubernetesWatchRestarted(_kind.Kind, "expired");
                    relist = true;
                    await ThrottleRelistAsync(backoff, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                if (relist && _kind.MayBeAbsent && ex is HttpOperationException { Response.StatusCode: HttpStatusCode.NotFound })
                {
                    if (_listed)
                    {
                        // Listed before, so the CRD was installed: a 404 now is a passing fault (an apiserver restarting, a CRD
                        // being replaced), not "absent". Emptying the cache would drop every DENY; objects leave it through
                        // watch DELETEs (a deleted CRD deletes its objects first) or a later successful list.
                        var retry = backoff.Next();
                        LogNotFoundAfterList(retry);
                        _metrics?.KubernetesWatchRestarted(_kind.Kind, "error");
                        await DelayAsync(retry, null, cancellationToken).ConfigureAwait(false);
                        continue;
                    }

                    if (_version + 1 < _kind.Versions.Count)
                    {
                        // Not served at this version (an Istio older than 1.22 serves security.istio.io at v1beta1 only).
                        _version++;
                        continue;
                    }

                    _version = 0;
                    MarkAbsent();
                    await DelayAsync(backoff.Next(), null, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                // Connection refused, 5xx, 429: the server (or the way to it) is down or busy, not our resourceVersion.
                // Anything else (403 after an RBAC change, 404 when a CRD is not installed, a body we cannot read) relists.
                if (ResourceVersion is not null && !IsRetriable(ex))
                {
                    relist = true;
                }

                _metrics?.KubernetesWatchRestarted(_kind.Kind, "error");
                await DelayAsync(backoff.Next(), ex, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A resourceVersion that expires again right after a relist (a server that cannot hold any) must not spin list→watch.</summary>
    private async Task ThrottleRelistAsync(WatchBackoff backoff, CancellationToken cancellationToken)
    {
        if (_lastList != 0 && _time.GetElapsedTime(_lastList) < TimeSpan.FromSeconds(1))
        {
            await DelayAsync(backoff.Next(), null, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task DelayAsync(TimeSpan wait, Exception? error, CancellationToken cancellationToken)
    {
        if (error is not null)
        {
            LogFailed(_logger, Name, Describe(error), wait, _synced);
        }

        try
        {
            await Task.Delay(wait, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>A 404 on list after a successful list, warned about at most once a minute (with how many were not logged).</summary>
    private void LogNotFoundAfterList(TimeSpan retry)
    {
        _notFoundSinceWarning++;
        if (_lastNotFoundWarning == 0 || _time.GetElapsedTime(_lastNotFoundWarning) >= NotFoundWarningInterval)
        {
            LogNotFoundKept(_logger, Name, _kind.Versions[_version], _notFoundSinceWarning, Items.Count, retry);
            _lastNotFoundWarning = _time.GetTimestamp();
            _notFoundSinceWarning = 0;
        }
    }

    /// <summary>The kind was never listed and is not served (its CRD is not installed): empty, and synced.</summary>
    private void MarkAbsent()
    {
        var hadItems = !Items.IsEmpty;
        if (!_synced || hadItems)
        {
            LogAbsent(_logger, Name);
        }

        Volatile.Write(ref _items, _items.Clear());
        ResourceVersion = null;
        if (!_synced || hadItems)
        {
            _synced = true;
            _changed();
        }
    }

    private async Task ListAsync(CancellationToken cancellationToken)
    {
        var (items, resourceVersion) = await _kind.List(_client, _namespace, _kind.Versions[_version], cancellationToken).ConfigureAwait(false);
        var builder = ImmutableDictionary.CreateBuilder<string, T>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            if (Key(item) is { } key)
            {
                builder[key] = item;
            }
        }

        var fresh = builder.ToImmutable();
        var previous = Items;
        var deleted = previous.Keys.Count(k => !fresh.ContainsKey(k));
        var added = fresh.Keys.Count(k => !previous.ContainsKey(k));
        Volatile.Write(ref _items, fresh);
        _lastList = _time.GetTimestamp();
        ResourceVersion = resourceVersion ?? string.Empty;
        var first = !_synced;
        _synced = true;
        _listed = true;
        _metrics?.KubernetesListed(_kind.Kind, first);
        if (first)
        {
            LogSynced(_logger, Name, fresh.Count, ResourceVersion);
        }
        else
        {
            // A relist replaces the cache: keys gone from the list are deleted (the deletes the watch missed).
            LogRelisted(_logger, Name, fresh.Count, added, deleted, ResourceVersion);
        }

        _changed();
    }

    private async Task<WatchOutcome> WatchAsync(WatchBackoff backoff, CancellationToken cancellationToken)
    {
        // [300, 600) seconds, as client-go's Reflector: spreads the reconnects of many clients.
        var timeoutSeconds = 300 + _random.Next(300);
        using var idle = new CancellationTokenSource(_idleTimeout, _time);
        using var watch = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, idle.Token);
        var expired = false;
        var started = _time.GetTimestamp();
        var events = 0;
        void OnError(Exception ex)
        {
            if (IsExpired(ex))
            {
                // The C# client hands an in-stream 410 Status to onError, never as an event: stop here and relist.
                expired = true;
                watch.Cancel();
            }
            else
            {
                LogStreamError(_logger, Name, Describe(ex));
            }
        }

        try
        {
            await foreach (var (type, item) in _kind.Watch(_client, _namespace, _kind.Versions[_version], ResourceVersion ?? string.Empty, timeoutSeconds, OnError, watch.Token).WithCancellation(watch.Token).ConfigureAwait(false))
            {
                if (events++ == 0)
                {
                    // The server is answering: a drop after this is not a failing server, so it must not wait out a back-off
                    // grown by earlier drops (ten drops a few seconds apart had pushed a change's arrival out to 30 s).
                    backoff.Reset();
                }

                idle.CancelAfter(_idleTimeout);
                if (Apply(type, item))
                {
                    _changed();
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && (expired || idle.IsCancellationRequested))
        {
        }

        if (expired)
        {
            return WatchOutcome.Expired;
        }

        if (idle.IsCancellationRequested)
        {
            return WatchOutcome.Idle;
        }

        cancellationToken.ThrowIfCancellationRequested();
        return events == 0 && _time.GetElapsedTime(started) < TimeSpan.FromSeconds(1) ? WatchOutcome.TooShort : WatchOutcome.Closed;
    }

    /// <summary>Applies one event; true when the items changed.</summary>
    private bool Apply(WatchEventType type, T item)
    {
        var (_, _, resourceVersion) = _kind.Metadata(item);
        if (type is WatchEventType.Added or WatchEventType.Modified or WatchEventType.Deleted or WatchEventType.Bookmark && !string.IsNullOrEmpty(resourceVersion))
        {
            ResourceVersion = resourceVersion;
        }

        if (type is WatchEventType.Bookmark or WatchEventType.Error || Key(item) is not { } key)
        {
            return false;
        }

        var items = Items;
        var updated = type == WatchEventType.Deleted ? items.Remove(key) : items.SetItem(key, item);
        Volatile.Write(ref _items, updated);
        return !ReferenceEquals(items, updated);
    }

    private string? Key(T item)
    {
        var (ns, name, _) = _kind.Metadata(item);
        return name is null ? null : ns is null ? name : $"{ns}/{name}";
    }

    internal static bool IsExpired(Exception ex) => ex switch
    {
        KubernetesException { Status: { } status } => status.Code == 410 || status.Reason is "Expired" or "Gone",
        HttpOperationException { Response.StatusCode: HttpStatusCode.Gone } => true,
        _ => false,
    };

    /// <summary>client-go's <c>isWatchErrorRetriable</c>, widened to 5xx and 429: the resourceVersion is still good.</summary>
    internal static bool IsRetriable(Exception ex) => ex switch
    {
        HttpOperationException { Response: { } response } => (int)response.StatusCode >= 500 || response.StatusCode == HttpStatusCode.TooManyRequests,
        KubernetesException { Status: { } status } => status.Code is >= 500 or 429,
        HttpRequestException or IOException or SocketException or TimeoutException => true,
        _ => ex.InnerException is { } inner && IsRetriable(inner),
    };

    private static string Describe(Exception ex) => ex switch
    {
        HttpOperationException { Response: { } response } => $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}: {Truncate(response.Content)}",
        KubernetesException { Status: { } status } => $"Status {status.Code} {status.Reason}: {status.Message}",
        _ => $"{ex.GetType().Name}: {ex.Message}",
    };

    private static string Truncate(string? text) => text is null ? string.Empty : text.Length <= 300 ? text : text[..300] + "…";

    private enum WatchOutcome
    {
        Closed,
        TooShort,
        Expired,
        Idle,
    }
}
