using System.Buffers.Text;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Mesh.ControlPlane.Configuration;

namespace Mesh.ControlPlane.Security;

/// <summary>A bootstrap token that verified: whom it names, its <c>jti</c> and expiry, and whether it may be used more than once.</summary>
internal sealed record BootstrapToken(WorkloadIdentity Identity, string Jti, DateTimeOffset Expires, bool Reusable);

/// <summary>
/// Bootstrap tokens: compact JWS (ES256) signed with StateDirectory/ca/token-signing-key.pem. They let a
/// workload without a certificate prove its (namespace, service account) to the CA once (single-use unless minted
/// with <c>reusable</c>). Reserved identities (ControlPlane:Bootstrap:ReservedIdentities) are never minted nor accepted.
/// </summary>
internal sealed class BootstrapTokens : IDisposable
{
    public const string Issuer = "mesh-control-plane";
    public const string Audience = "mesh-ca";
    public static readonly TimeSpan DefaultTtl = TimeSpan.FromHours(1);
    public static readonly TimeSpan MaxTtl = TimeSpan.FromHours(24);
    public static readonly TimeSpan Skew = TimeSpan.FromSeconds(30);

    public const string ReusableClaim = "reusable";

    private readonly ECDsa _key;
    private readonly string _trustDomain;
    private readonly TimeProvider _time;
    private readonly BootstrapOptions _bootstrap;

    public BootstrapTokens(ECDsa key, string trustDomain, TimeProvider time, BootstrapOptions? bootstrap = null)
    {
        _key = key;
        _trustDomain = trustDomain;
        _time = time;
        _bootstrap = bootstrap ?? new BootstrapOptions();
    }

    public static string KeyPath(ControlPlaneOptions options) => Path.Combine(Path.GetFullPath(options.StateDirectory), "ca", "token-signing-key.pem");

    public static BootstrapTokens Load(ControlPlaneOptions options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new BootstrapTokens(PrivateKeyFiles.LoadOrCreateEcKey(KeyPath(options)), options.TrustDomain, time, options.Bootstrap);
    }

    /// <summary>
    /// Loads the signing key a control plane made in its state directory, never making one: a token signed by a key no
    /// control plane has would be refused at first use (the <c>token</c> command, run from anywhere, uses this).
    /// </summary>
    public static BootstrapTokens LoadExisting(ControlPlaneOptions options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        var path = KeyPath(options);
        if (!File.Exists(path))
        {
            throw new InvalidOperationException(
                $"No token signing key at {path}: ControlPlane:StateDirectory '{options.StateDirectory}' is not the state directory of a control plane that has started. " +
                "Pass that control plane's --ControlPlane:StateDirectory=<dir> (or start the control plane there once first).");
        }

        var key = PrivateKeyFiles.LoadEcKey(path, "restore the control plane's key from its state directory (the token command never replaces it)");
        return new BootstrapTokens(key, options.TrustDomain, time, options.Bootstrap);
    }

    /// <summary>Checks mint arguments, reserved identities included; null when valid, else a message naming the field.</summary>
    public string? CheckMint(string? ns, string? serviceAccount, TimeSpan ttl) =>
        ValidateRequest(ns, serviceAccount, ttl) ?? Reserved(ns!, serviceAccount!);

    private string? Reserved(string ns, string serviceAccount) =>
        _bootstrap.IsReserved(ns, serviceAccount, out var entry)
            ? $"{new WorkloadIdentity(_trustDomain, ns, serviceAccount).SpiffeId} is a reserved identity ({(entry == BootstrapOptions.ControlPlaneIdentity ? "the control plane's own" : $"ControlPlane:Bootstrap:ReservedIdentities '{entry}'")}); no bootstrap token may name it"
            : null;

    /// <summary>Checks mint arguments; null when valid, else a message naming the field.</summary>
    public static string? ValidateRequest(string? ns, string? serviceAccount, TimeSpan ttl)
    {
        if (!SpiffeId.IsDnsLabel(ns))
        {
            return $"namespace '{ns}' must be a DNS label (lowercase letters, digits and '-', at most 63 characters)";
        }

        if (!SpiffeId.IsDnsLabel(serviceAccount))
        {
            return $"serviceAccount '{serviceAccount}' must be a DNS label (lowercase letters, digits and '-', at most 63 characters)";
        }

        if (ttl <= TimeSpan.Zero || ttl > MaxTtl)
        {
            return $"ttl {ttl.ToString("c", CultureInfo.InvariantCulture)} must be more than 0 and at most {MaxTtl.ToString("c", CultureInfo.InvariantCulture)}";
        }

        return null;
    }

    public (string Token, DateTimeOffset Expires) Mint(string ns, string serviceAccount, TimeSpan ttl, bool reusable = false)
    {
        var error = CheckMint(ns, serviceAccount, ttl);
        if (error is not null)
        {
            throw new ArgumentException(error);
        }

        var now = _time.GetUtcNow();
        var expires = now + ttl;
        var header = JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["alg"] = "ES256", ["typ"] = "JWT" });
        var claims = new Dictionary<string, object>
        {
            ["iss"] = Issuer,
            ["aud"] = Audience,
            ["sub"] = $"system:serviceaccount:{ns}:{serviceAccount}",
            ["ns"] = ns,
            ["sa"] = serviceAccount,
            ["iat"] = now.ToUnixTimeSeconds(),
            ["exp"] = expires.ToUnixTimeSeconds(),
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        if (reusable)
        {
            claims[ReusableClaim] = true;
        }

        var payload = JsonSerializer.SerializeToUtf8Bytes(claims);
        var signingInput = Base64Url.EncodeToString(header) + "." + Base64Url.EncodeToString(payload);
        var signature = _key.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return (signingInput + "." + Base64Url.EncodeToString(signature), DateTimeOffset.FromUnixTimeSeconds(expires.ToUnixTimeSeconds()));
    }

    /// <summary>
    /// Whether a bearer token says it is one of ours (a compact JWS whose unverified <c>iss</c> is <see cref="Issuer"/>). It only
    /// routes the token: one that says so is checked by <see cref="Validate"/> alone and never sent to a Kubernetes
    /// TokenReview; one that does not is never accepted as a bootstrap token (Validate refuses any other issuer).
    /// </summary>
    public static bool ClaimsOurIssuer(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        var first = token.IndexOf('.', StringComparison.Ordinal);
        var second = first < 0 ? -1 : token.IndexOf('.', first + 1);
        if (second < 0 || token.Length > 16 * 1024)
        {
            return false;
        }

        try
        {
            var payload = JsonSerializer.Deserialize<JsonElement>(Base64Url.DecodeFromChars(token.AsSpan(first + 1, second - first - 1)));
            return payload.ValueKind == JsonValueKind.Object && String(payload, "iss") == Issuer;
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            return false;
        }
    }

    /// <summary>Verifies signature, alg, iss, aud, exp/nbf (±30 s), jti, the subject and that it is not reserved; null with a reason when invalid.</summary>
    public BootstrapToken? Validate(string token, out string reason)
    {
        ArgumentNullException.ThrowIfNull(token);
        var parts = token.Split('.');
        if (parts.Length != 3)
        {
            reason = "bearer token is not a compact JWS (header.payload.signature)";
            return null;
        }

        JsonElement header;
        JsonElement payload;
        byte[] signature;
        try
        {
            header = JsonSerializer.Deserialize<JsonElement>(Base64Url.DecodeFromChars(parts[0]));
            payload = JsonSerializer.Deserialize<JsonElement>(Base64Url.DecodeFromChars(parts[1]));
            signature = Base64Url.DecodeFromChars(parts[2]);
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            reason = $"bearer token is malformed ({ex.Message})";
            return null;
        }

        if (header.ValueKind != JsonValueKind.Object || payload.ValueKind != JsonValueKind.Object)
        {
            reason = "bearer token header and payload must be JSON objects";
            return null;
        }

        var alg = String(header, "alg");
        if (alg != "ES256")
        {
            reason = $"bearer token alg '{alg}' is not accepted; only ES256 tokens minted by this control plane are";
            return null;
        }

        var signingInput = Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]);
        if (signature.Length != 64 || !_key.VerifyData(signingInput, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation))
        {
            reason = "bearer token signature does not verify with this control plane's token signing key (forged, or minted by another control plane); mint a new token";
            return null;
        }

        var iss = String(payload, "iss");
        if (iss != Issuer)
        {
            reason = $"bearer token issuer '{iss}' is not '{Issuer}'";
            return null;
        }

        if (!HasAudience(payload))
        {
            reason = $"bearer token audience {(payload.TryGetProperty("aud", out var aud) ? aud.GetRawText() : "(none)")} is wrong; it must be '{Audience}'";
            return null;
        }

        var now = _time.GetUtcNow();
        var exp = Seconds(payload, "exp");
        if (exp is null)
        {
            reason = "bearer token has no exp claim";
            return null;
        }

        if (DateTimeOffset.FromUnixTimeSeconds(exp.Value) + Skew <= now)
        {
            reason = $"bearer token expired at {DateTimeOffset.FromUnixTimeSeconds(exp.Value):O}; mint a new one (POST /tokens on the admin port or 'mesh-control-plane token')";
            return null;
        }

        if (Seconds(payload, "nbf") is { } nbf && DateTimeOffset.FromUnixTimeSeconds(nbf) - Skew > now)
        {
            reason = $"bearer token is not valid before {DateTimeOffset.FromUnixTimeSeconds(nbf):O}";
            return null;
        }

        var ns = String(payload, "ns");
        var sa = String(payload, "sa");
        if (!SpiffeId.IsDnsLabel(ns) || !SpiffeId.IsDnsLabel(sa) || String(payload, "sub") != $"system:serviceaccount:{ns}:{sa}")
        {
            reason = "bearer token claims ns, sa and sub (system:serviceaccount:<ns>:<sa>) are missing or disagree";
            return null;
        }

        // Checked again here, not only at minting: a token from an older build or a changed configuration may name it.
        if (Reserved(ns!, sa!) is { } reserved)
        {
            reason = "bearer token names " + reserved;
            return null;
        }

        var jti = String(payload, "jti");
        if (string.IsNullOrEmpty(jti) || jti.Length > 128)
        {
            reason = "bearer token has no jti claim (or one longer than 128 characters); mint a new one";
            return null;
        }

        var reusable = payload.TryGetProperty(ReusableClaim, out var flag) && flag.ValueKind == JsonValueKind.True;
        reason = string.Empty;
        return new BootstrapToken(new WorkloadIdentity(_trustDomain, ns!, sa!), jti, DateTimeOffset.FromUnixTimeSeconds(exp.Value), reusable);
    }

    public void Dispose() => _key.Dispose();

    private static string? String(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long? Seconds(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var seconds) ? seconds : null;

    private static bool HasAudience(JsonElement payload)
    {
        if (!payload.TryGetProperty("aud", out var aud))
        {
            return false;
        }

        return aud.ValueKind switch
        {
            JsonValueKind.String => aud.GetString() == Audience,
            JsonValueKind.Array => aud.EnumerateArray().Any(a => a.ValueKind == JsonValueKind.String && a.GetString() == Audience),
            _ => false,
        };
    }
}
