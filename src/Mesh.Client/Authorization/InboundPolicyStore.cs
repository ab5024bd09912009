using System.Collections.Frozen;
using Mesh.Client.Security;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Mesh.Client.Authorization;

/// <summary>What the store knows about a local port's inbound policy.</summary>
internal enum InboundPortState
{
    /// <summary>The control plane's inbound listener for the port is current: enforce it.</summary>
    Policy,

    /// <summary>The port is not served through the mesh (this workload does not take inbound mesh traffic): pass through.</summary>
    NotMeshServed,

    /// <summary>A mesh-served port whose inbound policy has not arrived yet: fail closed.</summary>
    NotReceived,

    /// <summary>A mesh-served port whose inbound policy the control plane withdrew: fail closed.</summary>
    Removed,
}

/// <summary>
/// This workload's inbound policy: which listeners it subscribed to and the current policy of each local port, replaced
/// as a whole when the control plane pushes inbound listeners (reads are lock-free; a request sees either the old or the
/// new set, never a mix). When the workload serves mesh traffic (<see cref="ServesMeshTraffic"/>: secure mode and a
/// service name) every local port is mesh-served from the store's creation and a port without a current policy
/// fails closed. Only an explicit removal by the control plane takes a policy away: a lost connection leaves the store as
/// it was (static stability).
/// </summary>
internal sealed class InboundPolicyStore : IPeerAuthenticationModeSource, IDisposable
{
    private readonly Lock _gate = new();
    private readonly bool _meshServed;
    private volatile bool _leaving;
    private Policies _policies = Policies.Empty;
    private SortedSet<string> _names = new(StringComparer.Ordinal);
    private CancellationTokenSource _changed = new();

    /// <summary>The constructor the container uses: whether the ports are mesh-served follows from the options.</summary>
    public InboundPolicyStore(IOptions<ServiceMeshOptions> options)
        : this(ServesMeshTraffic(options.Value))
    {
    }

    /// <param name="meshServed">Whether this workload's ports serve only under a policy; decided when the store is created, so
    /// that no request is served unauthorized before some hosted service starts (Kestrel may start first, or concurrently).</param>
    internal InboundPolicyStore(bool meshServed = false)
    {
        _meshServed = meshServed;
    }

    public IReadOnlyDictionary<int, InboundPolicy> Current => Volatile.Read(ref _policies).ByPort;

    /// <summary>Gets whether this workload's ports are mesh-served (fail closed without a policy).</summary>
    public bool IsMeshServed => _meshServed;

    /// <summary>Gets the inbound listener names this workload subscribes to (a copy).</summary>
    public SortedSet<string> Names
    {
        get
        {
            lock (_gate)
            {
                return new SortedSet<string>(_names, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>
    /// Whether a workload with <paramref name="options"/> takes inbound mesh traffic, so that its ports serve only under the
    /// inbound policy the control plane sends for them: a service with a secure control plane, whether it registers or the
    /// control plane knows it otherwise (a Kubernetes Pod from its Service's EndpointSlices). Registration plays no part:
    /// a server that does not register still enforces its AuthorizationPolicy (found in review, 2026-12-05: the Kubernetes
    /// samples, which do not register, served every caller with a mesh certificate under no policy at all).
    /// </summary>
    public static bool ServesMeshTraffic(ServiceMeshOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return !string.IsNullOrEmpty(options.Service) && options.ControlPlane.IsSecure;
    }

    /// <summary>Sets the inbound listener names to subscribe to; returns false when they did not change.</summary>
    public bool SetNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var set = new SortedSet<string>(names, StringComparer.Ordinal);
        lock (_gate)
        {
            if (_names.SetEquals(set))
            {
                return false;
            }

            _names = set;
            return true;
        }
    }

    /// <summary>
    /// The workload is leaving the mesh (it deregistered on its way to stopping): the control plane then withdraws its
    /// inbound listeners at once, while callers still send to it until EDS tells them it left. From now on a withdrawal
    /// keeps the port's last policy (still enforced, never fail-open) so that the drain serves those requests.
    /// </summary>
    public void BeginLeaving() => _leaving = true;

    /// <summary>Replaces every port's policy (state-of-the-world: a port left out has no policy any more, it was removed).</summary>
    public void Replace(IEnumerable<InboundPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        var byPort = new Dictionary<int, InboundPolicy>();
        foreach (var policy in policies)
        {
            byPort[policy.Port] = policy;
        }

        lock (_gate)
        {
            var previous = _policies;
            if (_leaving)
            {
                foreach (var (port, policy) in previous.ByPort)
                {
                    byPort.TryAdd(port, policy);
                }
            }

            foreach (var (port, policy) in byPort)
            {
                if (previous.ByPort.TryGetValue(port, out var old))
                {
                    policy.KeepRateLimitState(old);
                }
            }

            var removed = previous.ByPort.Keys.Concat(previous.Removed).Where(port => !byPort.ContainsKey(port)).ToFrozenSet();
            Volatile.Write(ref _policies, new Policies(byPort.ToFrozenDictionary(), removed));
        }

        // Not disposed: a late registration on the old token must still run at once.
        Interlocked.Exchange(ref _changed, new CancellationTokenSource()).Cancel();
    }

    /// <summary>A token that fires after the next <see cref="Replace"/> (any port's policy or mode may have changed).</summary>
    public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    public void Dispose() => Volatile.Read(ref _changed).Dispose();

    /// <summary>The port's state; <paramref name="policy"/> is set when it is <see cref="InboundPortState.Policy"/>. Allocates nothing.</summary>
    public InboundPortState Lookup(int localPort, out InboundPolicy? policy)
    {
        var current = Volatile.Read(ref _policies);
        if (current.ByPort.TryGetValue(localPort, out policy))
        {
            return InboundPortState.Policy;
        }

        if (current.Removed.Contains(localPort))
        {
            return InboundPortState.Removed;
        }

        return _meshServed ? InboundPortState.NotReceived : InboundPortState.NotMeshServed;
    }

    public bool TryGet(int localPort, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out InboundPolicy? policy) =>
        Volatile.Read(ref _policies).ByPort.TryGetValue(localPort, out policy);

    /// <summary>The port's mode, or <see cref="PeerAuthenticationMode.Unset"/> when no inbound listener covers it (the caller applies the mesh default).</summary>
    public PeerAuthenticationMode GetMode(int localPort) => TryGet(localPort, out var policy) ? policy.Mode : PeerAuthenticationMode.Unset;

    /// <summary>Why this workload is not ready for inbound traffic, or null when every subscribed listener's policy is current.</summary>
    public string? PendingReason()
    {
        if (!_meshServed)
        {
            return null;
        }

        SortedSet<string> names;
        lock (_gate)
        {
            names = _names;
        }

        if (names.Count == 0)
        {
            return "the inbound policy (PeerAuthentication, AuthorizationPolicy) of this workload's ports has not arrived yet (not yet requested: waiting for the workload certificate and the server's addresses)";
        }

        var current = Volatile.Read(ref _policies);
        var missing = names.Where(name => !current.ByPort.Values.Any(policy => policy.ListenerName == name)).ToList();
        if (missing.Count == 0)
        {
            return null;
        }

        var removed = missing.Where(name => current.Removed.Contains(PortOf(name))).ToList();
        return removed.Count > 0
            ? $"the control plane removed the inbound policy (PeerAuthentication, AuthorizationPolicy) of {string.Join(", ", removed)}; those ports answer 503"
            : $"the inbound policy (PeerAuthentication, AuthorizationPolicy) of {string.Join(", ", missing)} has not arrived yet (the control plane sends it for an address:port it knows as this workload's: registered, or a Pod's EndpointSlice address, see Mesh:Registration:Address); those ports answer 503";
    }

    private static int PortOf(string listenerName)
    {
        var colon = listenerName.LastIndexOf(':');
        return colon >= 0 && int.TryParse(listenerName.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) ? port : -1;
    }

    private sealed record Policies(FrozenDictionary<int, InboundPolicy> ByPort, FrozenSet<int> Removed)
    {
        public static readonly Policies Empty = new(FrozenDictionary<int, InboundPolicy>.Empty, FrozenSet<int>.Empty);
    }
}
