using System.Text;

namespace Mesh.Client.Telemetry;

/// <summary>
/// The Envoy response flags (<c>%RESPONSE_FLAGS%</c>, Envoy source/common/stream_info/utility.cc) the mesh sets,
/// reported in the <c>response_flags</c> label comma-joined in this order, <c>-</c> when none.
/// </summary>
[Flags]
internal enum ResponseFlags
{
    None = 0,

    /// <summary>UH: no healthy endpoint in the cluster.</summary>
    NoHealthyUpstream = 1 << 0,

    /// <summary>UF: the connection to the endpoint failed (refused, reset in set-up, TLS/secure naming failure).</summary>
    UpstreamConnectionFailure = 1 << 1,

    /// <summary>UO: a circuit breaker refused the request (max_requests, retry budget, the service's open circuit).</summary>
    UpstreamOverflow = 1 << 2,

    /// <summary>NR: no route matched.</summary>
    NoRouteFound = 1 << 3,

    /// <summary>URX: retries were exhausted and the last attempt still failed.</summary>
    UpstreamRetryLimitExceeded = 1 << 4,

    /// <summary>NC: the service's cluster is not known (the mesh has not synced with the control plane yet).</summary>
    NoClusterFound = 1 << 5,

    /// <summary>DC: the caller gave up (cancelled, or the inbound connection was closed).</summary>
    DownstreamConnectionTermination = 1 << 6,

    /// <summary>UT: the route's (or Mesh:Resilience's) timeout fired.</summary>
    UpstreamRequestTimeout = 1 << 7,

    /// <summary>UC: the endpoint closed the connection before a full response.</summary>
    UpstreamConnectionTermination = 1 << 8,

    /// <summary>DI: a fault-injection delay was applied.</summary>
    DelayInjected = 1 << 9,

    /// <summary>FI: a fault-injection abort answered.</summary>
    FaultInjected = 1 << 10,

    /// <summary>RL: the local rate limit refused the request.</summary>
    RateLimited = 1 << 11,

    /// <summary>UPE: the endpoint broke the HTTP protocol.</summary>
    UpstreamProtocolError = 1 << 12,

    /// <summary>DF: the endpoint's name did not resolve.</summary>
    DnsResolutionFailed = 1 << 13,

    /// <summary>UR: the endpoint reset the stream (an HTTP/2 RST_STREAM, whatever its code, as Envoy's codec reports a remote reset).</summary>
    UpstreamRemoteReset = 1 << 14,
}

internal static class ResponseFlagsLabel
{
    /// <summary>The label value: Envoy's short names comma-joined, <c>-</c> when none. Called only when a label set is built.</summary>
    public static string ToLabel(this ResponseFlags flags)
    {
        if (flags == ResponseFlags.None)
        {
            return "-";
        }

        var text = new StringBuilder();
        foreach (var (flag, name) in Ordered)
        {
            if ((flags & flag) != 0)
            {
                text.Append(text.Length == 0 ? string.Empty : ",").Append(name);
            }
        }

        return text.ToString();
    }

    // Envoy's short names; the label lists them in this order.
    private static readonly (ResponseFlags Flag, string Name)[] Ordered =
    [
        (ResponseFlags.NoHealthyUpstream, "UH"),
        (ResponseFlags.UpstreamConnectionFailure, "UF"),
        (ResponseFlags.UpstreamOverflow, "UO"),
        (ResponseFlags.NoRouteFound, "NR"),
        (ResponseFlags.UpstreamRetryLimitExceeded, "URX"),
        (ResponseFlags.NoClusterFound, "NC"),
        (ResponseFlags.DownstreamConnectionTermination, "DC"),
        (ResponseFlags.UpstreamRequestTimeout, "UT"),
        (ResponseFlags.UpstreamRemoteReset, "UR"),
        (ResponseFlags.UpstreamConnectionTermination, "UC"),
        (ResponseFlags.DelayInjected, "DI"),
        (ResponseFlags.FaultInjected, "FI"),
        (ResponseFlags.RateLimited, "RL"),
        (ResponseFlags.UpstreamProtocolError, "UPE"),
        (ResponseFlags.DnsResolutionFailed, "DF"),
    ];
}
