using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Mesh.Packaging.Tests;

/// <summary>
/// Renders a Helm chart's templates for the Go-template subset the mesh chart uses, because no <c>helm</c> binary can be
/// installed here (Debian has no helm package; npm has none that ships the binary). Anything outside the subset throws
/// <see cref="NotSupportedException"/> naming the file and the construct, so a template that starts to use more fails
/// this test rather than being rendered wrongly. The subset, with Helm's semantics:
/// <list type="bullet">
/// <item>Text, <c>{{ pipeline }}</c>, trim markers <c>{{-</c> and <c>-}}</c> (all adjacent whitespace, newlines too), comments <c>{{/* … */}}</c>.</item>
/// <item>Actions: <c>if</c> / <c>else</c> / <c>end</c> (no <c>else if</c>), <c>define "name"</c> / <c>end</c> in files named <c>_*.tpl</c>.</item>
/// <item>Operands: fields <c>.Values.a.b</c>, <c>.Release.Name|Namespace|Service</c>, <c>.Chart.Name|Version|AppVersion</c>,
/// the root <c>.</c> (only as <c>include</c>'s context), string and integer literals. No variables, no parentheses.</item>
/// <item>Functions: <c>include</c>, <c>quote</c>, <c>toYaml</c>, <c>nindent</c>, <c>indent</c>, <c>default</c>, <c>eq</c>, <c>join</c>;
/// a pipe passes its value as the last argument.</item>
/// <item>Truth as Go's: false, 0, "", null, empty list and empty map are false. Printing a missing value, a map or a list is an
/// error (Helm would print <c>&lt;no value&gt;</c> or Go's map syntax: never what a manifest wants).</item>
/// </list>
/// </summary>
internal sealed partial class HelmTemplateRenderer
{
    private static readonly HashSet<string> Functions = ["include", "quote", "toYaml", "nindent", "indent", "default", "eq", "join"];

    private static readonly JsonSerializerOptions RelaxedJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Dictionary<string, List<Node>> _defines = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<Node>> _templates = new(StringComparer.Ordinal);

    /// <param name="files">Template file name (as under <c>templates/</c>) → its text.</param>
    public HelmTemplateRenderer(IReadOnlyDictionary<string, string> files)
    {
        foreach (var (name, text) in files.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            var nodes = Parse(name, text);
            var partial = Path.GetFileName(name).StartsWith('_');
            foreach (var define in nodes.OfType<DefineNode>())
            {
                if (!partial)
                {
                    throw new NotSupportedException($"{name}: define \"{define.Name}\" outside a _*.tpl file");
                }

                _defines.Add(define.Name, define.Body);
            }

            if (partial)
            {
                if (nodes.Any(n => n is not DefineNode && !(n is TextNode t && string.IsNullOrWhiteSpace(t.Text))))
                {
                    throw new NotSupportedException($"{name}: a _*.tpl file may hold only define blocks");
                }
            }
            else
            {
                _templates.Add(name, nodes);
            }
        }
    }

    /// <summary>The manifests' template names (files not starting with <c>_</c>).</summary>
    public IReadOnlyCollection<string> Templates => _templates.Keys;

    /// <summary>Renders one template against <paramref name="root"/> (<c>{Values, Release, Chart}</c>).</summary>
    public string Render(string template, JsonObject root)
    {
        var output = new StringBuilder();
        Execute(template, _templates[template], root, output);
        return output.ToString();
    }

    // ---- parsing ----

    private abstract record Node(int Line);

    private sealed record TextNode(string Text, int Line) : Node(Line);

    private sealed record OutputNode(string Pipeline, int Line) : Node(Line);

    private sealed record IfNode(string Condition, List<Node> Then, List<Node> Else, int Line) : Node(Line);

    private sealed record DefineNode(string Name, List<Node> Body, int Line) : Node(Line);

    private sealed record Action(string Body, int Line);

    private static List<Node> Parse(string file, string text)
    {
        // Tokenize into text and actions, applying the trim markers.
        var tokens = new List<object>();
        var position = 0;
        while (position < text.Length)
        {
            var open = text.IndexOf("{{", position, StringComparison.Ordinal);
            if (open < 0)
            {
                tokens.Add(text[position..]);
                break;
            }

            var close = text.IndexOf("}}", open + 2, StringComparison.Ordinal);
            if (close < 0)
            {
                throw new NotSupportedException($"{file}:{LineOf(text, open)}: '{{{{' without '}}}}'");
            }

            var before = text[position..open];
            var inner = text[(open + 2)..close];
            if (inner.StartsWith("- ", StringComparison.Ordinal) || inner.StartsWith("-\n", StringComparison.Ordinal))
            {
                before = before.TrimEnd(' ', '\t', '\r', '\n');
                inner = inner[1..];
            }

            var trimAfter = false;
            if (inner.EndsWith(" -", StringComparison.Ordinal) || inner.EndsWith("\n-", StringComparison.Ordinal))
            {
                trimAfter = true;
                inner = inner[..^1];
            }

            tokens.Add(before);
            tokens.Add(new Action(inner.Trim(), LineOf(text, open)));
            position = close + 2;
            if (trimAfter)
            {
                while (position < text.Length && text[position] is ' ' or '\t' or '\r' or '\n')
                {
                    position++;
                }
            }
        }

        var index = 0;
        var nodes = ParseBlock(file, tokens, ref index, out var terminator);
        if (terminator is not null)
        {
            throw new NotSupportedException($"{file}:{terminator.Line}: '{terminator.Body}' without an open if/define");
        }

        return nodes;
    }

    private static List<Node> ParseBlock(string file, List<object> tokens, ref int index, out Action? terminator)
    {
        var nodes = new List<Node>();
        terminator = null;
        while (index < tokens.Count)
        {
            var token = tokens[index++];
            if (token is string text)
            {
                if (text.Length > 0)
                {
                    nodes.Add(new TextNode(text, 0));
                }

                continue;
            }

            var action = (Action)token;
            var body = action.Body;
            if (body.StartsWith("/*", StringComparison.Ordinal))
            {
                if (!body.EndsWith("*/", StringComparison.Ordinal))
                {
                    throw new NotSupportedException($"{file}:{action.Line}: unterminated comment");
                }

                continue;
            }

            var keyword = body.Split(' ', 2)[0];
            switch (keyword)
            {
                case "end":
                case "else" when body == "else":
                    terminator = action;
                    return nodes;
                case "if":
                {
                    var condition = body[2..].Trim();
                    var then = ParseBlock(file, tokens, ref index, out var end);
                    var otherwise = new List<Node>();
                    if (end?.Body == "else")
                    {
                        otherwise = ParseBlock(file, tokens, ref index, out end);
                    }

                    if (end?.Body != "end")
                    {
                        throw new NotSupportedException($"{file}:{action.Line}: 'if' without 'end'");
                    }

                    nodes.Add(new IfNode(condition, then, otherwise, action.Line));
                    break;
                }

                case "define":
                {
                    var name = StringLiteral().Match(body[6..].Trim());
                    if (!name.Success || name.Length != body[6..].Trim().Length)
                    {
                        throw new NotSupportedException($"{file}:{action.Line}: define needs one string literal name");
                    }

                    var defineBody = ParseBlock(file, tokens, ref index, out var end);
                    if (end?.Body != "end")
                    {
                        throw new NotSupportedException($"{file}:{action.Line}: 'define' without 'end'");
                    }

                    nodes.Add(new DefineNode(name.Groups[1].Value, defineBody, action.Line));
                    break;
                }

                case "else" or "range" or "with" or "template" or "block" or "break" or "continue":
                    throw new NotSupportedException($"{file}:{action.Line}: '{body}' is outside the supported subset");
                default:
                    nodes.Add(new OutputNode(body, action.Line));
                    break;
            }
        }

        return nodes;
    }

    // ---- execution ----

    private void Execute(string file, List<Node> nodes, JsonObject root, StringBuilder output)
    {
        foreach (var node in nodes)
        {
            switch (node)
            {
                case TextNode text:
                    output.Append(text.Text);
                    break;
                case OutputNode print:
                    output.Append(Print(file, print.Line, Evaluate(file, print.Line, print.Pipeline, root)));
                    break;
                case IfNode branch:
                    Execute(file, IsTrue(Evaluate(file, branch.Line, branch.Condition, root)) ? branch.Then : branch.Else, root, output);
                    break;
                default:
                    throw new NotSupportedException($"{file}:{node.Line}: {node.GetType().Name} here");
            }
        }
    }

    /// <summary>A pipeline's value: a <see cref="JsonNode"/> (null for a missing value) or a string from a function.</summary>
    private object? Evaluate(string file, int line, string pipeline, JsonObject root)
    {
        if (pipeline.Contains('(', StringComparison.Ordinal) || pipeline.Contains('$', StringComparison.Ordinal))
        {
            throw new NotSupportedException($"{file}:{line}: '{pipeline}': parentheses and variables are outside the supported subset");
        }

        object? value = null;
        var first = true;
        foreach (var command in SplitPipes(pipeline))
        {
            var words = Words(file, line, command);
            if (words.Count == 0)
            {
                throw new NotSupportedException($"{file}:{line}: empty command in '{pipeline}'");
            }

            if (!Functions.Contains(words[0]))
            {
                if (!first || words.Count != 1)
                {
                    throw new NotSupportedException($"{file}:{line}: '{command}' in '{pipeline}': only the functions {string.Join(", ", Functions)} are supported");
                }

                value = Operand(file, line, words[0], root);
                first = false;
                continue;
            }

            var arguments = words.Skip(1).Select(w => Operand(file, line, w, root)).ToList();
            if (!first)
            {
                arguments.Add(value);
            }

            value = Call(file, line, words[0], arguments, root);
            first = false;
        }

        return value;
    }

    private object? Call(string file, int line, string function, List<object?> arguments, JsonObject root)
    {
        void Arity(int count)
        {
            if (arguments.Count != count)
            {
                throw new NotSupportedException($"{file}:{line}: {function} takes {count} arguments, got {arguments.Count}");
            }
        }

        switch (function)
        {
            case "include":
                Arity(2);
                if (!ReferenceEquals(arguments[1], root))
                {
                    throw new NotSupportedException($"{file}:{line}: include's context must be '.'");
                }

                var name = AsString(file, line, arguments[0]);
                if (!_defines.TryGetValue(name, out var body))
                {
                    throw new InvalidOperationException($"{file}:{line}: include of undefined template \"{name}\"");
                }

                var output = new StringBuilder();
                Execute(file, body, root, output);
                return output.ToString();
            case "quote":
                Arity(1);
                return JsonSerializer.Serialize(Print(file, line, arguments[0]), RelaxedJson);
            case "toYaml":
                Arity(1);
                return ToYaml(arguments[0] as JsonNode).TrimEnd('\n');
            case "nindent":
            case "indent":
            {
                Arity(2);
                var width = (int)AsLong(file, line, arguments[0]);
                var pad = new string(' ', width);
                var indented = pad + AsString(file, line, arguments[1]).Replace("\n", "\n" + pad, StringComparison.Ordinal);
                return function == "nindent" ? "\n" + indented : indented;
            }

            case "default":
                Arity(2);
                return IsTrue(arguments[1]) ? arguments[1] : arguments[0];
            case "eq":
                Arity(2);
                return JsonValue.Create(string.Equals(Print(file, line, arguments[0]), Print(file, line, arguments[1]), StringComparison.Ordinal)
                    && Kind(arguments[0]) == Kind(arguments[1]));
            case "join":
                Arity(2);
                if (arguments[1] is not JsonArray list)
                {
                    throw new InvalidOperationException($"{file}:{line}: join needs a list");
                }

                return string.Join(AsString(file, line, arguments[0]), list.Select(item => Print(file, line, item)));
            default:
                throw new NotSupportedException($"{file}:{line}: function {function}");
        }
    }

    private static JsonValueKind Kind(object? value) => value switch
    {
        null => JsonValueKind.Null,
        string => JsonValueKind.String,
        JsonNode node => node.GetValueKind(),
        _ => JsonValueKind.Undefined,
    };

    private static object? Operand(string file, int line, string word, JsonObject root)
    {
        if (word == ".")
        {
            return root;
        }

        if (word.StartsWith('"'))
        {
            return JsonSerializer.Deserialize<string>(word);
        }

        if (long.TryParse(word, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
        {
            return JsonValue.Create(number);
        }

        if (!FieldPath().IsMatch(word))
        {
            throw new NotSupportedException($"{file}:{line}: operand '{word}' is outside the supported subset");
        }

        JsonNode? node = root;
        var path = ".";
        foreach (var part in word[1..].Split('.'))
        {
            if (node is not JsonObject map)
            {
                // Helm fails the same way: "nil pointer evaluating interface {}.x".
                throw new InvalidOperationException($"{file}:{line}: {word}: {path} is {(node is null ? "not set" : "not a map")}, so it has no field {part}");
            }

            node = map.TryGetPropertyValue(part, out var child) ? child : null;
            path += (path == "." ? "" : ".") + part;
        }

        return node;
    }

    private static bool IsTrue(object? value) => value switch
    {
        null => false,
        string s => s.Length > 0,
        JsonObject map => map.Count > 0,
        JsonArray list => list.Count > 0,
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.False => false,
            JsonValueKind.True => true,
            JsonValueKind.Number => double.Parse(v.ToJsonString(), CultureInfo.InvariantCulture) != 0,
            JsonValueKind.String => v.GetValue<string>().Length > 0,
            _ => false,
        },
        _ => true,
    };

    private static string Print(string file, int line, object? value) => value switch
    {
        string s => s,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>() ? "true" : "false",
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.ToJsonString(),
        null => throw new InvalidOperationException($"{file}:{line}: printing a value that is not set (Helm would write '<no value>')"),
        _ => throw new InvalidOperationException($"{file}:{line}: printing a {Kind(value)} directly; use toYaml"),
    };

    private static string AsString(string file, int line, object? value) =>
        value is string || (value is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            ? Print(file, line, value)
            : throw new InvalidOperationException($"{file}:{line}: expected a string, got {Kind(value)}");

    private static long AsLong(string file, int line, object? value) =>
        value is JsonValue v && v.GetValueKind() == JsonValueKind.Number && long.TryParse(v.ToJsonString(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number)
            ? number
            : throw new InvalidOperationException($"{file}:{line}: expected an integer, got {Kind(value)}");

    private static IEnumerable<string> SplitPipes(string pipeline)
    {
        var start = 0;
        var quoted = false;
        for (var i = 0; i < pipeline.Length; i++)
        {
            if (pipeline[i] == '"' && (i == 0 || pipeline[i - 1] != '\\'))
            {
                quoted = !quoted;
            }
            else if (pipeline[i] == '|' && !quoted)
            {
                yield return pipeline[start..i].Trim();
                start = i + 1;
            }
        }

        yield return pipeline[start..].Trim();
    }

    private static List<string> Words(string file, int line, string command)
    {
        var words = new List<string>();
        var i = 0;
        while (i < command.Length)
        {
            if (char.IsWhiteSpace(command[i]))
            {
                i++;
                continue;
            }

            if (command[i] == '"')
            {
                var literal = StringLiteral().Match(command, i);
                if (!literal.Success || literal.Index != i)
                {
                    throw new NotSupportedException($"{file}:{line}: bad string literal in '{command}'");
                }

                words.Add(literal.Value);
                i += literal.Length;
                continue;
            }

            var end = i;
            while (end < command.Length && !char.IsWhiteSpace(command[end]))
            {
                end++;
            }

            words.Add(command[i..end]);
            i = end;
        }

        return words;
    }

    private static int LineOf(string text, int index) => text.AsSpan(0, index).Count('\n') + 1;

    [GeneratedRegex("\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex StringLiteral();

    [GeneratedRegex(@"^(\.Values(\.[A-Za-z_][A-Za-z0-9_]*)+|\.Release\.(Name|Namespace|Service)|\.Chart\.(Name|Version|AppVersion))$")]
    private static partial Regex FieldPath();

    // ---- YAML ----

    /// <summary>Block YAML for a value, as Helm's toYaml (strings double-quoted, which YAML reads back the same).</summary>
    public static string ToYaml(JsonNode? node)
    {
        var output = new StringBuilder();
        WriteYaml(node, 0, output);
        return output.ToString();
    }

    private static void WriteYaml(JsonNode? node, int indent, StringBuilder output)
    {
        var pad = new string(' ', indent);
        switch (node)
        {
            case JsonObject map when map.Count > 0:
                foreach (var (key, value) in map)
                {
                    output.Append(pad).Append(Scalar(JsonValue.Create(key))).Append(':');
                    WriteChild(value, indent, output);
                }

                break;
            case JsonArray list when list.Count > 0:
                foreach (var item in list)
                {
                    output.Append(pad).Append('-');
                    WriteChild(item, indent, output);
                }

                break;
            default:
                output.Append(pad).Append(Scalar(node)).Append('\n');
                break;
        }
    }

    private static void WriteChild(JsonNode? value, int indent, StringBuilder output)
    {
        if (value is JsonObject { Count: > 0 } or JsonArray { Count: > 0 })
        {
            output.Append('\n');
            WriteYaml(value, indent + 2, output);
        }
        else
        {
            output.Append(' ').Append(Scalar(value)).Append('\n');
        }
    }

    private static string Scalar(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "{}",
        JsonArray => "[]",
        _ => node.ToJsonString(RelaxedJson),
    };

    /// <summary>
    /// Parses YAML into JSON nodes with Kubernetes' reading of plain scalars (null, true/false, integers, floats; the rest
    /// strings). YAML 1.1 forms that Kubernetes (go-yaml) reads differently from YAML 1.2 (yes/no/on/off, 0-prefixed
    /// octal) are refused, so no value means one thing here and another on a cluster.
    /// </summary>
    public static List<JsonNode?> ParseYamlDocuments(string yaml, string source)
    {
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader(yaml));
        return [.. stream.Documents.Select(d => ToJson(d.RootNode, source))];
    }

    private static JsonNode? ToJson(YamlDotNet.RepresentationModel.YamlNode node, string source)
    {
        switch (node)
        {
            case YamlDotNet.RepresentationModel.YamlMappingNode map:
            {
                var result = new JsonObject();
                foreach (var (key, value) in map.Children)
                {
                    var name = ((YamlDotNet.RepresentationModel.YamlScalarNode)key).Value!;
                    if (!result.TryAdd(name, ToJson(value, source)))
                    {
                        throw new InvalidOperationException($"{source}:{key.Start.Line}: duplicate key '{name}'");
                    }
                }

                return result;
            }

            case YamlDotNet.RepresentationModel.YamlSequenceNode list:
                return new JsonArray([.. list.Children.Select(c => ToJson(c, source))]);
            case YamlDotNet.RepresentationModel.YamlScalarNode scalar:
            {
                var text = scalar.Value ?? "";
                if (scalar.Style != YamlDotNet.Core.ScalarStyle.Plain)
                {
                    return JsonValue.Create(text);
                }

                if (text is "" or "~" or "null" or "Null" or "NULL")
                {
                    return null;
                }

                if (text is "true" or "True" or "TRUE" or "false" or "False" or "FALSE")
                {
                    return JsonValue.Create(text.Equals("true", StringComparison.OrdinalIgnoreCase));
                }

                if (Ambiguous().IsMatch(text))
                {
                    throw new InvalidOperationException($"{source}:{scalar.Start.Line}: '{text}' reads differently in YAML 1.1 (Kubernetes) and 1.2; quote it or write it plainly");
                }

                if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
                {
                    return JsonValue.Create(integer);
                }

                if (FloatNumber().IsMatch(text))
                {
                    return JsonValue.Create(double.Parse(text, CultureInfo.InvariantCulture));
                }

                return JsonValue.Create(text);
            }

            default:
                throw new NotSupportedException($"{source}:{node.Start.Line}: YAML node {node.NodeType}");
        }
    }

    [GeneratedRegex(@"^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF|[-+]?0[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$")]
    private static partial Regex Ambiguous();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatNumber();

    /// <summary>Helm's merge of a user's values over the chart's: maps merge key by key, anything else replaces, null deletes.</summary>
    public static JsonObject MergeValues(JsonObject defaults, JsonObject overrides)
    {
        var result = (JsonObject)defaults.DeepClone();
        foreach (var (key, value) in overrides)
        {
            if (value is null)
            {
                result.Remove(key);
            }
            else if (value is JsonObject map && result[key] is JsonObject existing)
            {
                result[key] = MergeValues(existing, map);
            }
            else
            {
                result[key] = value.DeepClone();
            }
        }

        return result;
    }
}
