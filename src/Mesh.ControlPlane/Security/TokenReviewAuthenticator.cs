using System.Buffers.Text;
using System.Globalization;
using System.Text.Json;
using Grpc.Core;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// A projected Kubernetes ServiceAccount token in the <c>authorization: Bearer</c> metadata, proven by the API server's
/// <c>TokenReview</c> (authentication.k8s.io/v1) with <c>spec.audiences</c> = ControlPlane:Kubernetes:TokenAudiences, as
/// istiod's CA does. The identity is the reviewed service account and nothing the CSR asks for. Stricter than Istio,
/// <c>status.audiences</c> must be present and within the configured audiences (the API asks reviewers to check it).
/// Nothing is cached: every CSR is one review, so a token the API server stops honouring (its pod deleted) buys no new
/// certificate. That is no revocation: a certificate already issued stays valid until it expires, and its holder renews it
/// with the certificate itself (<see cref="ClientCertificateAuthenticator"/>, as istiod's CA accepts), token or not.
/// What costs the API server a request is bounded: a bearer token that cannot be a projected token for the configured
/// audiences (not a JWT, no such <c>aud</c>, expired) is refused here without a review; at most
/// <see cref="MaxReviewsInFlight"/> reviews are in flight at once, so a flood of CSRs cannot be relayed to the API server;
/// and one caller's address gets a bounded share of them (<see cref="PeerReviewLimiter"/>), so that its flood leaves
/// slots for other pods. Refusals are logged at most once per address per <see cref="PeerReviewLimiter.LogInterval"/>.
/// </summary>
internal sealed partial class TokenReviewAuthenticator(IKubernetes kubernetes, ControlPlaneOptions options, TimeProvider time, PeerReviewLimiter peers, ILogger<TokenReviewAuthenticator> logger, Telemetry.ControlPlaneMetrics? metrics = null)
    : ICallerAuthenticator
{
    /// <summary>TokenReviews in flight at once; a CSR beyond them is refused at once (UNAVAILABLE: retry later), never queued.</summary>
    public const int MaxReviewsInFlight = 16;

    /// <summary>How far past its <c>exp</c> a token is still sent for review (clock skew between the pod's node and here).</summary>
    private static readonly TimeSpan ExpirySkew = TimeSpan.FromSeconds(60);

    private int _inFlight;

    /// <summary>Bigger bearer tokens are refused before they reach the API server (a projected token is about 1 KB).</summary>
    public const int MaxTokenLength = 16 * 1024;

    public const string ServiceAccountsGroup = "system:serviceaccounts";
    private const string PodNameExtra = "authentication.kubernetes.io/pod-name";

    public string Name => "kubernetes service account token";

    public async ValueTask<AuthenticationOutcome> AuthenticateAsync(ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!BearerCredential.TryRead(context, out var token, out var malformed))
        {
            // A malformed authorization header is reported once, by the bootstrap authenticator.
            return AuthenticationOutcome.NoCredential;
        }

        // A token claiming this control plane's issuer is a bootstrap token: checked by its own key only, never sent out.
        if (BootstrapTokens.ClaimsOurIssuer(token))
        {
            return AuthenticationOutcome.NoCredential;
        }

        var address = PeerReviewLimiter.AddressOf(context.Peer);
        var outcome = await ReviewAsync(token, address, context.CancellationToken).ConfigureAwait(false);
        if (outcome.Failure is not { } failure)
        {
            return outcome;
        }

        // One line per address per PeerReviewLimiter.LogInterval, counting the refusals in between: a flood of CSRs with
        // tokens that cannot pass, or over a limit, is not a flood of log lines.
        if (peers.TakeLog(address, out var unlogged, out var shared))
        {
            var since = unlogged == 0
                ? string.Empty
                : shared
                    ? string.Create(CultureInfo.InvariantCulture, $" ({unlogged} more refusals from several addresses since the last such line)")
                    : string.Create(CultureInfo.InvariantCulture, $" ({unlogged} more refusals of {address} since its last line)");
            if (outcome.Busy)
            {
                LogBusy(logger, context.Peer, failure, since);
            }
            else
            {
                LogRefused(logger, context.Peer, failure, since);
            }
        }

        return outcome;
    }

    private async ValueTask<AuthenticationOutcome> ReviewAsync(string token, string address, CancellationToken callAborted)
    {
        if (token.Length > MaxTokenLength)
        {
            return AuthenticationOutcome.Failed(string.Create(CultureInfo.InvariantCulture, $"bearer token is {token.Length} characters; the limit is {MaxTokenLength}"));
        }

        var k8s = options.Kubernetes;
        if (CheckShape(token, k8s.TokenAudiences, time.GetUtcNow()) is { } malformed)
        {
            return AuthenticationOutcome.Failed(malformed + "; no TokenReview was asked for it");
        }

        var review = new V1TokenReview
        {
            ApiVersion = "authentication.k8s.io/v1",
            Kind = "TokenReview",
            Spec = new V1TokenReviewSpec { Token = token, Audiences = [.. k8s.TokenAudiences] },
        };

        // Over a limit the CSR is refused at once, never queued (as Envoy answers an overflow): the client retries with
        // back-off. The caller's own share first; and an address with a review in flight already may not take the last
        // slots, so that one address's flood (or a few addresses') leaves room for other pods.
        if (!peers.TryEnter(address, out var alreadyReviewing, out var overShare, out var reason))
        {
            metrics?.TokenReviewRefused(reason);
            return AuthenticationOutcome.Overloaded(overShare);
        }

        var cap = alreadyReviewing ? MaxReviewsInFlight - PeerReviewLimiter.ReservedForNewPeers : MaxReviewsInFlight;
        if (Interlocked.Increment(ref _inFlight) > cap)
        {
            Interlocked.Decrement(ref _inFlight);
            peers.Exit(address, refund: true);
            metrics?.TokenReviewRefused(alreadyReviewing ? ReviewRefusal.ReservedSlots : ReviewRefusal.InFlight);
            return AuthenticationOutcome.Overloaded(alreadyReviewing
                ? string.Create(CultureInfo.InvariantCulture, $"{cap} TokenReviews are in flight to the Kubernetes API server and {address} has one of them; the last {PeerReviewLimiter.ReservedForNewPeers} are kept for addresses with none; retry later")
                : string.Create(CultureInfo.InvariantCulture, $"{MaxReviewsInFlight} TokenReviews are already in flight to the Kubernetes API server; retry later"));
        }

        V1TokenReview answer;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(callAborted);
            timeout.CancelAfter(k8s.TokenReviewTimeout);
            answer = await kubernetes.AuthenticationV1.CreateTokenReviewAsync(review, cancellationToken: timeout.Token).ConfigureAwait(false);
        }
        catch (HttpOperationException ex)
        {
            return AuthenticationOutcome.Failed(string.Create(CultureInfo.InvariantCulture,
                $"the Kubernetes TokenReview failed: the API server answered {(int?)ex.Response?.StatusCode} {ex.Response?.ReasonPhrase} ({Truncate(ex.Response?.Content)}); check that the control plane may create tokenreviews (RBAC) and retry"));
        }
        catch (OperationCanceledException) when (!callAborted.IsCancellationRequested)
        {
            return AuthenticationOutcome.Failed(string.Create(CultureInfo.InvariantCulture,
                $"the Kubernetes TokenReview got no answer within {k8s.TokenReviewTimeout.TotalSeconds:0.###} s (ControlPlane:Kubernetes:TokenReviewTimeout); retry later"));
        }
        catch (HttpRequestException ex)
        {
            return AuthenticationOutcome.Failed($"the Kubernetes API server is unreachable for TokenReview ({ex.Message}); retry later");
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
            peers.Exit(address, refund: false);
        }

        return Evaluate(answer?.Status, k8s.TokenAudiences, options.TrustDomain, options.Bootstrap, out var podName) is { } failure
            ? AuthenticationOutcome.Failed(failure)
            : Success(answer!.Status.User.Username, podName);
    }

    private AuthenticationOutcome Success(string username, string? podName)
    {
        var parts = username.Split(':');
        var identity = new WorkloadIdentity(options.TrustDomain, parts[2], parts[3]);
        LogAuthenticated(logger, identity.SpiffeId, podName ?? "(not bound to a pod)");
        return AuthenticationOutcome.Success(identity);
    }

    /// <summary>
    /// The rules a review must pass: no error, authenticated, a 4-part <c>system:serviceaccount:&lt;ns&gt;:&lt;sa&gt;</c> user of
    /// group system:serviceaccounts with DNS-label names, audiences returned and all configured, and not a reserved identity.
    /// Null when it passes, else the reason.
    /// </summary>
    internal static string? Evaluate(V1TokenReviewStatus? status, IReadOnlyCollection<string> audiences, string trustDomain, BootstrapOptions reserved, out string? podName)
    {
        podName = null;
        if (status is null)
        {
            return "the Kubernetes TokenReview came back without a status";
        }

        if (!string.IsNullOrEmpty(status.Error))
        {
            return $"the Kubernetes TokenReview reports an error: {Truncate(status.Error)}";
        }

        if (status.Authenticated != true)
        {
            return $"the API server did not authenticate the token (TokenReview status.authenticated is false: expired, revoked, its pod deleted, or not for audience {string.Join(", ", audiences)})";
        }

        var username = status.User?.Username ?? string.Empty;
        var parts = username.Split(':');
        if (parts.Length != 4 || parts[0] != "system" || parts[1] != "serviceaccount")
        {
            return $"the token belongs to '{Truncate(username)}', not to a service account (system:serviceaccount:<namespace>:<name>); only service account tokens buy workload certificates";
        }

        if (!SpiffeId.IsDnsLabel(parts[2]) || !SpiffeId.IsDnsLabel(parts[3]))
        {
            return $"the token's service account '{Truncate(username)}' is not a DNS-label namespace and name";
        }

        if (status.User!.Groups is not { } groups || !groups.Contains(ServiceAccountsGroup, StringComparer.Ordinal))
        {
            return $"the token's user {username} is not in group {ServiceAccountsGroup}";
        }

        if (status.Audiences is not { Count: > 0 } returned)
        {
            return $"the TokenReview returned no audiences; the token must be for {string.Join(" or ", audiences)} (a projected token with that audience)";
        }

        if (returned.FirstOrDefault(a => !audiences.Contains(a, StringComparer.Ordinal)) is { } foreign)
        {
            return $"the TokenReview returned audience '{Truncate(foreign)}', which is not one of ControlPlane:Kubernetes:TokenAudiences ({string.Join(", ", audiences)})";
        }

        if (reserved.IsReserved(parts[2], parts[3], out var entry))
        {
            return $"{new WorkloadIdentity(trustDomain, parts[2], parts[3]).SpiffeId} is a reserved identity ('{entry}'); the CA never certifies it for a workload";
        }

        if (status.User.Extra is { } extra && extra.TryGetValue(PodNameExtra, out var pods) && pods?.FirstOrDefault() is { } pod)
        {
            podName = $"{parts[2]}/{pod}";
        }

        return null;
    }

    /// <summary>
    /// What can be read of a bearer token without the API server: a projected ServiceAccount token is a JWS (three
    /// base64url parts) whose payload names one of <paramref name="audiences"/> in <c>aud</c> and has not expired. The
    /// signature is the API server's to check; this only spares it tokens that cannot pass. Null when it may pass.
    /// </summary>
    internal static string? CheckShape(string token, IReadOnlyCollection<string> audiences, DateTimeOffset now)
    {
        var parts = token.Split('.');
        if (parts.Length != 3 || parts.Any(p => p.Length == 0))
        {
            return "the bearer token is not a JWT (a projected ServiceAccount token has three dot-separated parts)";
        }

        JsonElement payload;
        try
        {
            payload = JsonSerializer.Deserialize<JsonElement>(Base64Url.DecodeFromChars(parts[1]));
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            return "the bearer token's payload is not base64url-encoded JSON, as a projected ServiceAccount token's is";
        }

        if (payload.ValueKind != JsonValueKind.Object)
        {
            return "the bearer token's payload is not a JSON object";
        }

        var claimed = payload.TryGetProperty("aud", out var aud)
            ? aud.ValueKind switch
            {
                JsonValueKind.String => [aud.GetString()!],
                JsonValueKind.Array => aud.EnumerateArray().Where(a => a.ValueKind == JsonValueKind.String).Select(a => a.GetString()!).ToArray(),
                _ => [],
            }
            : Array.Empty<string>();
        if (!claimed.Any(a => audiences.Contains(a, StringComparer.Ordinal)))
        {
            // The caller wrote these: at most three are echoed, each truncated, so a refusal's log line stays short.
            var named = string.Join(", ", claimed.Take(3).Select(a => $"'{Truncate(a)}'")) + (claimed.Length > 3 ? $" and {claimed.Length - 3} more" : string.Empty);
            return claimed.Length == 0
                ? $"the bearer token has no audience (aud); it must be a projected ServiceAccount token for {string.Join(" or ", audiences)}"
                : $"the bearer token is for audience {named}, not one of ControlPlane:Kubernetes:TokenAudiences ({string.Join(", ", audiences)})";
        }

        // In whole seconds, as JWT times are: no date arithmetic that a year-9999 exp could overflow.
        if (payload.TryGetProperty("exp", out var exp) && exp.ValueKind == JsonValueKind.Number && exp.TryGetInt64(out var seconds)
            && seconds < now.ToUnixTimeSeconds() - (long)ExpirySkew.TotalSeconds)
        {
            return string.Create(CultureInfo.InvariantCulture, $"the bearer token expired at {DateTimeOffset.FromUnixTimeSeconds(Math.Max(seconds, -62135596800)):u}");
        }

        return null;
    }

    private static string Truncate(string? text) => text is null ? string.Empty : text.Length <= 200 ? text : text[..200] + "…";

    // Never the token: only who called and why it was refused.
    [LoggerMessage(EventId = 1, EventName = "TokenReviewRefused", Level = LogLevel.Warning, Message = "CSR from {Peer} refused: kubernetes service account token: {Reason}{Since}")]
    private static partial void LogRefused(ILogger logger, string peer, string reason, string since);

    [LoggerMessage(EventId = 2, EventName = "TokenReviewAuthenticated", Level = LogLevel.Debug, Message = "TokenReview authenticated {SpiffeId} (pod {Pod})")]
    private static partial void LogAuthenticated(ILogger logger, string spiffeId, string pod);

    [LoggerMessage(EventId = 3, EventName = "TokenReviewBusy", Level = LogLevel.Warning, Message = "CSR from {Peer} refused for now: kubernetes service account token: {Reason}{Since}")]
    private static partial void LogBusy(ILogger logger, string peer, string reason, string since);
}
