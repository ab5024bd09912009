using System.Buffers.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Mesh.Client.Authorization.Jwt;

/// <summary>Where a provider found its token: the text holding it and the token's range, plus the header it came from.</summary>
internal readonly record struct ExtractedToken(string Source, int Start, int Length, string? HeaderName, bool PrefixMismatch)
{
    public static ExtractedToken None => default;

    public bool Found => Source is not null;

    public ReadOnlySpan<char> Token => Source.AsSpan(Start, Length);
}

/// <summary>
/// One compiled jwt_authn provider: token locations, issuer, audiences and the JWKS keys (parsed once per snapshot), plus a
/// cache of the tokens it validated. Signatures are checked by <see cref="JsonWebTokenHandler"/> with an explicit
/// asymmetric-only algorithm allow-list, so <c>alg: none</c> and HS256-signed-with-the-public-key are refused.
/// </summary>
internal sealed class JwtProvider
{
    /// <summary>Asymmetric algorithms only: a symmetric secret would be pushed to every workload, letting any of them mint tokens.</summary>
    public static readonly string[] AllowedAlgorithms =
    [
        SecurityAlgorithms.RsaSha256, SecurityAlgorithms.RsaSha384, SecurityAlgorithms.RsaSha512,
        SecurityAlgorithms.RsaSsaPssSha256, SecurityAlgorithms.RsaSsaPssSha384, SecurityAlgorithms.RsaSsaPssSha512,
        SecurityAlgorithms.EcdsaSha256, SecurityAlgorithms.EcdsaSha384, SecurityAlgorithms.EcdsaSha512,
    ];

    private const string DefaultHeader = "authorization";
    private const string DefaultPrefix = "Bearer ";
    private const string DefaultParam = "access_token";

    private static readonly JsonWebTokenHandler Handler = new() { MapInboundClaims = false };

    private readonly JsonWebKey[] _keys;
    private readonly TokenValidationParameters _parameters;
    private readonly HashSet<string> _spaceDelimited;

    public JwtProvider(
        string name,
        string issuer,
        string[] audiences,
        JsonWebKey[] keys,
        (string Name, string Prefix)[] headers,
        string[] parameters,
        bool forward,
        string? payloadHeader,
        bool padPayloadHeader,
        (string Header, string Claim)[] claimHeaders,
        TimeSpan clockSkew,
        IEnumerable<string> spaceDelimitedClaims,
        int cacheSize)
    {
        Name = name;
        Issuer = issuer;
        Audiences = audiences;
        _keys = keys;
        Headers = headers;
        Params = parameters;
        Forward = forward;
        PayloadHeader = payloadHeader;
        PadPayloadHeader = padPayloadHeader;
        ClaimHeaders = claimHeaders;
        ClockSkew = clockSkew;
        _spaceDelimited = new HashSet<string>(spaceDelimitedClaims, StringComparer.Ordinal);
        Cache = new JwtTokenCache(cacheSize, JwtTokenCache.DefaultMaxTokenLength, clockSkew);
        _parameters = new TokenValidationParameters
        {
            // Issuer, audience and lifetime are checked here with Envoy's statuses and the injected clock; the handler checks the signature.
            ValidateIssuer = false,
            ValidateAudience = false,
            ValidateLifetime = false,
            RequireExpirationTime = false,
            RequireSignedTokens = true,
            ValidAlgorithms = AllowedAlgorithms,
            TryAllIssuerSigningKeys = false,
            IssuerSigningKeyResolver = (_, token, _, _) => ResolveKey(token as JsonWebToken) is { } key ? [key] : [],
        };
    }

    public string Name { get; }

    public string Issuer { get; }

    public string[] Audiences { get; }

    public (string Name, string Prefix)[] Headers { get; }

    public string[] Params { get; }

    public bool Forward { get; }

    public string? PayloadHeader { get; }

    public bool PadPayloadHeader { get; }

    public (string Header, string Claim)[] ClaimHeaders { get; }

    public TimeSpan ClockSkew { get; }

    public JwtTokenCache Cache { get; }

    public int KeyCount => _keys.Length;

    /// <summary>
    /// How many token locations this provider reads: <c>Authorization: Bearer</c> and <c>?access_token=</c> by default,
    /// else its headers and then its query parameters.
    /// </summary>
    public int LocationCount => Headers.Length == 0 && Params.Length == 0 ? 2 : Headers.Length + Params.Length;

    /// <summary>
    /// The token at location <paramref name="location"/> (0 to <see cref="LocationCount"/> - 1), or <see cref="ExtractedToken.None"/>.
    /// Envoy verifies the token of every location that holds one, not only the first.
    /// </summary>
    public ExtractedToken ExtractAt(HttpRequest request, int location)
    {
        if (Headers.Length == 0 && Params.Length == 0)
        {
            if (location != 0)
            {
                return FromQuery(request, DefaultParam);
            }

            return request.Headers.TryGetValue(DefaultHeader, out var authorization) && authorization.Count > 0 && authorization[0] is { } value
                && value.StartsWith(DefaultPrefix, StringComparison.OrdinalIgnoreCase)
                ? Trimmed(value, DefaultPrefix.Length, DefaultHeader)
                : ExtractedToken.None;
        }

        if (location >= Headers.Length)
        {
            return FromQuery(request, Params[location - Headers.Length]);
        }

        var (name, prefix) = Headers[location];
        if (request.Headers.TryGetValue(name, out var values) && values.Count > 0 && values[0] is { Length: > 0 } text)
        {
            // Istio: a header without the configured prefix makes the token invalid, not missing.
            return text.StartsWith(prefix, StringComparison.Ordinal)
                ? Trimmed(text, prefix.Length, name)
                : new ExtractedToken(text, 0, text.Length, name, PrefixMismatch: true);
        }

        return ExtractedToken.None;
    }

    /// <summary>The cached principal of a token seen before and still valid, without allocating.</summary>
    public bool TryGetCached(in ExtractedToken token, DateTimeOffset now, out JwtPrincipal? principal)
    {
        principal = null;
        return !token.PrefixMismatch && Cache.TryGet(token.Token, now, out principal);
    }

    /// <summary>Verifies a token not in the cache; caches it when valid.</summary>
    public async ValueTask<(JwtStatus Status, JwtPrincipal? Principal)> VerifyAsync(ExtractedToken extracted, DateTimeOffset now)
    {
        if (extracted.PrefixMismatch)
        {
            return (JwtStatus.VerificationFailed, null);
        }

        var text = extracted.Token.ToString();
        JsonWebToken jwt;
        try
        {
            jwt = new JsonWebToken(text);
        }
        catch (ArgumentException)
        {
            return (JwtStatus.BadFormat, null);
        }

        if (jwt.IsEncrypted)
        {
            return (JwtStatus.BadFormat, null);
        }

        if (!AllowedAlgorithms.Contains(jwt.Alg, StringComparer.Ordinal))
        {
            return (JwtStatus.VerificationFailed, null);
        }

        JwtClaim payload;
        try
        {
            var bytes = Base64Url.DecodeFromChars(jwt.EncodedPayload);
            using var document = JsonDocument.Parse(bytes);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (JwtStatus.BadFormat, null);
            }

            payload = JwtClaim.FromPayload(document.RootElement, _spaceDelimited);
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            return (JwtStatus.BadFormat, null);
        }

        if (payload.Find(["iss"]) is not { Kind: JwtClaimKind.String } iss || !string.Equals(iss.Text, Issuer, StringComparison.Ordinal))
        {
            return (JwtStatus.UnknownIssuer, null);
        }

        if (ResolveKey(jwt) is null)
        {
            return (JwtStatus.KeyNotFound, null);
        }

        var result = await Handler.ValidateTokenAsync(jwt, _parameters).ConfigureAwait(false);
        if (!result.IsValid)
        {
            return (JwtStatus.VerificationFailed, null);
        }

        var expires = JwtClaim.NumericDate(payload, "exp");
        var notBefore = JwtClaim.NumericDate(payload, "nbf");
        if ((expires is null && payload.Find(["exp"]) is not null) || (notBefore is null && payload.Find(["nbf"]) is not null))
        {
            return (JwtStatus.BadFormat, null);
        }

        if (expires is { } exp && now > exp + ClockSkew)
        {
            return (JwtStatus.Expired, null);
        }

        if (notBefore is { } nbf && now + ClockSkew < nbf)
        {
            return (JwtStatus.NotYetValid, null);
        }

        if (Audiences.Length > 0 && !(payload.Find(["aud"])?.Strings() ?? []).Any(a => Audiences.Contains(a, StringComparer.Ordinal)))
        {
            return (JwtStatus.AudienceNotAllowed, null);
        }

        var segment = PadPayloadHeader ? Pad(jwt.EncodedPayload) : jwt.EncodedPayload;
        var principal = new JwtPrincipal(payload, segment, expires, ResolveClaimHeaders(payload));
        Cache.Add(text, principal, now);
        return (JwtStatus.Ok, principal);
    }

    /// <summary>
    /// The key for <paramref name="token"/>: the one with its <c>kid</c>; without a <c>kid</c>, the only key of a one-key
    /// JWKS (with several keys a token must name its key). The key's type (and <c>alg</c>, when the JWK has one) must fit
    /// the token's algorithm.
    /// </summary>
    private JsonWebKey? ResolveKey(JsonWebToken? token)
    {
        if (token is null)
        {
            return null;
        }

        JsonWebKey? key = null;
        if (!string.IsNullOrEmpty(token.Kid))
        {
            key = Array.Find(_keys, k => string.Equals(k.Kid, token.Kid, StringComparison.Ordinal));
        }
        else if (_keys.Length == 1)
        {
            key = _keys[0];
        }

        if (key is null)
        {
            return null;
        }

        var type = token.Alg.Length > 0 && token.Alg[0] == 'E' ? JsonWebAlgorithmsKeyTypes.EllipticCurve : JsonWebAlgorithmsKeyTypes.RSA;
        return key.Kty == type && (string.IsNullOrEmpty(key.Alg) || key.Alg == token.Alg) ? key : null;
    }

    private KeyValuePair<string, string>[] ResolveClaimHeaders(JwtClaim payload)
    {
        var result = new List<KeyValuePair<string, string>>(ClaimHeaders.Length);
        foreach (var (header, claim) in ClaimHeaders)
        {
            // Envoy copies string, integer and boolean claims; other kinds are skipped.
            if (payload.FindDotted(claim) is { Kind: JwtClaimKind.String or JwtClaimKind.Number or JwtClaimKind.Bool, Text: { } value })
            {
                result.Add(new(header, value));
            }
        }

        return [.. result];
    }

    private static string Pad(string base64Url) => (base64Url.Length % 4) switch
    {
        2 => base64Url + "==",
        3 => base64Url + "=",
        _ => base64Url,
    };

    private static ExtractedToken Trimmed(string value, int start, string header)
    {
        var end = value.Length;
        while (start < end && value[start] == ' ')
        {
            start++;
        }

        while (end > start && value[end - 1] == ' ')
        {
            end--;
        }

        return start == end ? ExtractedToken.None : new ExtractedToken(value, start, end - start, header, PrefixMismatch: false);
    }

    /// <summary>
    /// The <paramref name="name"/>=value of the raw query, its key read as the app will read it: ASP.NET Core's
    /// <c>Request.Query</c> decodes keys and ignores their case, so <c>access%5Ftoken</c> and <c>Access_Token</c> are the
    /// app's <c>access_token</c> and their tokens are verified too (Envoy compares the raw key; found in review 2026-12-05).
    /// Two such keys are a mismatch, so the request fails: the app could read a value other than the one verified. No
    /// allocation unless a key or the value is percent-encoded.
    /// </summary>
    private static ExtractedToken FromQuery(HttpRequest request, string name)
    {
        var query = request.QueryString.Value;
        if (string.IsNullOrEmpty(query))
        {
            return ExtractedToken.None;
        }

        var found = ExtractedToken.None;
        var matches = 0;
        var position = 1;
        while (position < query.Length)
        {
            var end = query.IndexOf('&', position);
            if (end < 0)
            {
                end = query.Length;
            }

            var pair = query.AsSpan(position, end - position);
            var equals = pair.IndexOf('=');
            if (KeyIs(equals < 0 ? pair : pair[..equals], name))
            {
                if (++matches > 1)
                {
                    return new ExtractedToken(query, 0, query.Length, null, PrefixMismatch: true);
                }

                var start = equals < 0 ? end : position + equals + 1;
                if (query.AsSpan(start, end - start).Contains('%'))
                {
                    var decoded = Uri.UnescapeDataString(query[start..end]);
                    found = decoded.Length == 0 ? ExtractedToken.None : new ExtractedToken(decoded, 0, decoded.Length, null, PrefixMismatch: false);
                }
                else
                {
                    found = start == end ? ExtractedToken.None : new ExtractedToken(query, start, end - start, null, PrefixMismatch: false);
                }
            }

            position = end + 1;
        }

        return found;

        // As QueryHelpers reads a key: '+' is a space, percent-escapes are decoded; compared ignoring case as QueryCollection does.
        static bool KeyIs(ReadOnlySpan<char> key, string name) =>
            key.ContainsAny('%', '+')
                ? string.Equals(Uri.UnescapeDataString(key.ToString().Replace('+', ' ')), name, StringComparison.OrdinalIgnoreCase)
                : key.Equals(name, StringComparison.OrdinalIgnoreCase);
    }
}
