using System.Text.Json.Nodes;

namespace Mesh.KubernetesFake;

/// <summary>
/// A label selector in the API's query syntax: <c>k=v</c>, <c>k==v</c>, <c>k!=v</c>, <c>k</c>, <c>!k</c>,
/// <c>k in (a,b)</c>, <c>k notin (a,b)</c>, comma-separated (all must hold).
/// </summary>
internal sealed class LabelSelector
{
    private readonly List<Func<JsonObject?, bool>> _requirements = [];

    public static LabelSelector? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var selector = new LabelSelector();
        foreach (var part in SplitTopLevel(text))
        {
            var term = part.Trim();
            if (term.Length == 0)
            {
                continue;
            }
            selector._requirements.Add(ParseTerm(term));
        }
        return selector;
    }

    public bool Matches(JsonObject obj)
    {
        var labels = obj["metadata"]?["labels"] as JsonObject;
        return _requirements.TrueForAll(r => r(labels));
    }

    private static Func<JsonObject?, bool> ParseTerm(string term)
    {
        static string? Value(JsonObject? labels, string key) => labels?[key]?.GetValue<string>();

        var notin = term.IndexOf(" notin ", StringComparison.Ordinal);
        if (notin > 0)
        {
            var key = term[..notin].Trim();
            var values = SetValues(term[(notin + 7)..]);
            return labels => Value(labels, key) is not { } v || !values.Contains(v);
        }
        var @in = term.IndexOf(" in ", StringComparison.Ordinal);
        if (@in > 0)
        {
            var key = term[..@in].Trim();
            var values = SetValues(term[(@in + 4)..]);
            return labels => Value(labels, key) is { } v && values.Contains(v);
        }
        var ne = term.IndexOf("!=", StringComparison.Ordinal);
        if (ne > 0)
        {
            var key = term[..ne].Trim();
            var value = term[(ne + 2)..].Trim();
            return labels => Value(labels, key) != value;
        }
        var eq = term.IndexOf('=', StringComparison.Ordinal);
        if (eq > 0)
        {
            var key = term[..eq].Trim();
            var value = term[(eq + 1)..].TrimStart('=').Trim();
            return labels => Value(labels, key) == value;
        }
        if (term.StartsWith('!'))
        {
            var key = term[1..].Trim();
            return labels => labels is null || !labels.ContainsKey(key);
        }
        return labels => labels is not null && labels.ContainsKey(term);
    }

    private static HashSet<string> SetValues(string text)
    {
        var trimmed = text.Trim();
        if (!trimmed.StartsWith('(') || !trimmed.EndsWith(')'))
        {
            throw FakeKubernetesStatusException.BadRequest($"unable to parse requirement: expected a set in parentheses, found '{text}'");
        }
        return trimmed[1..^1].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet(StringComparer.Ordinal);
    }

    private static IEnumerable<string> SplitTopLevel(string text)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            switch (text[i])
            {
                case '(':
                    depth++;
                    break;
                case ')':
                    depth--;
                    break;
                case ',' when depth == 0:
                    yield return text[start..i];
                    start = i + 1;
                    break;
            }
        }
        yield return text[start..];
    }
}

/// <summary>A field selector: <c>metadata.name</c> and <c>metadata.namespace</c> with = / == / !=, comma-separated.</summary>
internal sealed class FieldSelector
{
    private readonly List<(string Field, string Value, bool Equal)> _terms = [];

    public static FieldSelector? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }
        var selector = new FieldSelector();
        foreach (var raw in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var ne = raw.IndexOf("!=", StringComparison.Ordinal);
            var eq = raw.IndexOf('=', StringComparison.Ordinal);
            var (field, value, equal) = ne > 0
                ? (raw[..ne], raw[(ne + 2)..], false)
                : eq > 0 ? (raw[..eq], raw[(eq + 1)..].TrimStart('='), true)
                : throw FakeKubernetesStatusException.BadRequest($"invalid field selector: '{raw}'");
            if (field is not ("metadata.name" or "metadata.namespace"))
            {
                throw FakeKubernetesStatusException.BadRequest($"field label not supported: {field}");
            }
            selector._terms.Add((field, value, equal));
        }
        return selector;
    }

    public bool Matches(JsonObject obj)
    {
        foreach (var (field, value, equal) in _terms)
        {
            var actual = field == "metadata.name" ? KubeJson.NameOf(obj) : KubeJson.NamespaceOf(obj) ?? "";
            if ((actual == value) != equal)
            {
                return false;
            }
        }
        return true;
    }
}
