using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using Mesh.Xds.Diagnostics;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// What one caller's address may cost the Kubernetes API server in TokenReviews: at most
/// <see cref="MaxInFlightPerPeer"/> of its reviews at once, and a token bucket of <see cref="Burst"/> reviews (32 unless
/// configured) refilled at <see cref="ReviewsPerSecond"/> a second (8). The control plane's own cap
/// (<see cref="TokenReviewAuthenticator.MaxReviewsInFlight"/>) bounds the API server's load; with this, and with the last <see cref="ReservedForNewPeers"/> of those slots kept for
/// addresses that have no review in flight, one address — a compromised pod sending forged or stolen tokens — or a few
/// cannot hold every slot while other pods wait for a certificate. Many addresses can (a compromised node with a range
/// of pod addresses): that is the control plane's cap, which still bounds what reaches the API server.
/// </summary>
/// <remarks>
/// A workload asks for a review when it has no certificate the CA still accepts (its first start, a restart after its
/// certificate expired, or after the mesh's root was replaced); renewals present the certificate. A node's pods behind one
/// address (hostNetwork, or SNAT in front of an out-of-cluster control plane) restarting at once get the burst, then the
/// refill rate; the rest are told to retry (UNAVAILABLE) and back off, with no queue. The address is the caller's IP
/// (an IPv4-mapped IPv6 address is its IPv4 address); a caller without one (not over TCP) shares one bucket with every
/// other such caller. At most <see cref="MaxPeers"/> addresses are remembered: when the table is full, the addresses
/// with nothing in flight are forgotten (they start afresh, bounded still by the control plane's cap).
/// </remarks>
internal sealed class PeerReviewLimiter
{
    /// <summary>Reviews one address may have in flight at once.</summary>
    public const int MaxInFlightPerPeer = 4;

    /// <summary>Of the control plane's review slots, how many only an address with no review in flight may take.</summary>
    public const int ReservedForNewPeers = 4;

    /// <summary>Addresses remembered at most.</summary>
    public const int MaxPeers = 10_000;

    /// <summary>An address's refusals are logged at most once per this interval (the rest are counted into the next line).</summary>
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Peer> _peers = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly LogThrottle _log;

    // Ticks of the TimeProvider's timestamps per token: the bucket is kept as the timestamp at which it is full again.
    private readonly long _ticksPerToken;

    /// <summary>A limiter with ControlPlane:Kubernetes's burst and refill rate per address.</summary>
    public PeerReviewLimiter(TimeProvider time, Configuration.ControlPlaneOptions options)
        : this(time, options?.Kubernetes.TokenReviewBurstPerAddress ?? throw new ArgumentNullException(nameof(options)), options.Kubernetes.TokenReviewsPerAddressPerSecond)
    {
    }

    internal PeerReviewLimiter(TimeProvider time, int burst, int reviewsPerSecond)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(reviewsPerSecond, 1);
        _time = time;
        Burst = burst;
        ReviewsPerSecond = reviewsPerSecond;
        _ticksPerToken = Math.Max(1, time.TimestampFrequency / reviewsPerSecond);
        _log = new LogThrottle(time, LogInterval, MaxPeers);
    }

    /// <summary>Gets how many reviews one address may ask for back to back (ControlPlane:Kubernetes:TokenReviewBurstPerAddress).</summary>
    public int Burst { get; }

    /// <summary>Gets how many reviews per second one address earns back (ControlPlane:Kubernetes:TokenReviewsPerAddressPerSecond).</summary>
    public int ReviewsPerSecond { get; }

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
    /// The address a gRPC peer string names, without its port, the key of its share: <c>ipv4:10.0.0.7:51234</c> →
    /// <c>10.0.0.7</c>, <c>ipv6:[fd00::7]:443</c> → <c>fd00::7</c>, <c>ipv6:[::ffff:10.0.0.7]:1</c> → <c>10.0.0.7</c>.
    /// Anything else (no IP: a Unix socket, an in-memory test server's <c>unknown</c>) is one shared key.
    /// </summary>
    public static string AddressOf(string peer)
    {
        ArgumentNullException.ThrowIfNull(peer);
        ReadOnlySpan<char> host = default;
        if (peer.StartsWith("ipv4:", StringComparison.Ordinal) && peer.LastIndexOf(':') is var colon and > 5)
        {
            host = peer.AsSpan(5, colon - 5);
        }
        else if (peer.StartsWith("ipv6:[", StringComparison.Ordinal) && peer.IndexOf(']', StringComparison.Ordinal) is var close and > 6)
        {
            host = peer.AsSpan(6, close - 6);
        }

        if (!IPAddress.TryParse(host, out var address))
        {
            return "(no IP address)";
        }

        return (address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address).ToString();
    }

    /// <summary>
    /// Takes a review for <paramref name="address"/> (<see cref="AddressOf"/>). True when it may go ahead: then
    /// <paramref name="alreadyReviewing"/> says whether the address had a review in flight (it may not take the reserved
    /// slots), and the review must be ended with <see cref="Exit"/>. False: <paramref name="refusal"/> says which bound,
    /// and <paramref name="reason"/> names it for the metric (<see cref="ReviewRefusal"/>).
    /// </summary>
    public bool TryEnter(string address, out bool alreadyReviewing, [NotNullWhen(false)] out string? refusal, out string reason)
    {
        alreadyReviewing = false;
        refusal = null;
        reason = string.Empty;
        var now = _time.GetTimestamp();
        lock (_lock)
        {
            if (!_peers.TryGetValue(address, out var peer))
            {
                if (_peers.Count >= MaxPeers && !ForgetIdle())
                {
                    refusal = string.Create(CultureInfo.InvariantCulture, $"TokenReviews are in flight for {MaxPeers} addresses at once; retry later");
                    reason = ReviewRefusal.Addresses;
                    return false;
                }

                peer = new Peer { FullAt = now };
                _peers[address] = peer;
            }

            if (peer.InFlight >= MaxInFlightPerPeer)
            {
                refusal = string.Create(CultureInfo.InvariantCulture, $"{MaxInFlightPerPeer} TokenReviews from {address} are already in flight; retry later");
                reason = ReviewRefusal.AddressInFlight;
                return false;
            }

            // The bucket is full at FullAt; each review moves that one token's worth of time later, and the address may
            // go ahead while it is no more than the burst's worth of time away.
            var fullAt = Math.Max(peer.FullAt, now) + _ticksPerToken;
            if (fullAt - now > Burst * _ticksPerToken)
            {
                refusal = string.Create(CultureInfo.InvariantCulture, $"{address} asked for more than {Burst} TokenReviews at once or {ReviewsPerSecond} a second (ControlPlane:Kubernetes:TokenReviewBurstPerAddress, TokenReviewsPerAddressPerSecond); retry later");
                reason = ReviewRefusal.AddressRate;
                return false;
            }

            peer.FullAt = fullAt;
            alreadyReviewing = peer.InFlight > 0;
            peer.InFlight++;
            return true;
        }
    }

    /// <summary>
    /// Ends a review <see cref="TryEnter"/> let go ahead. <paramref name="refund"/>: it was never sent (the control
    /// plane's cap refused it), so the address gets its token back.
    /// </summary>
    public void Exit(string address, bool refund)
    {
        lock (_lock)
        {
            if (!_peers.TryGetValue(address, out var peer) || peer.InFlight == 0)
            {
                return;
            }

            peer.InFlight--;
            if (refund)
            {
                peer.FullAt -= _ticksPerToken;
            }
        }
    }

    /// <summary>
    /// Whether a refusal of <paramref name="address"/> is logged now: its first, then one per <see cref="LogInterval"/>;
    /// <paramref name="unlogged"/> is how many of its refusals since the last line were not (the mesh's one
    /// <see cref="LogThrottle"/> rule, the sidecar's denied tunnels use it too); <paramref name="shared"/>: the table was
    /// full, and <paramref name="unlogged"/> counts the refusals of several addresses.
    /// </summary>
    public bool TakeLog(string address, out int unlogged, out bool shared) => _log.TryTake(address, out unlogged, out shared);

    // Under the lock: forgets the addresses with nothing in flight. True when any was forgotten.
    private bool ForgetIdle()
    {
        var before = _peers.Count;
        foreach (var (address, peer) in _peers)
        {
            if (peer.InFlight == 0)
            {
                // Removing the current entry while enumerating is allowed (Dictionary, .NET Core 3.0 and later).
                _peers.Remove(address);
            }
        }

        return _peers.Count < before;
    }

    private sealed class Peer
    {
        /// <summary>The timestamp at which the address's bucket is full again.</summary>
        public long FullAt;
        public int InFlight;
    }
}

/// <summary>Why a CSR was refused before its TokenReview: the <c>reason</c> label of <c>mesh_ca_tokenreview_refusals</c>.</summary>
internal static class ReviewRefusal
{
    /// <summary>The address had <see cref="PeerReviewLimiter.MaxInFlightPerPeer"/> reviews in flight.</summary>
    public const string AddressInFlight = "address_in_flight";

    /// <summary>The address spent its burst faster than the refill.</summary>
    public const string AddressRate = "address_rate";

    /// <summary>The address had a review in flight and only the slots kept for addresses with none were free.</summary>
    public const string ReservedSlots = "reserved_slots";

    /// <summary>All of the control plane's review slots were taken.</summary>
    public const string InFlight = "in_flight";

    /// <summary>The table of addresses was full of addresses with reviews in flight.</summary>
    public const string Addresses = "addresses";
}
