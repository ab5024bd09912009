namespace Mesh.Client.Security;

/// <summary>
/// The end user of an inbound request, from a JWT that a RequestAuthentication rule validated (an <c>HttpContext.Features</c>
/// feature). Absent when the request carried no token or its port has no RequestAuthentication.
/// </summary>
public interface IMeshRequestPrincipalFeature
{
    /// <summary>Gets Istio's request principal, <c>&lt;iss&gt;/&lt;sub&gt;</c>, as AuthorizationPolicy <c>requestPrincipals</c> match it.</summary>
    string Principal { get; }

    /// <summary>Gets the token's issuer (<c>iss</c>).</summary>
    string Issuer { get; }

    /// <summary>Gets the token's subject (<c>sub</c>); empty when the token has none.</summary>
    string Subject { get; }

    /// <summary>Gets the token's audiences (<c>aud</c>).</summary>
    IReadOnlyList<string> Audiences { get; }

    /// <summary>Gets the authorized party (<c>azp</c>), or null.</summary>
    string? Presenter { get; }

    /// <summary>Gets when the token expires (<c>exp</c>), or null when it has no expiry.</summary>
    DateTimeOffset? ExpiresAt { get; }
}
