using System.Text;

namespace Mesh.Xds.Wire;

/// <summary>
/// The one reading of an Envoy header value format (RDS <c>request/response_headers_to_add</c>, Istio's
/// <c>headers.request/response.set/add</c>): literal text where <c>%%</c> is a <c>%</c>, and <c>%OPERATOR%</c> or
/// <c>%OPERATOR(args)%</c> commands. The syntax check is Istio's <c>validateHeaderValue</c> (a port of Envoy's
/// header_parser), so the loader refuses what istiod refuses and the client NACKs what it cannot read.
/// </summary>
internal static class HeaderValueFormat
{
    /// <summary>The one operator Mesh clients expand: Envoy's <c>%HOSTNAME%</c>, the host's name (the pod name in Kubernetes).</summary>
    public const string Hostname = "HOSTNAME";

    /// <summary>
    /// Splits <paramref name="value"/> into its literal text (with <c>%%</c> unescaped) and its operators, the text between
    /// the <c>%</c> delimiters (<c>HOSTNAME</c>, <c>REQ(x-id)</c>). False with Istio's reason if the syntax is invalid.
    /// </summary>
    public static bool TryParse(string value, out IReadOnlyList<Part> parts, out string error)
    {
        var list = new List<Part>();
        parts = list;
        error = string.Empty;
        var literal = new StringBuilder();
        var state = State.Literal;
        var operatorStart = 0;
        for (var pos = 0; pos < value.Length; pos++)
        {
            var ch = value[pos];
            var hasNext = pos + 1 < value.Length;
            switch (state)
            {
                case State.Literal when ch != '%':
                    literal.Append(ch);
                    break;
                case State.Literal when !hasNext:
                    error = "un-escaped % (write a literal % as %%)";
                    return false;
                case State.Literal when value[pos + 1] == '%':
                    literal.Append('%');
                    pos++;
                    break;
                case State.Literal:
                    if (literal.Length > 0)
                    {
                        list.Add(new Part(literal.ToString(), IsOperator: false));
                        literal.Clear();
                    }

                    operatorStart = pos + 1;
                    state = State.VariableName;
                    break;
                case State.VariableName when ch == '%':
                    list.Add(new Part(value[operatorStart..pos], IsOperator: true));
                    state = State.Literal;
                    break;
                case State.VariableName when ch == '(':
                    state = State.ExpectArray;
                    break;
                case State.ExpectArray when ch == '[':
                    state = State.ExpectString;
                    break;
                case State.ExpectArray when ch != ' ':
                    // Envoy reads a bare argument as a string: %REQ(x-id)%.
                    state = State.String;
                    break;
                case State.ExpectArrayDelimiterOrEnd when ch == ',':
                    state = State.ExpectString;
                    break;
                case State.ExpectArrayDelimiterOrEnd when ch == ']':
                    state = State.ExpectArgsEnd;
                    break;
                case State.ExpectArrayDelimiterOrEnd when ch != ' ':
                    error = $"expecting ',', ']' or a space at position {pos}";
                    return false;
                case State.ExpectString when ch == '"':
                    state = State.String;
                    break;
                case State.ExpectString when ch != ' ':
                    error = $"expecting '\"' at position {pos}";
                    return false;
                case State.String when ch == '\\':
                    if (!hasNext)
                    {
                        error = "un-terminated backslash in a JSON string";
                        return false;
                    }

                    pos++;
                    break;
                case State.String when ch == ')':
                    state = State.ExpectVariableEnd;
                    break;
                case State.String when ch == '"':
                    state = State.ExpectArrayDelimiterOrEnd;
                    break;
                case State.ExpectArgsEnd when ch == ')':
                    state = State.ExpectVariableEnd;
                    break;
                case State.ExpectArgsEnd when ch != ' ':
                    error = $"expecting ')' or a space at position {pos}";
                    return false;
                case State.ExpectVariableEnd when ch == '%':
                    list.Add(new Part(value[operatorStart..pos], IsOperator: true));
                    state = State.Literal;
                    break;
                case State.ExpectVariableEnd when ch != ' ':
                    error = $"expecting '%' or a space at position {pos}";
                    return false;
            }
        }

        if (state != State.Literal)
        {
            error = "un-terminated %OPERATOR% expression (write a literal % as %%)";
            return false;
        }

        if (literal.Length > 0)
        {
            list.Add(new Part(literal.ToString(), IsOperator: false));
        }

        return true;
    }

    /// <summary>A run of literal text (already unescaped), or an operator's text between its <c>%</c> delimiters.</summary>
    internal readonly record struct Part(string Text, bool IsOperator);

    private enum State
    {
        Literal,
        VariableName,
        ExpectArray,
        ExpectString,
        String,
        ExpectArrayDelimiterOrEnd,
        ExpectArgsEnd,
        ExpectVariableEnd,
    }
}
