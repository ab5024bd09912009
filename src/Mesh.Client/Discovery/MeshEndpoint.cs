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
    private int _consecutiveFailures;
    private int _ejectionCount;
    private long _ejectedUntil;

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
        IPAddress = IPAddress.TryParse(address, out var ip) ? ip : null;
        Authority = IPAddress is { AddressFamily: AddressFamily.InterNetworkV6 }
            ? $"[{address}]:{port}"
            : $"{address}:{port}";
        EndPoint = IPAddress is not null ? new IPEndPoint(IPAddress, port) : new DnsEndPoint(address, port);
    }

    public string Address { get; }

    public int Port { get; }

    /// <summary>Gets <c>address:port</c>, bracketed for IPv6; the key of this endpoint's connection pool.</summary>
    public string Authority { get; }

    public IPAddress? IPAddress { get; }

    public EndPoint EndPoint { get; }

    public int Weight { get; }

    /// <summary>Gets whether the control plane reports the endpoint usable (EDS UNKNOWN or HEALTHY).</summary>
    public bool IsHealthy { get; }

    public string Locality { get; }

    /// <summary>Gets the EDS priority of the endpoint's locality (0 is tried first; higher ones take traffic as it fails over).</summary>
    public int Priority { get; init; }

    public int ActiveRequests => Volatile.Read(ref _activeRequests);

    public int ConsecutiveFailures => Volatile.Read(ref _consecutiveFailures);

    /// <summary>Gets whether passive health checking has taken this endpoint out of rotation at <paramref name="now"/>.</summary>
    public bool IsEjected(long now) => now < Volatile.Read(ref _ejectedUntil);

    /// <summary>Gets whether the endpoint can take a request at <paramref name="now"/>.</summary>
    public bool IsAvailable(long now) => IsHealthy && !IsEjected(now);

    public void OnRequestStarted() => Interlocked.Increment(ref _activeRequests);

    public void OnRequestCompleted() => Interlocked.Decrement(ref _activeRequests);

    /// <summary>Records a success: the failure streak and the ejection backoff start over.</summary>
    public void RecordSuccess()
    {
        if (Volatile.Read(ref _consecutiveFailures) != 0)
        {
            Volatile.Write(ref _consecutiveFailures, 0);
        }
    }

    /// <summary>
    /// Records a failure and ejects the endpoint once <see cref="OutlierDetectionSettings.ConsecutiveFailures"/>
    /// failures in a row happened (or at once for a connection failure). Ejection time grows with each ejection
    /// (base × count, capped), as in Envoy's and gRPC A50's outlier detection.
    /// </summary>
    /// <returns><see langword="true"/> when this call ejected the endpoint.</returns>
    public bool RecordFailure(long now, bool connectionFailure, OutlierDetectionSettings settings, long timestampFrequency)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var failures = Interlocked.Increment(ref _consecutiveFailures);
        if (!connectionFailure && failures < settings.ConsecutiveFailures)
        {
            return false;
        }

        if (IsEjected(now))
        {
            return false;
        }

        var count = Interlocked.Increment(ref _ejectionCount);
        var duration = TimeSpan.FromTicks(Math.Min(settings.BaseEjectionTime.Ticks * count, settings.MaxEjectionTime.Ticks));
        Volatile.Write(ref _ejectedUntil, now + (long)(duration.TotalSeconds * timestampFrequency));
        Volatile.Write(ref _consecutiveFailures, 0);
        return true;
    }

    /// <summary>Lets a recovered endpoint's next ejection start from the base time again.</summary>
    public void ResetEjectionBackoff() => Volatile.Write(ref _ejectionCount, 0);

    public override string ToString() => Authority;
}
