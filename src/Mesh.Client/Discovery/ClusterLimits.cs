namespace Mesh.Client.Discovery;

/// <summary>
/// A cluster's circuit-breaking thresholds (CDS <c>circuit_breakers.thresholds[0]</c>, DEFAULT priority): the most
/// concurrent requests and retries, and the retry budget.
/// </summary>
internal sealed record ClusterLimits
{
    /// <summary>No thresholds from the control plane: no request or retry limit, as Istio's defaults (2^32-1).</summary>
    public static readonly ClusterLimits Default = new();

    /// <summary>
    /// Gets the most requests in flight to the cluster: <c>max_requests</c>, or fewer when <c>max_connections</c> plus
    /// <c>max_pending_requests</c> is smaller (a request beyond the connections is pending). More are rejected at once.
    /// </summary>
    public int MaxRequests { get; init; } = int.MaxValue;

    /// <summary>Gets which limit <see cref="MaxRequests"/> is, for the overflow error.</summary>
    public string MaxRequestsName { get; init; } = "max_requests (DestinationRule connectionPool.http.http2MaxRequests)";

    /// <summary>Gets the most retries in flight (<c>max_retries</c>); Envoy ignores it when a retry budget is set.</summary>
    public int MaxRetries { get; init; } = int.MaxValue;

    /// <summary>
    /// Gets the retry budget, when <see cref="HasRetryBudget"/>: retries in flight may be at most this share (0–100) of
    /// the requests in flight (Envoy's default 20 % when the budget leaves it out).
    /// </summary>
    public double RetryBudgetPercent { get; init; } = 20;

    /// <summary>Gets the retries in flight the budget always allows (<c>min_retry_concurrency</c>).</summary>
    public int MinRetryConcurrency { get; init; } = 3;

    /// <summary>Gets whether the control plane set <c>retry_budget</c>: then, as in Envoy, <c>max_retries</c> is ignored.</summary>
    public bool HasRetryBudget { get; init; }

    /// <summary>Gets the connection settings of the cluster's pools; null: the client's defaults.</summary>
    public PoolSettings? Pool { get; init; }

    /// <summary>Gets whether each connection serves one request (<c>max_requests_per_connection</c> 1: no keep-alive).</summary>
    public bool OneRequestPerConnection { get; init; }
}

/// <summary>
/// What a cluster sets of its connections: CDS <c>connect_timeout</c>, <c>max_connections</c> (applied per endpoint,
/// as each endpoint has its own pool), and the HTTP protocol options' <c>idle_timeout</c> and
/// <c>max_connection_duration</c>. Null members keep the client's defaults. Pools are keyed by these values, so
/// clusters that agree share connections.
/// </summary>
internal sealed record PoolSettings(TimeSpan? ConnectTimeout, TimeSpan? IdleTimeout, TimeSpan? MaxConnectionDuration, int? MaxConnections);

/// <summary>
/// The live counts behind a cluster's <see cref="ClusterLimits"/>: requests and retries in flight, and the retry budget's
/// credit. Carried from one snapshot's cluster to the next one of the same name, so a config push never resets what is
/// in flight.
/// </summary>
internal sealed class ClusterTraffic
{
    // Created at the first retry under a retry budget: a snapshot holds the traffic of every cluster, most never retry.
    private Lock? _creditLock;

    // Requests in flight, changed twice by every request from every thread. Without max_requests (Istio's default) only
    // the retry budget and the logs read the count, approximately anyway: striped per processor, so concurrent requests
    // do not contend on one cache line. Under a limit the count decides admission: one exact atomic.
    private StripedCounter _requests;
    private int _limitedRequests;
    private StripedCounter _attempts;
    private int _retries;
    private long _attemptsCredited;
    private double _credit = double.NaN;

    public int ActiveRequests => (int)Math.Min(int.MaxValue, Volatile.Read(ref _limitedRequests) + _requests.Sum());

    public int ActiveRetries => Volatile.Read(ref _retries);

    /// <summary>
    /// Counts a request in; false (counting nothing) when <paramref name="max"/> are already in flight. End it with
    /// <see cref="EndRequest(int)"/> and the same <paramref name="max"/> (a cluster's limits never change; a config push
    /// makes a new cluster, which carries this traffic).
    /// </summary>
    public bool TryStartRequest(int max)
    {
        if (max == int.MaxValue)
        {
            _requests.Add(1);
            return true;
        }

        if (Interlocked.Increment(ref _limitedRequests) <= max)
        {
            return true;
        }

        Interlocked.Decrement(ref _limitedRequests);
        return false;
    }

    /// <summary>
    /// Counts an attempt in under the cluster's <c>max_requests</c>; with a retry budget the attempt also earns the
    /// budget's share of a retry (counted here, credited when a retry is asked for, so the hot path pays one atomic).
    /// </summary>
    public bool TryStartRequest(ClusterLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        if (!TryStartRequest(limits.MaxRequests))
        {
            return false;
        }

        if (limits.HasRetryBudget)
        {
            _attempts.Add(1);
        }

        return true;
    }

    /// <summary>Counts out a request that <see cref="TryStartRequest(int)"/> counted in under <paramref name="max"/>.</summary>
    public void EndRequest(int max)
    {
        if (max == int.MaxValue)
        {
            _requests.Add(-1);
        }
        else
        {
            Interlocked.Decrement(ref _limitedRequests);
        }
    }

    /// <summary>
    /// Counts a retry in when the budget (and, without one, <c>max_retries</c>) allows it. With a budget two bounds hold:
    /// Envoy's <c>retry_budget</c> — retries in flight below max(min_retry_concurrency, budget_percent × requests in
    /// flight) — and a bound over time, as Linkerd's and Finagle's retry budgets: each attempt earns budget_percent of a
    /// retry, a retry spends a whole one, and the unspent credit is held to that same in-flight figure. So a total outage
    /// of N requests costs at most budget_percent × N retries plus the credit at its start (min_retry_concurrency when
    /// it starts quiet), whatever the concurrency or the attempts' length — which the in-flight bound alone cannot
    /// promise, as a retry's slot is free again while its request backs off.
    /// </summary>
    public bool TryStartRetry(ClusterLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        // Without a retry_budget only max_retries bounds the retries in flight (Istio sends 2^32-1 by default).
        var inFlightBound = limits.HasRetryBudget
            ? Math.Max(limits.MinRetryConcurrency, (int)(limits.RetryBudgetPercent * ActiveRequests / 100))
            : limits.MaxRetries;

        if (Interlocked.Increment(ref _retries) > inFlightBound)
        {
            Interlocked.Decrement(ref _retries);
            return false;
        }

        // A 0 % budget earns nothing, so it keeps Envoy's meaning alone: min_retry_concurrency retries in flight.
        if (limits.HasRetryBudget && limits.RetryBudgetPercent > 0 && !TrySpendCredit(limits, inFlightBound))
        {
            Interlocked.Decrement(ref _retries);
            return false;
        }

        return true;
    }

    public void EndRetry() => Interlocked.Decrement(ref _retries);

    private bool TrySpendCredit(ClusterLimits limits, int inFlightBound)
    {
        var share = limits.RetryBudgetPercent / 100;
        var capacity = Math.Max(1, inFlightBound);
        lock (Volatile.Read(ref _creditLock) ?? Interlocked.CompareExchange(ref _creditLock, new Lock(), null) ?? _creditLock)
        {
            // Credit starts at min_retry_concurrency (at least one retry) and the attempts since the last retry are
            // credited at once: they only ever add, so capping once equals capping after each.
            var attempts = _attempts.Sum();
            var credit = double.IsNaN(_credit) ? Math.Max(1, limits.MinRetryConcurrency) : _credit;
            credit = Math.Min(capacity, credit + ((attempts - _attemptsCredited) * share));
            _attemptsCredited = attempts;
            if (credit < 1)
            {
                _credit = credit;
                return false;
            }

            // The retry's own attempt will earn its share like any other: spend that too, so a retry nets one.
            _credit = credit - 1 - share;
            return true;
        }
    }
}
