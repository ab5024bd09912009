using System.Text.Json;
using Mesh.Xds.Jwt;

namespace Mesh.ControlPlane.Security;

/// <summary>
/// Checks that a text is a JSON Web Key Set (RFC 7517) with keys the mesh can verify with: RSA (<c>n</c>, <c>e</c>) or
/// EC P-256/P-384/P-521 (<c>crv</c>, <c>x</c>, <c>y</c>). Symmetric (<c>oct</c>) keys are refused: a shared secret in
/// a config file pushed to every workload would let any workload mint tokens. For the same reason a key with a private
/// member (RFC 7518 §6.2.2, §6.3.2, §6.4.1) is refused, and what goes to workloads is <see cref="PublicOnly"/>.
/// </summary>
internal static class JwksDocument
{
    /// <summary>What the control plane sends when it has no keys for a JWKS URI: no token can verify (Istio's PublicOnlyJwks semantics).</summary>
    public const string Empty = """{"keys":[]}""";

    private static readonly string[] Curves = ["P-256", "P-384", "P-521"];

    /// <summary>Returns null when <paramref name="json"/> is a usable JWKS with at least one key, else what is wrong.</summary>
    public static string? Validate(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException ex)
        {
            return $"is not JSON: {ex.Message}";
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("keys", out var keys) || keys.ValueKind != JsonValueKind.Array)
            {
                return "is not a JWKS: expected an object with a \"keys\" array";
            }

            if (keys.GetArrayLength() == 0)
            {
                return "has no keys";
            }

            var i = 0;
            var kids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var key in keys.EnumerateArray())
            {
                if (JwkMembers.FirstPrivate(key) is { } member)
                {
                    return $"keys[{i}].{member}: a private key member; a JWKS is sent to every workload and must hold public keys only "
                        + "(remove it, and rotate the key: it has been exposed)";
                }

                var problem = CheckKey(key);
                if (problem is not null)
                {
                    return $"keys[{i}]: {problem}";
                }

                if (key.TryGetProperty("kid", out var kid) && kid.ValueKind == JsonValueKind.String && !kids.Add(kid.GetString()!))
                {
                    return $"keys[{i}]: kid '{kid.GetString()}' appears twice";
                }

                i++;
            }
        }

        return null;
    }

    /// <summary>
    /// <paramref name="json"/> (a JWKS) rewritten with only the public members (<see cref="JwkMembers.IsPublic"/>) of each key, in their original order,
    /// so private material can never reach a workload whatever slipped past <see cref="Validate"/>; <see cref="Empty"/>
    /// when it is not a JWKS at all (no token verifies, as for a URI never fetched).
    /// </summary>
    public static string PublicOnly(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("keys", out var keys) || keys.ValueKind != JsonValueKind.Array)
            {
                return Empty;
            }

            var buffer = new System.Buffers.ArrayBufferWriter<byte>(json.Length);
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("keys");
                foreach (var key in keys.EnumerateArray().Where(k => k.ValueKind == JsonValueKind.Object))
                {
                    writer.WriteStartObject();
                    foreach (var member in key.EnumerateObject().Where(m => JwkMembers.IsPublic(m.Name)))
                    {
                        member.WriteTo(writer);
                    }

                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
        catch (JsonException)
        {
            return Empty;
        }
    }

    private static string? CheckKey(JsonElement key)
    {
        if (key.ValueKind != JsonValueKind.Object)
        {
            return "must be an object";
        }

        var kty = String(key, "kty");
        switch (kty)
        {
            case "RSA":
                return String(key, "n") is { Length: > 0 } && String(key, "e") is { Length: > 0 } ? null : "an RSA key needs \"n\" and \"e\"";
            case "EC":
                var crv = String(key, "crv");
                if (crv is null || !Curves.Contains(crv, StringComparer.Ordinal))
                {
                    return $"crv '{crv}' is not supported; use {string.Join(", ", Curves)}";
                }

                return String(key, "x") is { Length: > 0 } && String(key, "y") is { Length: > 0 } ? null : "an EC key needs \"x\" and \"y\"";
            case "oct":
                return "symmetric (oct) keys are not supported; use RSA or EC keys";
            default:
                return $"kty '{kty}' is not supported; use RSA or EC";
        }
    }

    private static string? String(JsonElement key, string name) =>
        key.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
