using Mesh.Client.Authorization.Jwt;
using Microsoft.AspNetCore.Http;

namespace Mesh.Client.Authorization;

/// <summary>What an authorization decision looks at; <see cref="Path"/> is already normalized (see <see cref="PathNormalizer"/>).</summary>
internal readonly ref struct AuthorizationRequest
{
    public AuthorizationRequest(string method, ReadOnlySpan<char> path, string? authority, int localPort, IHeaderDictionary? headers, string? peerSpiffeId, string? peerNamespace, JwtPrincipal? requestPrincipal = null)
    {
        RequestPrincipal = requestPrincipal;
        Method = method;
        Path = path;
        Authority = authority;
        LocalPort = localPort;
        Headers = headers;
        PeerSpiffeId = peerSpiffeId;
        PeerNamespace = peerNamespace;
    }

    public string Method { get; }

    public ReadOnlySpan<char> Path { get; }

    public string? Authority { get; }

    public int LocalPort { get; }

    public IHeaderDictionary? Headers { get; }

    /// <summary>The authenticated peer, or null for plaintext.</summary>
    public string? PeerSpiffeId { get; }

    public string? PeerNamespace { get; }

    /// <summary>The validated JWT (RequestAuthentication), or null when the request carried none.</summary>
    public JwtPrincipal? RequestPrincipal { get; }
}

internal enum AuthorizationOutcome
{
    Allowed,
    Denied,

    /// <summary>The request cannot be authorized as spelled (method not upper case, encoded slash, backslash or NUL, not origin-form): answer 400.</summary>
    BadRequest,
}

/// <summary>An authorization result; <see cref="Reason"/> names the deciding policy (no allocation: names are precompiled).</summary>
internal readonly record struct AuthorizationDecision(AuthorizationOutcome Outcome, string Reason)
{
    public const string NoAllowPolicyMatched = "no ALLOW policy matched";
    public const string NoPolicies = "no authorization policy";
    public const string NoAllowPolicies = "no ALLOW policy";
    public const string EncodedSlashReason = "encoded slash in path";
    public const string NotOriginFormReason = "path is not origin-form";
    public const string EncodedNulReason = "encoded NUL in path";
    public const string BackslashReason = "backslash in path (not a path separator for ASP.NET Core; use '/')";
    public const string FragmentReason = "'#' in the request target (a fragment is never sent to a server)";
    public const string MethodNotUpperCaseReason = "method is not upper case";
    public const string StrictRequiresMtls = "STRICT mTLS requires a client certificate";

    public bool IsAllowed => Outcome == AuthorizationOutcome.Allowed;
}
