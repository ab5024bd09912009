namespace Mesh.Client.Authorization.Jwt;

/// <summary>The outcome of one provider for one request (Envoy's jwt_verify_lib statuses that matter here).</summary>
internal enum JwtStatus : byte
{
    /// <summary>Not looked at yet (internal to requirement evaluation).</summary>
    Pending,
    Ok,
    Missing,
    BadFormat,
    UnknownIssuer,
    KeyNotFound,
    VerificationFailed,
    Expired,
    NotYetValid,
    AudienceNotAllowed,
}

internal static class JwtStatusText
{
    // Built once: a denial tags its span with one of these, allocating nothing per request.
    private static readonly string[] TracePolicies = [.. Enum.GetValues<JwtStatus>().Select(status => $"RequestAuthentication: {status}")];

    /// <summary>The span's <c>mesh.authz.policy</c> for a request RequestAuthentication denied, e.g. <c>RequestAuthentication: Expired</c>.</summary>
    public static string TracePolicy(JwtStatus status) => TracePolicies[(int)status];

    /// <summary>Envoy's response body for each status (jwt_verify_lib status strings).</summary>
    public static string Message(JwtStatus status) => status switch
    {
        JwtStatus.Ok => "OK",
        JwtStatus.Missing => "Jwt is missing",
        JwtStatus.BadFormat => "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        JwtStatus.UnknownIssuer => "Jwt issuer is not configured",
        JwtStatus.KeyNotFound => "Jwks doesn't have key to match kid or alg from Jwt",
        JwtStatus.Expired => "Jwt is expired",
        JwtStatus.NotYetValid => "Jwt not yet valid",
        JwtStatus.AudienceNotAllowed => "Audiences in Jwt are not allowed",
        _ => "Jwt verification fails",
    };
}
