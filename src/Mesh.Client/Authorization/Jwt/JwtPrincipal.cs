using Mesh.Client.Security;

namespace Mesh.Client.Authorization.Jwt;

/// <summary>
/// A token validated by one provider: what RBAC matches (the payload claims), what the app sees
/// (<see cref="IMeshRequestPrincipalFeature"/>) and the headers the provider writes; cached per token, so immutable.
/// </summary>
internal sealed class JwtPrincipal : IMeshRequestPrincipalFeature
{
    public JwtPrincipal(JwtClaim payload, string payloadSegment, DateTimeOffset? expiresAt, KeyValuePair<string, string>[] claimHeaders)
    {
        Payload = payload;
        PayloadSegment = payloadSegment;
        ExpiresAt = expiresAt;
        ClaimHeaders = claimHeaders;
        Issuer = payload.Find(["iss"])?.Text ?? string.Empty;
        Subject = payload.Find(["sub"]) is { Kind: JwtClaimKind.String, Text: { } sub } ? sub : string.Empty;
        Principal = Issuer + "/" + Subject;
        Audiences = payload.Find(["aud"])?.Strings() ?? [];
        Presenter = payload.Find(["azp"]) is { Kind: JwtClaimKind.String, Text: { } azp } ? azp : null;
    }

    /// <summary>Gets the payload object (envoy.filters.http.jwt_authn metadata <c>payload</c>).</summary>
    public JwtClaim Payload { get; }

    /// <summary>Gets the token's payload segment: base64url, unpadded (what Envoy's forward_payload_header sends).</summary>
    public string PayloadSegment { get; }

    /// <summary>Gets the provider's claim_to_headers, resolved for this token (header name, value).</summary>
    public KeyValuePair<string, string>[] ClaimHeaders { get; }

    public string Principal { get; }

    public string Issuer { get; }

    public string Subject { get; }

    public IReadOnlyList<string> Audiences { get; }

    public string? Presenter { get; }

    public DateTimeOffset? ExpiresAt { get; }
}
