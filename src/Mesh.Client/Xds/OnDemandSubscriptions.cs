using Mesh.Client.Discovery;
using Mesh.Client.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Mesh.Client.Xds;

/// <summary>
/// The services this client subscribes to in <c>OnDemand</c> mode (<c>Mesh:ControlPlane:Subscriptions</c>), as gRPC's xDS
/// client watches the listeners of the targets it resolves: one LDS name per service host the app calls (<c>host</c> for a
/// request without a port — the control plane picks the service's only port, as for <c>xds:///host</c> — else
/// <c>host:port</c>), plus <c>Mesh:ControlPlane:Warm</c>. The first call to a host subscribes and waits (all concurrent first
/// calls share one wait) until the service is in a published snapshot, the control plane says it does not exist, or
/// <c>Mesh:ControlPlane:SubscriptionTimeout</c> passes. A host that does not exist is unsubscribed at once and remembered for
/// <see cref="NegativeCacheTtl"/>, so repeated calls neither wait nor resubscribe; a service not called for
/// <c>Mesh:ControlPlane:UnusedServiceTimeout</c> is unsubscribed. At most <c>Mesh:ControlPlane:MaxOnDemandServices</c> hosts
/// are known at once (subscribed, being looked up, or remembered as absent).
/// </summary>
/// <remarks>
/// Where it differs from gRPC: gRPC keeps watching a resource it was told does not exist (the watcher stays until the
/// channel goes); here a missing host is dropped from the subscription (an app calling random host names must not grow
/// what the control plane tracks for it) and looked up again after the negative TTL. gRPC learns that a resource does not
/// exist only from its 15 s initial-fetch timer; here a state-of-the-world LDS response that answers the request adding
/// a name and lacks it says so at once (see <see cref="XdsClient"/>), as does a delta response listing the name in
/// <c>removed_resources</c>; the timer is kept for servers that never answer.
/// </remarks>
internal sealed partial class OnDemandSubscriptions : IDisposable
{
    /// <summary>How long a host the control plane does not know is remembered as absent before a call looks it up again.</summary>
    public static readonly TimeSpan NegativeCacheTtl = TimeSpan.FromSeconds(5);

    private readonly Lock _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly MeshHostNames _names;
    private readonly ILogger _logger;
    private readonly TimeSpan _timeout;
    private readonly long _unusedTicks;
    private readonly long _negativeTicks;
    private readonly int _max;
    private readonly ITimer? _sweep;
    private readonly HashSet<string> _warmHosts = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<Entry> _absentToComplete = [];
    private Action? _changed;
    private int _subscribeCount;

    public OnDemandSubscriptions(IOptions<ServiceMeshOptions> options, MeshHostNames names, TimeProvider time, ILogger logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(names);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(logger);
        var controlPlane = options.Value.ControlPlane;
        Enabled = string.Equals(controlPlane.Subscriptions, ControlPlaneSubscriptions.OnDemand, StringComparison.OrdinalIgnoreCase);
        _time = time;
        _names = names;
        _logger = logger;
        _timeout = controlPlane.SubscriptionTimeout;
        _unusedTicks = (long)(controlPlane.UnusedServiceTimeout.TotalSeconds * time.TimestampFrequency);
        _negativeTicks = (long)(NegativeCacheTtl.TotalSeconds * time.TimestampFrequency);
        _max = controlPlane.MaxOnDemandServices;
        if (!Enabled)
        {
            return;
        }

        var now = time.GetTimestamp();
        foreach (var host in controlPlane.Warm)
        {
            if (TryListenerName(host, out var name, out _))
            {
                _entries.TryAdd(name, new Entry(name, now, warm: true));
                _warmHosts.Add(XdsResourceDecoder.SplitHostPort(name).Host);
            }
        }

        // A quarter of the unused timeout between sweeps (at most a minute): a service goes at most 25 % late.
        var period = TimeSpan.FromTicks(Math.Clamp(controlPlane.UnusedServiceTimeout.Ticks / 4, TimeSpan.TicksPerSecond / 4, TimeSpan.TicksPerMinute));
        _sweep = time.CreateTimer(static state => ((OnDemandSubscriptions)state!).Sweep(), this, period, period);
    }

    /// <summary>Gets whether the client runs in <c>OnDemand</c> mode.</summary>
    public bool Enabled { get; }

    /// <summary>Gets the number of hosts known (subscribed, pending or remembered as absent), for tests and diagnostics.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Gets how many times a host was added to the subscription (for tests and diagnostics).</summary>
    public int SubscribeCount => Volatile.Read(ref _subscribeCount);

    /// <summary>The <see cref="XdsClient"/>'s wake-up: the set of names to subscribe changed.</summary>
    public void OnChanged(Action changed) => _changed = changed;

    /// <summary>The listener name to subscribe for a host (<c>host</c> or <c>host:port</c>), lower case; false with a reason when it is none.</summary>
    public static bool TryListenerName(string? value, out string name, out string reason)
    {
        name = string.Empty;
        reason = string.Empty;
        if (string.IsNullOrWhiteSpace(value))
        {
            reason = "must be a service host such as orders, orders.shop or payments.example.com:8443";
            return false;
        }

        var host = value.Trim();
        if (host.Contains('/', StringComparison.Ordinal))
        {
            reason = "must be a service host (optionally with :port), not a URI";
            return false;
        }

        var port = string.Empty;
        var colon = host.LastIndexOf(':');
        if (colon > 0)
        {
            port = host[(colon + 1)..];
            host = host[..colon];
            if (!int.TryParse(port, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
            {
                reason = $"has port '{port}', which must be a number from 1 to 65535";
                return false;
            }
        }

        if (Uri.CheckHostName(host) != UriHostNameType.Dns)
        {
            reason = "must be a DNS host name (optionally with :port), not an address or a URI";
            return false;
        }

        host = host.ToLowerInvariant();
        name = port.Length == 0 ? host : host + ":" + port;
        return true;
    }

    /// <summary>
    /// Gets whether a request to <paramref name="uri"/>, which the current snapshot does not know, should wait for an
    /// on-demand subscription: its host looks like a Kubernetes service name (<see cref="MeshHostNames.LooksLikeServiceName"/>)
    /// or is one of the warm hosts. Other hosts (external APIs) never wait: they go out as they always did.
    /// </summary>
    public bool Accepts(Uri uri)
    {
        if (!Enabled)
        {
            return false;
        }

        var host = uri.IdnHost;
        return uri.HostNameType == UriHostNameType.Dns && (_names.LooksLikeServiceName(host) || _warmHosts.Contains(host));
    }

    /// <summary>
    /// Subscribes to the service of <paramref name="uri"/> if it is not yet, and waits until it is in a published snapshot,
    /// is known not to exist, or the subscription timeout passed. Throws a <see cref="ServiceMeshException"/> naming
    /// <c>Mesh:ControlPlane:MaxOnDemandServices</c> when that many hosts are already known.
    /// </summary>
    public Task WaitAsync(Uri uri, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(uri);
        return WaitAsync(uri.IdnHost, uri.IsDefaultPort ? 0 : uri.Port, cancellationToken);
    }

    /// <summary>As <see cref="WaitAsync(Uri, CancellationToken)"/> for a host and port (0: the service's only port).</summary>
    public Task WaitAsync(string host, int port, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrEmpty(host);
        var name = ListenerNameOf(host, port);
        var now = _time.GetTimestamp();
        Entry entry;
        var added = false;
        lock (_gate)
        {
            if (_entries.TryGetValue(name, out var known))
            {
                if (known.State != EntryState.Absent || known.Warm || now - known.Since < _negativeTicks)
                {
                    known.Touch(now, _time.TimestampFrequency);
                    return known.Ready.Task.IsCompleted ? Task.CompletedTask : known.Ready.Task.WaitAsync(cancellationToken);
                }

                _entries.Remove(name);
            }

            if (_entries.Count >= _max)
            {
                RemoveExpiredAbsent(now);
            }

            if (_entries.Count >= _max)
            {
                Log.LimitReached(_logger, name, _max);
                return Task.FromException(new ServiceMeshException(
                    host,
                    $"Mesh service '{host}' was not subscribed: {_max} service hosts are already subscribed on demand (Mesh:ControlPlane:MaxOnDemandServices). "
                    + "Raise that limit, list the hosts the app calls in Mesh:ControlPlane:Warm, or use Mesh:ControlPlane:Subscriptions=Wildcard.",
                    new IOException("The request was not sent.")));
            }

            entry = new Entry(name, now, warm: false);
            _entries.Add(name, entry);
            added = true;
        }

        if (added)
        {
            Interlocked.Increment(ref _subscribeCount);
            Log.Subscribing(_logger, name);
            entry.Timer = _time.CreateTimer(static state => ((Entry)state!).Owner!.OnTimeout((Entry)state), entry.WithOwner(this), _timeout, Timeout.InfiniteTimeSpan);
            _changed?.Invoke();
        }

        return entry.Ready.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Gets the LDS names to subscribe: every known host except those found absent (warm hosts stay subscribed).</summary>
    public SortedSet<string> ListenerNames()
    {
        lock (_gate)
        {
            return new SortedSet<string>(_entries.Values.Where(e => e.State != EntryState.Absent || e.Warm).Select(e => e.Name), StringComparer.Ordinal);
        }
    }

    /// <summary>Gets whether a call waits for <paramref name="listenerName"/> (subscribed, no answer yet).</summary>
    public bool IsPending(string listenerName)
    {
        lock (_gate)
        {
            return _entries.TryGetValue(listenerName, out var entry) && entry.State == EntryState.Pending;
        }
    }

    /// <summary>The usage record of a listener subscribed on demand, for the services of a snapshot.</summary>
    public ServiceUsage? UsageOf(string listenerName)
    {
        lock (_gate)
        {
            return _entries.GetValueOrDefault(listenerName);
        }
    }

    /// <summary>
    /// An LDS response arrived: pending hosts it lists exist (they complete when a snapshot has them); pending hosts it
    /// lacks do not, when <paramref name="authoritative"/> says the response answers a request that named them.
    /// </summary>
    public void OnListeners(IReadOnlySet<string> present, Func<string, bool> authoritative)
    {
        var removed = false;
        List<Entry>? absent = null;
        var now = _time.GetTimestamp();
        lock (_gate)
        {
            foreach (var entry in _entries.Values)
            {
                if (present.Contains(entry.Name))
                {
                    if (entry.State != EntryState.Exists)
                    {
                        entry.State = EntryState.Exists;
                        entry.Since = now;
                    }
                }
                else if (entry.State == EntryState.Pending && authoritative(entry.Name))
                {
                    entry.State = EntryState.Absent;
                    entry.Since = now;
                    removed |= !entry.Warm;
                    (absent ??= []).Add(entry);
                }
            }
        }

        foreach (var entry in absent ?? [])
        {
            Log.Absent(_logger, entry.Name);
        }

        if (absent is not null)
        {
            lock (_gate)
            {
                _absentToComplete.AddRange(absent);
            }
        }

        if (removed)
        {
            _changed?.Invoke();
        }
    }

    /// <summary>
    /// Lets the calls waiting for hosts found absent go on: called once the response that said so was applied (and its
    /// snapshot published), so that they see a synced snapshot.
    /// </summary>
    public void CompleteAbsent()
    {
        List<Entry> absent;
        lock (_gate)
        {
            if (_absentToComplete.Count == 0)
            {
                return;
            }

            absent = [.. _absentToComplete];
            _absentToComplete.Clear();
        }

        foreach (var entry in absent)
        {
            entry.Complete();
        }
    }

    /// <summary>A snapshot was published: hosts waiting for a service it now has complete.</summary>
    public void OnPublished(MeshSnapshot snapshot)
    {
        List<Entry>? ready = null;
        lock (_gate)
        {
            foreach (var entry in _entries.Values)
            {
                if (!entry.Ready.Task.IsCompleted && entry.State == EntryState.Exists)
                {
                    (ready ??= []).Add(entry);
                }
            }
        }

        if (ready is null)
        {
            return;
        }

        var built = snapshot.Services.Select(s => s.ListenerName).ToHashSet(StringComparer.Ordinal);
        foreach (var entry in ready)
        {
            if (built.Contains(entry.Name))
            {
                entry.Complete();
            }
        }
    }

    /// <summary>Removes hosts not called for the unused timeout and absent hosts past the negative TTL (warm hosts stay).</summary>
    internal void Sweep()
    {
        var now = _time.GetTimestamp();
        var changed = false;
        List<string>? unused = null;
        lock (_gate)
        {
            foreach (var entry in _entries.Values.ToList())
            {
                if (entry.Warm)
                {
                    continue;
                }

                if (entry.State == EntryState.Absent ? now - entry.Since >= _negativeTicks : now - entry.LastUsed >= _unusedTicks)
                {
                    _entries.Remove(entry.Name);
                    changed |= entry.State != EntryState.Absent;
                    if (entry.State != EntryState.Absent)
                    {
                        (unused ??= []).Add(entry.Name);
                    }

                    entry.Complete();
                }
            }
        }

        foreach (var name in unused ?? [])
        {
            Log.Unsubscribed(_logger, name);
        }

        if (changed)
        {
            _changed?.Invoke();
        }
    }

    public void Dispose()
    {
        _sweep?.Dispose();
        lock (_gate)
        {
            foreach (var entry in _entries.Values)
            {
                entry.Complete();
            }
        }
    }

    private static string ListenerNameOf(string host, int port)
    {
        if (host.AsSpan().ContainsAnyInRange('A', 'Z'))
        {
            host = host.ToLowerInvariant();
        }

        return port <= 0 ? host : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{host}:{port}");
    }

    private void RemoveExpiredAbsent(long now)
    {
        foreach (var entry in _entries.Values.ToList())
        {
            if (entry.State == EntryState.Absent && !entry.Warm && now - entry.Since >= _negativeTicks)
            {
                _entries.Remove(entry.Name);
            }
        }
    }

    private void OnTimeout(Entry entry)
    {
        var removed = false;
        lock (_gate)
        {
            if (entry.State == EntryState.Pending && _entries.TryGetValue(entry.Name, out var current) && ReferenceEquals(current, entry))
            {
                // No answer at all (a server that never says "does not exist", or none reachable): absent for the negative TTL.
                entry.State = EntryState.Absent;
                entry.Since = _time.GetTimestamp();
                removed = !entry.Warm;
            }
        }

        if (!entry.Ready.Task.IsCompleted)
        {
            Log.TimedOut(_logger, entry.Name, _timeout);
        }

        entry.Complete();
        if (removed)
        {
            _changed?.Invoke();
        }
    }

    private enum EntryState
    {
        Pending,
        Exists,
        Absent,
    }

    private sealed class Entry : ServiceUsage
    {
        public Entry(string name, long now, bool warm)
        {
            Name = name;
            Warm = warm;
            Since = now;
            Reset(now);
        }

        public string Name { get; }

        public bool Warm { get; }

        public EntryState State { get; set; }

        /// <summary>Gets or sets when <see cref="State"/> last changed.</summary>
        public long Since { get; set; }

        public TaskCompletionSource Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public ITimer? Timer { get; set; }

        public OnDemandSubscriptions? Owner { get; private set; }

        public Entry WithOwner(OnDemandSubscriptions owner)
        {
            Owner = owner;
            return this;
        }

        public void Complete()
        {
            Ready.TrySetResult();
            Timer?.Dispose();
        }
    }
}
