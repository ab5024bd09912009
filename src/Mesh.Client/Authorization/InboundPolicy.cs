using System.Buffers;
using Mesh.Client.Authorization.Jwt;
using Mesh.Client.Security;
using Microsoft.AspNetCore.Http;

namespace Mesh.Client.Authorization;

/// <summary>
/// The decoded inbound listener of one local port: its PeerAuthentication mode and the DENY/ALLOW RBAC engines.
/// Istio order: any DENY policy matching denies; no ALLOW engine allows; else some ALLOW policy must match.
/// </summary>
internal sealed class InboundPolicy(string listenerName, int port, PeerAuthenticationMode mode, RbacEngine? deny, RbacEngine? allow, JwtAuthenticator? jwt = null)
{
    private const int StackPathLimit = 512;

    public string ListenerName { get; } = listenerName;

    public int Port { get; } = port;

    public PeerAuthenticationMode Mode { get; } = mode;

    public RbacEngine? Deny { get; } = deny;

    public RbacEngine? Allow { get; } = allow;

    /// <summary>Gets the RequestAuthentication (jwt_authn) of the port, run before RBAC; null when none applies.</summary>
    public JwtAuthenticator? Jwt { get; } = jwt;

    public bool HasRules => Deny is not null || Allow is not null;

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

    /// <summary>Normalizes <paramref name="target"/> (the raw request target) and decides; allocates nothing for targets up to 512 chars.</summary>
    public AuthorizationDecision Authorize(string method, ReadOnlySpan<char> target, string? authority, IHeaderDictionary? headers, string? peerSpiffeId, string? peerNamespace, JwtPrincipal? requestPrincipal = null)
    {
        if (!HasRules)
        {
            return new AuthorizationDecision(AuthorizationOutcome.Allowed, AuthorizationDecision.NoPolicies);
        }

        char[]? rented = null;
        var buffer = target.Length <= StackPathLimit ? stackalloc char[StackPathLimit] : (rented = ArrayPool<char>.Shared.Rent(target.Length));
        try
        {
            switch (PathNormalizer.Normalize(target, buffer, out var length))
            {
                case PathNormalizationResult.EncodedSlash:
                    return new AuthorizationDecision(AuthorizationOutcome.BadPath, AuthorizationDecision.EncodedSlashReason);
                case PathNormalizationResult.NotOriginForm:
                    return new AuthorizationDecision(AuthorizationOutcome.BadPath, AuthorizationDecision.NotOriginFormReason);
            }

            return Evaluate(new AuthorizationRequest(method, buffer[..length], authority, Port, headers, peerSpiffeId, peerNamespace, requestPrincipal));
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
