using System.Buffers;
using Mesh.Client.Authorization.Jwt;
using Mesh.Client.Authorization.RateLimit;
using Mesh.Client.Security;
using Microsoft.AspNetCore.Http;

namespace Mesh.Client.Authorization;

/// <summary>
/// The decoded inbound listener of one local port: its PeerAuthentication mode and the DENY/ALLOW RBAC engines.
/// Istio order: any DENY policy matching denies; no ALLOW engine allows; else some ALLOW policy must match.
/// </summary>
internal sealed class InboundPolicy(string listenerName, int port, PeerAuthenticationMode mode, RbacEngine? deny, RbacEngine? allow, PathNormalizationOptions paths, JwtAuthenticator? jwt = null, LocalRateLimiter? rateLimit = null)
{
    private const int StackPathLimit = 512;

    public string ListenerName { get; } = listenerName;

    public int Port { get; } = port;

    public PeerAuthenticationMode Mode { get; } = mode;

    public RbacEngine? Deny { get; } = deny;

    public RbacEngine? Allow { get; } = allow;

    /// <summary>How the path is normalized before the RBAC engines see it (from the listener's HttpConnectionManager).</summary>
    public PathNormalizationOptions Paths { get; } = paths;

    /// <summary>Gets the RequestAuthentication (jwt_authn) of the port, run before RBAC; null when none applies.</summary>
    public JwtAuthenticator? Jwt { get; } = jwt;

    /// <summary>Gets the local rate limit of the port (local_ratelimit), enforced after authorization; null when none applies.</summary>
    public LocalRateLimiter? RateLimit { get; private set; } = rateLimit;

    public bool HasRules => Deny is not null || Allow is not null;

    /// <summary>
    /// Keeps the buckets of <paramref name="previous"/> when its rate limit config is the same: a push that changes
    /// something else (an endpoint, another policy) must not hand every caller a full bucket again.
    /// </summary>
    public void KeepRateLimitState(InboundPolicy previous)
    {
        ArgumentNullException.ThrowIfNull(previous);
        if (RateLimit is { } current && previous.RateLimit is { } kept && current.Config.Equals(kept.Config))
        {
            RateLimit = kept;
        }
    }

    /// <summary>Decides for an already normalized path.</summary>
    public AuthorizationDecision Evaluate(in AuthorizationRequest request)
    {
        if (Deny?.FirstMatch(request) is { } denied)
        {
            return new AuthorizationDecision(AuthorizationOutcome.Denied, denied);
        }

        if (Allow is null)
        {
            return new AuthorizationDecision(AuthorizationOutcome.Allowed, Deny is null ? AuthorizationDecision.NoPolicies : AuthorizationDecision.NoAllowPolicies);
        }

        return Allow.FirstMatch(request) is { } allowed
            ? new AuthorizationDecision(AuthorizationOutcome.Allowed, allowed)
            : new AuthorizationDecision(AuthorizationOutcome.Denied, AuthorizationDecision.NoAllowPolicyMatched);
    }

    /// <summary>
    /// The decision when the port's mode refuses a caller without a verified mesh identity (STRICT and no peer SPIFFE ID),
    /// else null. Asked per request and per connection, because the mode the connection was accepted under may have
    /// tightened since (a silent connection opened while PERMISSIVE, or a tunnel that outlived the change).
    /// </summary>
    public AuthorizationDecision? RefusePlaintext(string? peerSpiffeId) =>
        Mode == PeerAuthenticationMode.Strict && peerSpiffeId is null
            ? new AuthorizationDecision(AuthorizationOutcome.Denied, AuthorizationDecision.StrictRequiresMtls)
            : null;

    /// <summary>
    /// Decides an opaque TCP connection to this port from <paramref name="peerSpiffeId"/> (null over plaintext): STRICT
    /// first (<see cref="RefusePlaintext"/>), then DENY before ALLOW as for requests, with Istio's TCP reading of HTTP-only
    /// rules (<see cref="RbacEngine.FirstConnectionMatch"/>).
    /// </summary>
    public AuthorizationDecision AuthorizeConnection(string? peerSpiffeId, string? peerNamespace)
    {
        if (RefusePlaintext(peerSpiffeId) is { } strict)
        {
            return strict;
        }

        var request = new AuthorizationRequest(string.Empty, ReadOnlySpan<char>.Empty, authority: null, Port, headers: null, peerSpiffeId, peerNamespace);
        if (Deny?.FirstConnectionMatch(request) is { } denied)
        {
            return new AuthorizationDecision(AuthorizationOutcome.Denied, denied);
        }

        if (Allow is null)
        {
            return new AuthorizationDecision(AuthorizationOutcome.Allowed, Deny is null ? AuthorizationDecision.NoPolicies : AuthorizationDecision.NoAllowPolicies);
        }

        return Allow.FirstConnectionMatch(request) is { } allowed
            ? new AuthorizationDecision(AuthorizationOutcome.Allowed, allowed)
            : new AuthorizationDecision(AuthorizationOutcome.Denied, AuthorizationDecision.NoAllowPolicyMatched);
    }

    // A plain loop: MemoryExtensions.ContainsAnyInRange allocated 96 B per call in RbacAllocationTests.
    private static bool HasLowerCase(string method)
    {
        foreach (var c in method)
        {
            if (char.IsAsciiLetterLower(c))
            {
                return true;
            }
        }

        return false;
    }

    // %2F or %5C (either case) before the query: the escapes Kestrel keeps in Request.Path and YARP would re-escape as %252F.
    private static bool HasEscapedSlash(ReadOnlySpan<char> target)
    {
        for (var i = 0; i + 2 < target.Length && target[i] != '?'; i++)
        {
            if (target[i] == '%'
                && ((target[i + 1] == '2' && (target[i + 2] | 0x20) == 'f') || (target[i + 1] == '5' && (target[i + 2] | 0x20) == 'c')))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Normalizes <paramref name="target"/> (the raw request target) and decides; allocates nothing for targets up to 512 chars.</summary>
    public AuthorizationDecision Authorize(string method, ReadOnlySpan<char> target, string? authority, IHeaderDictionary? headers, string? peerSpiffeId, string? peerNamespace, JwtPrincipal? requestPrincipal = null) =>
        Decide(method, target, authority, headers, peerSpiffeId, peerNamespace, requestPrincipal, forwarding: false, out _);

    /// <summary>
    /// As <see cref="Authorize(string, ReadOnlySpan{char}, string?, IHeaderDictionary?, string?, string?, JwtPrincipal?)"/>;
    /// for an allowed target whose path holds <c>%2F</c> or <c>%5C</c> that the listener lets through (KEEP_UNCHANGED,
    /// DECODE_AND_MERGE_SLASHES), also the target a proxy must forward: the path this decision was made on, with the raw
    /// query (Envoy forwards its normalized path). Null otherwise: Kestrel's path is the one decided on.
    /// </summary>
    public AuthorizationDecision Authorize(string method, ReadOnlySpan<char> target, string? authority, IHeaderDictionary? headers, string? peerSpiffeId, string? peerNamespace, JwtPrincipal? requestPrincipal, out string? forwardTarget) =>
        Decide(method, target, authority, headers, peerSpiffeId, peerNamespace, requestPrincipal, forwarding: true, out forwardTarget);

    private AuthorizationDecision Decide(string method, ReadOnlySpan<char> target, string? authority, IHeaderDictionary? headers, string? peerSpiffeId, string? peerNamespace, JwtPrincipal? requestPrincipal, bool forwarding, out string? forwardTarget)
    {
        forwardTarget = null;
        // Methods are case-sensitive tokens (RFC 9110) and Istio's `methods` match exactly, but the ASP.NET Core router
        // matches them case-insensitively: `delete` would pass a DENY on DELETE and run the DELETE endpoint. Refuse
        // every non-canonical spelling with 400 as Envoy does, so no spelling of a method ever reaches the app.
        if (HasLowerCase(method))
        {
            return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.MethodNotUpperCaseReason);
        }

        // Also on a port without rules: Envoy's path normalization (and REJECT_REQUEST's 400) runs whatever RBAC says, and
        // a rule-less port let %2F through, which YARP then forwarded re-escaped as %252F. Evaluate allows without rules.
        char[]? rented = null;
        var buffer = target.Length <= StackPathLimit ? stackalloc char[StackPathLimit] : (rented = ArrayPool<char>.Shared.Rent(target.Length));
        try
        {
            switch (PathNormalizer.Normalize(target, buffer, Paths, out var length))
            {
                case PathNormalizationResult.EncodedSlash:
                    return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.EncodedSlashReason);
                case PathNormalizationResult.NotOriginForm:
                    return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.NotOriginFormReason);
                case PathNormalizationResult.EncodedNul:
                    return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.EncodedNulReason);
                case PathNormalizationResult.Backslash:
                    return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.BackslashReason);
                case PathNormalizationResult.Fragment:
                    return new AuthorizationDecision(AuthorizationOutcome.BadRequest, AuthorizationDecision.FragmentReason);
            }

            var decision = Evaluate(new AuthorizationRequest(method, buffer[..length], authority, Port, headers, peerSpiffeId, peerNamespace, requestPrincipal));
            if (forwarding && decision.IsAllowed && Paths.EscapedSlashes != EscapedSlashAction.Reject && HasEscapedSlash(target))
            {
                var query = target.IndexOf('?');
                forwardTarget = query < 0 ? new string(buffer[..length]) : string.Concat(buffer[..length], target[query..]);
            }

            return decision;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }
}
