using System.Globalization;
using System.Text.Json;

namespace Mesh.Client.Authorization.Jwt;

internal enum JwtClaimKind : byte
{
    Null,
    String,
    Number,
    Bool,
    List,
    Object,
}

/// <summary>
/// An immutable JSON value of a validated token's payload, built once per token so that RBAC matching and header output
/// read it without allocating (Envoy's <c>payload_in_metadata</c>). Numbers keep their JSON text.
/// </summary>
internal sealed class JwtClaim
{
    private static readonly JwtClaim[] NoItems = [];

    private JwtClaim(JwtClaimKind kind, string? text, JwtClaim[]? items, Dictionary<string, JwtClaim>? properties)
    {
        Kind = kind;
        Text = text;
        Items = items ?? NoItems;
        Properties = properties;
    }

    public JwtClaimKind Kind { get; }

    /// <summary>Gets the string, the number's JSON text or "true"/"false"; null for lists, objects and null.</summary>
    public string? Text { get; }

    public JwtClaim[] Items { get; }

    public Dictionary<string, JwtClaim>? Properties { get; }

    /// <summary>Builds the payload object; <paramref name="spaceDelimited"/> top-level string claims become lists split on spaces.</summary>
    public static JwtClaim FromPayload(JsonElement payload, IReadOnlySet<string> spaceDelimited)
    {
        var root = From(payload, depth: 0);
        if (root.Properties is { } properties)
        {
            foreach (var name in spaceDelimited)
            {
                if (properties.TryGetValue(name, out var value) && value.Kind == JwtClaimKind.String)
                {
                    properties[name] = new JwtClaim(JwtClaimKind.List, null,
                        [.. value.Text!.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => new JwtClaim(JwtClaimKind.String, s, null, null))], null);
                }
            }
        }

        return root;
    }

    /// <summary>The value at <paramref name="path"/> (object keys), or null.</summary>
    public JwtClaim? Find(ReadOnlySpan<string> path)
    {
        var node = this;
        foreach (var key in path)
        {
            if (node.Properties is null || !node.Properties.TryGetValue(key, out node))
            {
                return null;
            }
        }

        return node;
    }

    /// <summary>The value at a dotted path (<c>a.b</c>), as Envoy's claim_to_headers reads nested claims.</summary>
    public JwtClaim? FindDotted(string dotted)
    {
        var node = this;
        foreach (var key in dotted.Split('.'))
        {
            if (node.Properties is null || !node.Properties.TryGetValue(key, out node))
            {
                return null;
            }
        }

        return node;
    }

    /// <summary>The string values of a string or a list of strings (aud, scope…).</summary>
    public string[] Strings() => Kind switch
    {
        JwtClaimKind.String => [Text!],
        JwtClaimKind.List => [.. Items.Where(i => i.Kind == JwtClaimKind.String).Select(i => i.Text!)],
        _ => [],
    };

    private static JwtClaim From(JsonElement element, int depth)
    {
        if (depth > 32)
        {
            throw new JsonException("the JWT payload is nested too deeply");
        }

        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return new JwtClaim(JwtClaimKind.String, element.GetString(), null, null);
            case JsonValueKind.Number:
                return new JwtClaim(JwtClaimKind.Number, element.GetRawText(), null, null);
            case JsonValueKind.True or JsonValueKind.False:
                return new JwtClaim(JwtClaimKind.Bool, element.GetBoolean() ? "true" : "false", null, null);
            case JsonValueKind.Array:
                return new JwtClaim(JwtClaimKind.List, null, [.. element.EnumerateArray().Select(e => From(e, depth + 1))], null);
            case JsonValueKind.Object:
                var properties = new Dictionary<string, JwtClaim>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    // Duplicate names: the last wins, as most JSON parsers do.
                    properties[property.Name] = From(property.Value, depth + 1);
                }

                return new JwtClaim(JwtClaimKind.Object, null, null, properties);
            default:
                return new JwtClaim(JwtClaimKind.Null, null, null, null);
        }
    }

    /// <summary>Seconds since the epoch of a NumericDate claim, or null when absent or not a number.</summary>
    public static DateTimeOffset? NumericDate(JwtClaim root, string name)
    {
        if (root.Find([name]) is not { Kind: JwtClaimKind.Number, Text: { } text }
            || !double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            || double.IsNaN(seconds) || seconds < -62135596800 || seconds > 253402300799)
        {
            return null;
        }

        return DateTimeOffset.FromUnixTimeMilliseconds((long)(seconds * 1000));
    }
}
