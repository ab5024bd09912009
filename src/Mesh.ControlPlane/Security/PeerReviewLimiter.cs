using System.Globalization;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// What one caller's address may cost the Kubernetes API server in TokenReviews: at most
/// <see cref="MaxInFlightPerPeer"/> of its reviews at once, and a token bucket of <see cref="Burst"/> reviews refilled at
/// <see cref="ReviewsPerSecond"/> a second. The control plane's own cap (<see cref="TokenReviewAuthenticator.MaxReviewsInFlight"/>)
/// bounds the API server's load; this keeps one peer — a compromised pod sending forged or stolen tokens — from holding
/// every slot of that cap while other pods wait for their first certificate. A workload spends a review only for its
/// first certificate (renewals present the certificate it holds), so a pod never comes near either bound; a node's
/// pods behind one address (hostNetwork, or SNAT in front of an out-of-cluster control plane) restarting at once are
/// served at the refill rate, each told to retry (UNAVAILABLE) until their turn.
/// </summary>
/// <remarks>
/// The peer is the address without the port (each connection has its own port). At most <see cref="MaxPeers"/> addresses
/// are remembered: beyond, those idle with a full bucket are forgotten first, and a new address finding none to forget is
/// refused, as it would be by the full cap (only a flood from that many addresses fills the table).
/// </remarks>
internal sealed class PeerReviewLimiter(TimeProvider time)
{
    /// <summary>Reviews one address may have in flight at once.</summary>
    public const int MaxInFlightPerPeer = 4;

    /// <summary>Reviews one address may ask for back to back.</summary>
    public const int Burst = 32;

    /// <summary>Reviews per second one address earns back.</summary>
    public const double ReviewsPerSecond = 8;

    /// <summary>Addresses remembered at most.</summary>
    public const int MaxPeers = 10_000;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Peer> _peers = new(StringComparer.Ordinal);

    /// <summary>Gets the number of addresses remembered (for tests).</summary>
    internal int Count
    {
        get
        {
            lock (_lock)
            {
                return _peers.Count;
            }
        }
    }

    /// <summary>
    /// Takes a review for <paramref name="peer"/> (gRPC's <c>ServerCallContext.Peer</c>): null when it may go ahead (then
    /// <see cref="Exit"/> it once the review ended), else why it may not, naming the bound.
    /// </summary>
    public string? TryEnter(string peer)
    {
        var address = AddressOf(peer);
        var now = time.GetTimestamp();
        lock (_lock)
        {
            if (!_peers.TryGetValue(address, out var state))
            {
                if (_peers.Count >= MaxPeers && !ForgetIdle(now))
                {
                    return string.Create(CultureInfo.InvariantCulture, $"TokenReviews are being asked for from {MaxPeers} addresses at once; retry later");
                }

                state = new Peer { Tokens = Burst, RefilledAt = now };
                _peers[address] = state;
            }

            Refill(state, now);
            if (state.InFlight >= MaxInFlightPerPeer)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{MaxInFlightPerPeer} TokenReviews from {address} are already in flight; retry later");
            }

            if (state.Tokens < 1)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{address} asked for more than {Burst} TokenReviews at once or {ReviewsPerSecond:0.##} a second; retry later");
            }

            state.Tokens--;
            state.InFlight++;
            return null;
        }
    }

    /// <summary>Ends a review <see cref="TryEnter"/> let go ahead.</summary>
    public void Exit(string peer)
    {
        var address = AddressOf(peer);
        lock (_lock)
        {
            if (_peers.TryGetValue(address, out var state) && state.InFlight > 0)
            {
                state.InFlight--;
            }
        }
    }

    /// <summary>The address of gRPC's peer string without its port: <c>ipv4:10.0.0.7:51234</c> → <c>ipv4:10.0.0.7</c>, <c>ipv6:[::1]:5000</c> → <c>ipv6:[::1]</c>.</summary>
    internal static string AddressOf(string peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        if (peer.StartsWith("ipv6:[", StringComparison.Ordinal) && peer.IndexOf(']', StringComparison.Ordinal) is var close and > 0)
        {
            return peer[..(close + 1)];
        }

        return peer.StartsWith("ipv4:", StringComparison.Ordinal) && peer.LastIndexOf(':') is var colon and > 4
            ? peer[..colon]
            : peer;
    }

    private void Refill(Peer state, long now)
    {
        var earned = time.GetElapsedTime(state.RefilledAt, now).TotalSeconds * ReviewsPerSecond;
        state.Tokens = Math.Min(Burst, state.Tokens + earned);
        state.RefilledAt = now;
    }

    // Under the lock: forgets the addresses with nothing in flight whose bucket has refilled (they would start afresh
    // anyway). True when any was forgotten.
    private bool ForgetIdle(long now)
    {
        var before = _peers.Count;
        foreach (var (address, state) in _peers)
        {
            Refill(state, now);
            if (state.InFlight == 0 && state.Tokens >= Burst)
            {
                _peers.Remove(address);
            }
        }

        return _peers.Count < before;
    }

    private sealed class Peer
    {
        public double Tokens;
        public long RefilledAt;
        public int InFlight;
    }
}
