using System.Net;
using System.Net.Sockets;

namespace Mesh.Client.Discovery;

/// <summary>
/// One instance of a mesh service. The instance object outlives snapshots (the snapshot builder
/// reuses it for the same cluster and address) so that in-flight counts and ejections survive
/// config pushes.
/// </summary>
internal sealed class MeshEndpoint
{
    private int _activeRequests;
    private int _consecutive5xx;
    private int _consecutiveGateway;
    private int _ejected;
    private long _ejectedAt;
    private int _ejectionMultiplier;

    // Built on first use (the first connection to this endpoint, a log line): a snapshot holds every endpoint of every
    // service, and most are never called. A race builds two equal values; either one serves.
    private string? _authority;
    private EndPoint? _endPoint;

    public MeshEndpoint(string address, int port, int weight = 1, bool isHealthy = true, string? locality = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(address);
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        Address = address;
        Port = port;
        Weight = Math.Max(1, weight);
        IsHealthy = isHealthy;
        Locality = locality ?? string.Empty;
    }

    public string Address { get; }

    public int Port { get; }

    /// <summary>Gets <c>address:port</c>, bracketed for IPv6; the key of this endpoint's connection pool.</summary>
    public string Authority => _authority ?? CreateAuthority();

    /// <summary>Gets the address to connect to: an <see cref="IPEndPoint"/> for an IP address, else a <see cref="DnsEndPoint"/>.</summary>
    public EndPoint EndPoint => _endPoint ?? CreateEndPoint();

    /// <summary>Gets the endpoint's IP address, or null when its address is a DNS name.</summary>
    public IPAddress? IPAddress => (EndPoint as IPEndPoint)?.Address;

    public int Weight { get; }

    /// <summary>Gets whether the control plane reports the endpoint usable (EDS UNKNOWN or HEALTHY).</summary>
    public bool IsHealthy { get; }

    public string Locality { get; }

    /// <summary>Gets who the endpoint is for telemetry (istiod's endpoint metadata), or null when EDS said nothing.</summary>
    public EndpointWorkload? Workload { get; init; }

    /// <summary>Gets the EDS priority of the endpoint's locality (0 is tried first; higher ones take traffic as it fails over).</summary>
    public int Priority { get; init; }

    /// <summary>Gets the EDS <c>load_balancing_weight</c> of the endpoint's locality (at least 1); see <c>LocalityWeightedLoadBalancer</c>.</summary>
    public int LocalityWeight
    {
        get => _localityWeight;
        init => _localityWeight = Math.Max(1, value);
    }

    private readonly int _localityWeight = 1;

    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    /// <summary>Gets the current streak of 5xx answers (or local-origin failures).</summary>
    public int Consecutive5xx => Volatile.Read(ref _consecutive5xx);

    /// <summary>Gets Envoy's ejection-time multiplier: grows by one per ejection, drops by one per healthy sweep.</summary>
    public int EjectionMultiplier => Volatile.Read(ref _ejectionMultiplier);

    /// <summary>Gets when the current ejection started (a <see cref="TimeProvider"/> timestamp).</summary>
    public long EjectedAt => Volatile.Read(ref _ejectedAt);

    /// <summary>
    /// Gets whether passive health checking has taken this endpoint out of rotation. An ejection ends only at the
    /// cluster's outlier sweep (<see cref="OutlierDetector"/>), as in Envoy; <paramref name="now"/> is not needed.
    /// </summary>
    public bool IsEjected(long now) => Volatile.Read(ref _ejected) != 0;

    /// <summary>Gets whether the endpoint can take a request at <paramref name="now"/>.</summary>
    public bool IsAvailable(long now) => IsHealthy && Volatile.Read(ref _ejected) == 0;

    public void OnRequestStarted() => Interlocked.Increment(ref _activeRequests);

    public void OnRequestCompleted() => Interlocked.Decrement(ref _activeRequests);

    /// <summary>A non-5xx answer: both failure streaks start over (Envoy's consecutive counters).</summary>
    internal void RecordSuccess()
    {
        if (Volatile.Read(ref _consecutive5xx) != 0)
        {
            Volatile.Write(ref _consecutive5xx, 0);
        }

        if (Volatile.Read(ref _consecutiveGateway) != 0)
        {
            Volatile.Write(ref _consecutiveGateway, 0);
        }
    }

    /// <summary>Counts a 5xx; a gateway error (502–504) extends that streak too, any other 5xx ends it.</summary>
    /// <returns>The new 5xx and gateway streaks.</returns>
    internal (int FiveXx, int Gateway) RecordError(bool gatewayError)
    {
        var gateway = gatewayError ? Interlocked.Increment(ref _consecutiveGateway) : 0;
        if (!gatewayError)
        {
            Volatile.Write(ref _consecutiveGateway, 0);
        }

        return (Interlocked.Increment(ref _consecutive5xx), gateway);
    }

    internal void ResetStreaks()
    {
        Volatile.Write(ref _consecutive5xx, 0);
        Volatile.Write(ref _consecutiveGateway, 0);
    }

    /// <summary>Takes the endpoint out of rotation; false when it already was (another thread won).</summary>
    internal bool TryEject(long now, int maxMultiplier)
    {
        if (Interlocked.CompareExchange(ref _ejected, 1, 0) != 0)
        {
            return false;
        }

        Volatile.Write(ref _ejectedAt, now);

        // As Envoy: the multiplier grows until base × multiplier passes the maximum ejection time, no further.
        if (Volatile.Read(ref _ejectionMultiplier) < maxMultiplier)
        {
            Interlocked.Increment(ref _ejectionMultiplier);
        }

        return true;
    }

    internal void Uneject() => Volatile.Write(ref _ejected, 0);

    /// <summary>
    /// Takes over the outlier state (failure streaks, ejection, multiplier) of the instance this one replaces when a push
    /// changes the server's weight, priority or locality: scaling a locality must not re-admit its ejected endpoints.
    /// The in-flight count stays with the old instance, whose requests end there.
    /// </summary>
    internal void CarryOutlierStateFrom(MeshEndpoint previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        Volatile.Write(ref _consecutive5xx, previous.Consecutive5xx);
        Volatile.Write(ref _consecutiveGateway, Volatile.Read(ref previous._consecutiveGateway));
        Volatile.Write(ref _ejectionMultiplier, previous.EjectionMultiplier);
        Volatile.Write(ref _ejectedAt, previous.EjectedAt);
        Volatile.Write(ref _ejected, Volatile.Read(ref previous._ejected));
    }

    /// <summary>Lowers the multiplier of a healthy endpoint by <paramref name="intervals"/> sweeps, not below 0.</summary>
    internal void DecayMultiplier(int intervals)
    {
        var value = Volatile.Read(ref _ejectionMultiplier);
        if (value != 0)
        {
            Volatile.Write(ref _ejectionMultiplier, Math.Max(0, value - intervals));
        }
    }

    public override string ToString() => Authority;

    private string CreateAuthority()
    {
        var authority = Address.Contains(':', StringComparison.Ordinal) && IPAddress.TryParse(Address, out var ip) && ip.AddressFamily == AddressFamily.InterNetworkV6
            ? $"[{Address}]:{Port}"
            : $"{Address}:{Port}";
        return Interlocked.CompareExchange(ref _authority, authority, null) ?? authority;
    }

    private EndPoint CreateEndPoint()
    {
        EndPoint endPoint = IPAddress.TryParse(Address, out var ip) ? new IPEndPoint(ip, Port) : new DnsEndPoint(Address, Port);
        return Interlocked.CompareExchange(ref _endPoint, endPoint, null) ?? endPoint;
    }
}
