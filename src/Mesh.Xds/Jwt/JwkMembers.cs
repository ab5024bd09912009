using System.Text.Json;

namespace Mesh.Xds.Jwt;

/// <summary>
/// Which JSON Web Key members are secret and which a verifier needs, for both sides: the control plane refuses and
/// strips private members before a JWKS is pushed, the client refuses a pushed one that still has any.
/// </summary>
internal static class JwkMembers
{
    /// <summary>Secret key material (RFC 7518 §6.2.2 EC <c>d</c>, §6.3.2 RSA private parts and other primes, §6.4.1 the oct secret).</summary>
    private static readonly string[] Private = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

    /// <summary>What a verifier needs (RFC 7517 §4, RFC 7518 §6.2.1, §6.3.1).</summary>
    private static readonly string[] Public = ["kty", "kid", "use", "alg", "key_ops", "n", "e", "crv", "x", "y"];

    /// <summary>The first private member of <paramref name="key"/> (a JWK object), or null when it has none.</summary>
    public static string? FirstPrivate(JsonElement key)
    {
        if (key.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        foreach (var member in Private)
        {
            if (key.TryGetProperty(member, out _))
            {
                return member;
            }
        }

        return null;
    }

    /// <summary>Whether a member named <paramref name="name"/> is one a verifier needs (and so may be pushed).</summary>
    public static bool IsPublic(string name) => Array.IndexOf(Public, name) >= 0;
}
