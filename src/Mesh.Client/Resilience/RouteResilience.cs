using System.Globalization;
using System.Net;
using Google.Protobuf.WellKnownTypes;
using Mesh.Xds.Envoy.Config.Route.V3;

namespace Mesh.Client.Resilience;

/// <summary>Envoy's <c>retry_on</c> conditions, parsed once when the snapshot is built.</summary>
[Flags]
internal enum RetryOn
{
    None = 0,

    /// <summary><c>5xx</c>: any 5xx answer, a reset or failed connection, a per-try timeout.</summary>
    ServerError = 1 << 0,

    /// <summary><c>gateway-error</c>: 502, 503, 504, a reset or failed connection, a per-try timeout.</summary>
    GatewayError = 1 << 1,

    /// <summary><c>connect-failure</c>: the connection could not be made.</summary>
    ConnectFailure = 1 << 2,

    /// <summary><c>refused-stream</c>: the server refused the HTTP/2 stream (REFUSED_STREAM).</summary>
    RefusedStream = 1 << 3,

    /// <summary><c>reset</c>: no answer at all (reset, disconnect, per-try timeout).</summary>
    Reset = 1 << 4,

    /// <summary><c>reset-before-request</c>: a reset before the request was sent; here, a failed connection.</summary>
    ResetBeforeRequest = 1 << 5,

    /// <summary><c>retriable-4xx</c>: 409.</summary>
    Retriable4xx = 1 << 6,

    /// <summary><c>retriable-status-codes</c>: the HTTP codes listed in <c>retriable_status_codes</c> (RetryPolicy field 7).</summary>
    RetriableStatusCodes = 1 << 7,

    /// <summary><c>envoy-ratelimited</c>: the answer carries <c>x-envoy-ratelimited</c>.</summary>
    EnvoyRateLimited = 1 << 8,

    /// <summary><c>http3-post-connect-failure</c>: never fires, this client does not send HTTP/3.</summary>
    Http3PostConnectFailure = 1 << 9,

    GrpcCancelled = 1 << 10,
    GrpcDeadlineExceeded = 1 << 11,
    GrpcInternal = 1 << 12,
    GrpcResourceExhausted = 1 << 13,
    GrpcUnavailable = 1 << 14,

    /// <summary>The conditions a reset, a failed connection or a per-try timeout fulfils.</summary>
    AnyReset = ServerError | GatewayError | Reset,

    AnyGrpc = GrpcCancelled | GrpcDeadlineExceeded | GrpcInternal | GrpcResourceExhausted | GrpcUnavailable,
}

/// <summary>
/// An RDS <c>RetryPolicy</c> (the route's, else its virtual host's) as the resilience handler applies it. Made once
/// per snapshot, so deciding about an attempt reads fields and parses nothing.
/// </summary>
internal sealed class RouteRetryPolicy
{
    /// <summary>Envoy's default base back-off (runtime <c>upstream.base_retry_backoff_ms</c>).</summary>
    public static readonly TimeSpan DefaultBaseInterval = TimeSpan.FromMilliseconds(25);

    /// <summary>The most retries this client applies: the same bound as <c>Mesh:Resilience:MaxRetryAttempts</c>.</summary>
    public const int MaxRetries = 10;

    public RouteRetryPolicy(RetryOn retryOn, int numRetries, TimeSpan? perTryTimeout, TimeSpan baseInterval, TimeSpan maxInterval, int[]? retriableStatusCodes = null)
    {
        RetryOn = retryOn;
        RetriableStatusCodes = retriableStatusCodes ?? [];
        NumRetries = numRetries;
        PerTryTimeout = perTryTimeout;
        BaseInterval = baseInterval;
        MaxInterval = maxInterval;
    }

    public RetryOn RetryOn { get; }

    /// <summary>Gets the retries after the first attempt (Envoy's default when unset: 1).</summary>
    public int NumRetries { get; }

    /// <summary>Gets the time budget of one attempt; null: only the route's total timeout bounds it.</summary>
    public TimeSpan? PerTryTimeout { get; }

    public TimeSpan BaseInterval { get; }

    /// <summary>Gets the HTTP codes <c>retriable-status-codes</c> retries (istiod sends 503 in its default policy).</summary>
    public int[] RetriableStatusCodes { get; }

    public TimeSpan MaxInterval { get; }

    /// <summary>
    /// Whether an attempt's outcome meets a <c>retry_on</c> condition, as Envoy's router decides it. Whether the
    /// request may be sent again at all (idempotency, replayable body) is decided elsewhere.
    /// </summary>
    public bool ShouldRetry(HttpResponseMessage? response, Exception? error, bool attemptTimedOut)
    {
        if (attemptTimedOut)
        {
            // Envoy handles a per-try timeout as a local reset of the attempt.
            return (RetryOn & RetryOn.AnyReset) != 0;
        }

        if (response is null)
        {
            if (error is not HttpRequestException || error is ServiceMeshException)
            {
                return false;
            }

            return (RetryOn & RetryOn.AnyReset) != 0
                || ((RetryOn & (RetryOn.ConnectFailure | RetryOn.ResetBeforeRequest)) != 0 && Http.MeshHttpHandler.IsConnectionFailure(error))
                || ((RetryOn & RetryOn.RefusedStream) != 0 && IsRefusedStream(error));
        }

        var status = (int)response.StatusCode;
        if ((status >= 500 && (RetryOn & RetryOn.ServerError) != 0)
            || (status is 502 or 503 or 504 && (RetryOn & RetryOn.GatewayError) != 0)
            || (status == 409 && (RetryOn & RetryOn.Retriable4xx) != 0)
            || ((RetryOn & RetryOn.RetriableStatusCodes) != 0 && Array.IndexOf(RetriableStatusCodes, status) >= 0)
            || ((RetryOn & RetryOn.EnvoyRateLimited) != 0 && response.Headers.NonValidated.Contains("x-envoy-ratelimited")))
        {
            return true;
        }

        // gRPC conditions look only at a grpc-status in the response headers (a trailers-only answer), as Envoy does:
        // one in the trailers comes after the body has been handed to the caller.
        return (RetryOn & RetryOn.AnyGrpc) != 0
            && status == 200
            && response.Headers.NonValidated.TryGetValues("grpc-status", out var values)
            && values.Count == 1
            && int.TryParse(values.ToString(), NumberStyles.None, CultureInfo.InvariantCulture, out var code)
            && (RetryOn & GrpcCondition(code)) != 0;
    }

    /// <summary>Whether <paramref name="a"/> and <paramref name="b"/> retry the same way (both null too).</summary>
    public static bool SameAs(RouteRetryPolicy? a, RouteRetryPolicy? b) =>
        ReferenceEquals(a, b)
        || (a is not null && b is not null
            && a.RetryOn == b.RetryOn
            && a.NumRetries == b.NumRetries
            && a.PerTryTimeout == b.PerTryTimeout
            && a.BaseInterval == b.BaseInterval
            && a.MaxInterval == b.MaxInterval
            && a.RetriableStatusCodes.AsSpan().SequenceEqual(b.RetriableStatusCodes));

    /// <summary>Envoy's back-off before retry <paramref name="retry"/> (1-based): uniformly random in [0, min((2^n − 1) × base, max)).</summary>
    public TimeSpan Backoff(int retry) => Mesh.Xds.Retry.Backoff.Retry(BaseInterval, MaxInterval, retry, Random.Shared.NextDouble());

    /// <summary>Decodes and validates an RDS retry policy; null (and errors naming <paramref name="path"/>) when this client cannot apply it.</summary>
    public static RouteRetryPolicy? Decode(RetryPolicy policy, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(errors);
        var start = errors.Count;
        var retryOn = ParseRetryOn(policy.RetryOn, path, errors);
        var retries = policy.NumRetries ?? 1;
        if (retries > MaxRetries)
        {
            errors.Add($"{path}.num_retries {retries} is more than this client applies (at most {MaxRetries}, as Mesh:Resilience:MaxRetryAttempts)");
        }

        var perTry = RouteResilience.DecodeDuration(policy.PerTryTimeout, $"{path}.per_try_timeout", errors);
        var baseInterval = DefaultBaseInterval;
        TimeSpan? maxInterval = null;
        if (policy.RetryBackOff is { } backOff)
        {
            if (backOff.BaseInterval is null)
            {
                errors.Add($"{path}.retry_back_off.base_interval is required");
            }
            else
            {
                var before = errors.Count;
                if (RouteResilience.DecodeDuration(backOff.BaseInterval, $"{path}.retry_back_off.base_interval", errors) is { } configured)
                {
                    // As Envoy: under 1 ms counts as 1 ms; 0 (no back-off at all) is not allowed.
                    baseInterval = configured < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : configured;
                }
                else if (errors.Count == before)
                {
                    errors.Add($"{path}.retry_back_off.base_interval must be greater than 0");
                }
            }

            maxInterval = RouteResilience.DecodeDuration(backOff.MaxInterval, $"{path}.retry_back_off.max_interval", errors);
            if (maxInterval is { } max && max < baseInterval)
            {
                errors.Add($"{path}.retry_back_off.max_interval {max.TotalMilliseconds:0.###} ms is less than base_interval {baseInterval.TotalMilliseconds:0.###} ms");
            }
        }

        var codes = new int[policy.RetriableStatusCodes.Count];
        for (var i = 0; i < codes.Length; i++)
        {
            var code = policy.RetriableStatusCodes[i];
            if (code is < 100 or > 599)
            {
                errors.Add($"{path}.retriable_status_codes[{i}] {code} is not an HTTP status code (100-599)");
            }

            codes[i] = (int)code;
        }

        return errors.Count == start
            ? new RouteRetryPolicy(retryOn, (int)retries, perTry, baseInterval, maxInterval ?? baseInterval * 10, codes)
            : null;
    }

    private static RetryOn ParseRetryOn(string value, string path, List<string> errors)
    {
        var result = RetryOn.None;
        foreach (var range in value.AsSpan().Split(','))
        {
            var token = value.AsSpan(range).Trim();
            if (token.IsEmpty)
            {
                continue;
            }

            var flag = token switch
            {
                "5xx" => RetryOn.ServerError,
                "gateway-error" => RetryOn.GatewayError,
                "connect-failure" => RetryOn.ConnectFailure,
                "refused-stream" => RetryOn.RefusedStream,
                "reset" => RetryOn.Reset,
                "reset-before-request" => RetryOn.ResetBeforeRequest,
                "retriable-4xx" => RetryOn.Retriable4xx,
                "retriable-status-codes" => RetryOn.RetriableStatusCodes,
                "envoy-ratelimited" => RetryOn.EnvoyRateLimited,
                "http3-post-connect-failure" => RetryOn.Http3PostConnectFailure,
                "cancelled" => RetryOn.GrpcCancelled,
                "deadline-exceeded" => RetryOn.GrpcDeadlineExceeded,
                "internal" => RetryOn.GrpcInternal,
                "resource-exhausted" => RetryOn.GrpcResourceExhausted,
                "unavailable" => RetryOn.GrpcUnavailable,
                _ => RetryOn.None,
            };
            if (flag == RetryOn.None)
            {
                errors.Add(token.SequenceEqual("retriable-headers")
                    ? $"{path}.retry_on 'retriable-headers' is not supported (this client does not read retriable_headers)"
                    : $"{path}.retry_on '{token}' is not a retry condition this client knows");
            }

            result |= flag;
        }

        return result;
    }

    private static RetryOn GrpcCondition(int code) => code switch
    {
        1 => RetryOn.GrpcCancelled,
        4 => RetryOn.GrpcDeadlineExceeded,
        8 => RetryOn.GrpcResourceExhausted,
        13 => RetryOn.GrpcInternal,
        14 => RetryOn.GrpcUnavailable,
        _ => RetryOn.None,
    };

    private static bool IsRefusedStream(Exception error)
    {
        for (var e = error; e is not null; e = e.InnerException)
        {
            if (e is HttpProtocolException { ErrorCode: 0x7 })
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// What an RDS route sets of its calls' resilience: the total timeout (<c>timeout</c>, else
/// <c>max_stream_duration.max_stream_duration</c> as istiod sends proxyless clients) and the retry policy (the route's,
/// else the virtual host's). What it leaves unset, <c>Mesh:Resilience</c> decides.
/// </summary>
internal sealed class RouteResilience
{
    /// <summary>Just under the longest a deadline can be armed with (<see cref="CancellationTokenSource.CancelAfter(TimeSpan)"/>: 2^32 − 2 ms).</summary>
    private static readonly TimeSpan MaxDuration = TimeSpan.FromDays(49);

    public RouteResilience(TimeSpan? timeout, RouteRetryPolicy? retry)
    {
        Timeout = timeout;
        Retry = retry;
    }

    /// <summary>Gets the time budget of a call including retries; null: <c>Mesh:Resilience:TotalTimeout</c>.</summary>
    public TimeSpan? Timeout { get; }

    /// <summary>Gets the retry policy; null: <c>Mesh:Resilience</c> retries (and its attempt timeout).</summary>
    public RouteRetryPolicy? Retry { get; }

    /// <summary>Whether <paramref name="a"/> and <paramref name="b"/> give calls the same time budget and retries (both null too).</summary>
    public static bool SameAs(RouteResilience? a, RouteResilience? b) =>
        ReferenceEquals(a, b)
        || (a is not null && b is not null && a.Timeout == b.Timeout && RouteRetryPolicy.SameAs(a.Retry, b.Retry));

    /// <summary>
    /// Decodes what <paramref name="action"/> (and its virtual host's <paramref name="hostPolicy"/>) sets; null when it
    /// sets nothing or something this client cannot apply (then with errors naming the field).
    /// </summary>
    public static RouteResilience? Decode(RouteAction action, RetryPolicy? hostPolicy, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(action);
        ArgumentNullException.ThrowIfNull(errors);

        // 0 means "disabled" in Envoy; istiod sends 0 whenever the VirtualService sets no timeout, so 0 leaves the
        // app's TotalTimeout in charge rather than letting calls run unbounded.
        var timeout = DecodeDuration(action.Timeout, $"{path}.timeout", errors)
            ?? DecodeDuration(action.MaxStreamDuration?.MaxStreamDuration_, $"{path}.max_stream_duration.max_stream_duration", errors);
        var retry = action.RetryPolicy is { } own
            ? RouteRetryPolicy.Decode(own, $"{path}.retry_policy", errors)
            : hostPolicy is null ? null : RouteRetryPolicy.Decode(hostPolicy, string.Empty, []);
        return timeout is null && retry is null ? null : new RouteResilience(timeout, retry);
    }

    /// <summary>A positive duration, null for unset or 0, or an error naming <paramref name="path"/>.</summary>
    internal static TimeSpan? DecodeDuration(Duration? duration, string path, List<string> errors)
    {
        if (duration is null)
        {
            return null;
        }

        if (duration.Seconds < 0 || duration.Nanos < 0)
        {
            errors.Add($"{path} must not be negative");
            return null;
        }

        if (duration.Nanos >= Duration.NanosecondsPerSecond || duration.Seconds > (long)MaxDuration.TotalSeconds)
        {
            errors.Add($"{path} must be a valid duration of at most {MaxDuration.TotalDays:0} days");
            return null;
        }

        var value = duration.ToTimeSpan();
        if (value > MaxDuration)
        {
            errors.Add($"{path} must be a valid duration of at most {MaxDuration.TotalDays:0} days");
            return null;
        }

        return value == TimeSpan.Zero ? null : value;
    }
}
