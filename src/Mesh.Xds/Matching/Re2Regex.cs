using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Mesh.Xds.Matching;

/// <summary>
/// RE2 patterns (Envoy's <c>safe_regex</c>, Istio's <c>regex</c> matches) run on .NET's non-backtracking engine, with
/// RE2's meaning. The two dialects share most syntax but not all of it, and where they differ silently a route or a
/// policy would match other requests than in Envoy or grpc-js-xds: <c>\d</c> is ASCII in RE2 and any Unicode digit in
/// .NET; <c>$</c> is the end of the text in RE2 and also "before a final newline" in .NET; <c>[[:alpha:]]</c> is a
/// POSIX class in RE2 and a bracket soup in .NET; <c>[a-z-[aeiou]]</c> is a literal <c>[</c> in RE2 and a class
/// subtraction in .NET. So a pattern is translated token by token: what RE2 means is spelled for .NET, and what RE2
/// refuses (lookaround, backreferences, atomic groups, conditionals, comments) is refused with the reason, even where
/// .NET could run it. The control plane validates with this type and the client compiles with it: one dialect.
/// </summary>
internal static class Re2Regex
{
    /// <summary>The longest pattern accepted: Istio's limit on a match regex (validation.go).</summary>
    public const int MaxPatternLength = 1024;

    private const RegexOptions Options = RegexOptions.NonBacktracking | RegexOptions.CultureInvariant;

    private static readonly Dictionary<string, string> PosixClasses = new(StringComparer.Ordinal)
    {
        ["alnum"] = "0-9A-Za-z",
        ["alpha"] = "A-Za-z",
        ["ascii"] = @"\x00-\x7F",
        ["blank"] = @"\t ",
        ["cntrl"] = @"\x00-\x1F\x7F",
        ["digit"] = "0-9",
        ["graph"] = "!-~",
        ["lower"] = "a-z",
        ["print"] = " -~",
        ["punct"] = @"!-/:-@\[-`{-~",
        ["space"] = @"\t\n\v\f\r ",
        ["upper"] = "A-Z",
        ["word"] = "0-9A-Za-z_",
        ["xdigit"] = "0-9A-Fa-f",
    };

    /// <summary>
    /// Compiles <paramref name="pattern"/> as an RE2 full match (the whole input must match, as Envoy's safe_regex).
    /// Returns null and sets <paramref name="error"/> to a sentence naming what is wrong when RE2 would refuse it.
    /// </summary>
    public static Regex? TryCompileFullMatch(string pattern, bool ignoreCase, out string? error) =>
        TryCompile(pattern, ignoreCase, fullMatch: true, out error);

    /// <summary>
    /// Compiles <paramref name="pattern"/> as RE2, matching anywhere in the input (for substitutions such as Envoy's
    /// <c>regex_rewrite</c>, which replaces every match) or, with <paramref name="fullMatch"/>, only the whole input.
    /// </summary>
    public static Regex? TryCompile(string pattern, bool ignoreCase, bool fullMatch, out string? error)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.Length is 0 or > MaxPatternLength)
        {
            error = $"must be 1 to {MaxPatternLength.ToString(CultureInfo.InvariantCulture)} characters long";
            return null;
        }

        if (!TryTranslate(pattern, out var translated, out var reason))
        {
            error = $"'{pattern}' is not a valid RE2 regex: {reason}";
            return null;
        }

        var options = Options | (ignoreCase ? RegexOptions.IgnoreCase : RegexOptions.None);
        try
        {
            // The pattern alone first: wrapping an unbalanced one such as "a)|(b" would make it another valid regex.
            _ = new Regex(translated, options);
            error = null;
            return new Regex(fullMatch ? $"\\A(?:{translated})\\z" : translated, options);
        }
        catch (ArgumentException e)
        {
            error = $"'{pattern}' is not a valid RE2 regex: {e.Message}";
        }
        catch (NotSupportedException e)
        {
            error = $"'{pattern}' is not a valid RE2 regex: {e.Message}";
        }

        return null;
    }

    /// <summary>
    /// The literal text every full match of <paramref name="pattern"/> begins with (possibly empty): a check of it rejects
    /// most inputs, such as the paths of a route table's other routes, without running the regex engine. Conservative: it
    /// reads plain characters and escaped punctuation from the start, stops at anything else, leaves out a character a
    /// quantifier makes optional, and is empty for a pattern with any alternation (whose branches may begin differently).
    /// </summary>
    public static string LiteralPrefix(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        if (pattern.Contains('|', StringComparison.Ordinal))
        {
            return string.Empty;
        }

        var prefix = new StringBuilder();
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c is '*' or '+' or '?' or '{')
            {
                // The quantifier applies to the last character: it may occur any number of times, or not at all.
                prefix.Length = Math.Max(0, prefix.Length - 1);
                break;
            }

            if (char.IsAsciiLetterOrDigit(c) || c is '/' or '-' or '_' or ',' or ':' or ';' or '=' or '!' or '@' or '#' or '%' or '&' or '\'' or '"' or '<' or '>' or '~' or '`' or ' ')
            {
                prefix.Append(c);
            }
            else if (c == '\\' && i + 1 < pattern.Length && pattern[i + 1] is >= '!' and <= '~' && !char.IsAsciiLetterOrDigit(pattern[i + 1]))
            {
                // An escaped punctuation character is that character (\. \/ \-); an escaped letter is a class or an anchor.
                prefix.Append(pattern[++i]);
            }
            else
            {
                break;
            }
        }

        return prefix.ToString();
    }

    /// <summary>Spells an RE2 pattern in .NET's dialect with the same meaning; false, with the reason, for what RE2 refuses.</summary>
    public static bool TryTranslate(string pattern, out string translated, out string? error)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var output = new StringBuilder(pattern.Length + 16);
        translated = string.Empty;
        error = null;

        // RE2's $ is the end of the text unless the m flag is on; .NET's also matches before a final '\n'.
        var multiline = false;
        for (var i = 0; i < pattern.Length; i++)
        {
            var c = pattern[i];
            switch (c)
            {
                case '\\':
                    if (!TryEscape(pattern, ref i, inClass: false, output, out error))
                    {
                        return false;
                    }

                    break;
                case '[':
                    if (!TryClass(pattern, ref i, output, out error))
                    {
                        return false;
                    }

                    break;
                case '(':
                    if (!TryGroup(pattern, ref i, output, ref multiline, out error))
                    {
                        return false;
                    }

                    break;
                case '$':
                    output.Append(multiline ? "$" : @"\z");
                    break;
                case '{' when !TryRepeatCount(pattern, i, out error):
                    return false;
                case '+' or '*' or '?' or '}' when i + 1 < pattern.Length && pattern[i + 1] == '+':
                    error = $"possessive quantifier '{c}+' at {i.ToString(CultureInfo.InvariantCulture)} is not RE2 syntax";
                    return false;
                default:
                    output.Append(c);
                    break;
            }
        }

        translated = output.ToString();
        return true;
    }

    // RE2 refuses a repeat count above 1000 ("bad repetition operator"); .NET would accept it, so a pattern the Mesh client
    // ran would be NACKed by Envoy and gRPC clients.
    private static bool TryRepeatCount(string pattern, int i, out string? error)
    {
        error = null;
        var close = pattern.IndexOf('}', i + 1);
        if (close < 0)
        {
            return true;
        }

        foreach (var part in pattern.AsSpan(i + 1, close - i - 1).ToString().Split(','))
        {
            if (part.Length > 0 && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var count) && count > 1000)
            {
                error = $"repeat count {part} at {i.ToString(CultureInfo.InvariantCulture)} is above RE2's limit of 1000";
                return false;
            }

            if (part.Length > 4 && part.AsSpan().IndexOfAnyExceptInRange('0', '9') < 0)
            {
                error = $"repeat count {part} at {i.ToString(CultureInfo.InvariantCulture)} is above RE2's limit of 1000";
                return false;
            }
        }

        return true;
    }

    private static bool TryGroup(string pattern, ref int i, StringBuilder output, ref bool multiline, out string? error)
    {
        error = null;
        if (i + 1 >= pattern.Length || pattern[i + 1] != '?')
        {
            output.Append('(');
            return true;
        }

        var rest = pattern.AsSpan(i + 2);
        if (rest.StartsWith("P<"))
        {
            // RE2's named group; .NET spells it without the P.
            output.Append("(?<");
            i += 3;
            return true;
        }

        if (rest.StartsWith("<") && !rest.StartsWith("<=") && !rest.StartsWith("<!"))
        {
            output.Append("(?<");
            i += 2;
            return true;
        }

        // Flags: (?flags) or (?flags:re), RE2 knows i, m, s and U.
        var end = 0;
        while (end < rest.Length && rest[end] is 'i' or 'm' or 's' or 'U' or '-')
        {
            end++;
        }

        if (end < rest.Length && (rest[end] == ':' || (end > 0 && rest[end] == ')')))
        {
            var flags = rest[..end];
            if (flags.Contains('U'))
            {
                error = "the U (ungreedy) flag is not supported";
                return false;
            }

            var minus = flags.IndexOf('-');
            if ((minus < 0 ? flags : flags[..minus]).Contains('m'))
            {
                multiline = true;
            }

            output.Append("(?").Append(flags).Append(rest[end]);
            i += 2 + end;
            return true;
        }

        var what = rest switch
        {
            _ when rest.StartsWith("=") || rest.StartsWith("!") => "lookahead",
            _ when rest.StartsWith("<=") || rest.StartsWith("<!") => "lookbehind",
            _ when rest.StartsWith(">") => "an atomic group",
            _ when rest.StartsWith("(") => "a conditional",
            _ when rest.StartsWith("#") => "a comment",
            _ when rest.StartsWith("P=") || rest.StartsWith("P>") => "a backreference",
            _ => "this group syntax",
        };
        error = $"{what} at {i.ToString(CultureInfo.InvariantCulture)} is not RE2 syntax";
        return false;
    }

    private static bool TryEscape(string pattern, ref int i, bool inClass, StringBuilder output, out string? error)
    {
        error = null;
        if (i + 1 >= pattern.Length)
        {
            error = "trailing backslash";
            return false;
        }

        var c = pattern[++i];
        switch (c)
        {
            // RE2's Perl classes are ASCII-only.
            case 'd':
                output.Append(inClass ? "0-9" : "[0-9]");
                return true;
            case 'w':
                output.Append(inClass ? "0-9A-Za-z_" : "[0-9A-Za-z_]");
                return true;
            case 's':
                output.Append(inClass ? @"\t\n\f\r " : @"[\t\n\f\r ]");
                return true;
            case 'D' or 'W' or 'S' when inClass:
                error = $"\\{c} inside a character class is not supported; use a negated class";
                return false;
            case 'D':
                output.Append("[^0-9]");
                return true;
            case 'W':
                output.Append("[^0-9A-Za-z_]");
                return true;
            case 'S':
                output.Append(@"[^\t\n\f\r ]");
                return true;
            case 'Q':
                var close = pattern.IndexOf(@"\E", i + 1, StringComparison.Ordinal);
                var literal = close < 0 ? pattern[(i + 1)..] : pattern[(i + 1)..close];
                output.Append(inClass ? EscapeInClass(literal) : Regex.Escape(literal));
                i = close < 0 ? pattern.Length - 1 : close + 1;
                return true;
            case 'x' when i + 1 < pattern.Length && pattern[i + 1] == '{':
                var brace = pattern.IndexOf('}', i + 2);
                if (brace < 0 || !int.TryParse(pattern.AsSpan(i + 2, brace - i - 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code) || code > 0xFFFF)
                {
                    error = $"\\x{{...}} must be a code point up to FFFF here";
                    return false;
                }

                output.Append(CultureInfo.InvariantCulture, $"\\u{code:X4}");
                i = brace;
                return true;
            case >= '1' and <= '9':
                error = $"backreference \\{c} is not RE2 syntax";
                return false;
            case 'k' or 'G' or 'Z' or 'e' or 'c' or 'u' or 'C' or 'X' or 'R' or 'K' or 'h' or 'H' or 'V' or 'N' or 'o':
                error = $"\\{c} is not supported in RE2 syntax here";
                return false;
            case 'p' or 'P' when i + 1 < pattern.Length && pattern[i + 1] != '{':
                // RE2's one-letter form \pL; .NET needs braces.
                output.Append('\\').Append(c).Append('{').Append(pattern[++i]).Append('}');
                return true;
            case 'b' or 'B' when inClass:
                error = $"\\{c} inside a character class is not RE2 syntax";
                return false;
            default:
                // \A \z \b \B \pX \p{..} \PX \n \t \f \r \v \a \x41, octal \0.., and escaped punctuation mean the same in both.
                output.Append('\\').Append(c);
                return true;
        }
    }

    private static bool TryClass(string pattern, ref int i, StringBuilder output, out string? error)
    {
        error = null;
        output.Append('[');
        var start = i;
        i++;
        if (i < pattern.Length && pattern[i] == '^')
        {
            output.Append('^');
            i++;
        }

        // A ']' first in the class is a literal in both dialects.
        if (i < pattern.Length && pattern[i] == ']')
        {
            output.Append(@"\]");
            i++;
        }

        for (; i < pattern.Length; i++)
        {
            var c = pattern[i];
            if (c == ']')
            {
                output.Append(']');
                return true;
            }

            if (c == '\\')
            {
                if (!TryEscape(pattern, ref i, inClass: true, output, out error))
                {
                    return false;
                }

                continue;
            }

            if (c == '[')
            {
                if (pattern.AsSpan(i).StartsWith("[:"))
                {
                    var end = pattern.IndexOf(":]", i + 2, StringComparison.Ordinal);
                    var name = end < 0 ? string.Empty : pattern[(i + 2)..end];
                    if (name.StartsWith('^') || !PosixClasses.TryGetValue(name, out var members))
                    {
                        error = $"POSIX class [:{name}:] is not supported";
                        return false;
                    }

                    output.Append(members);
                    i = end + 1;
                    continue;
                }

                // A literal '[' in RE2; .NET would read "-[" as a class subtraction.
                output.Append(@"\[");
                continue;
            }

            output.Append(c);
        }

        error = $"the character class opened at {start.ToString(CultureInfo.InvariantCulture)} is not closed";
        return false;
    }

    private static string EscapeInClass(string literal)
    {
        var escaped = new StringBuilder(literal.Length * 2);
        foreach (var c in literal)
        {
            if (c is '\\' or ']' or '[' or '^' or '-')
            {
                escaped.Append('\\');
            }

            escaped.Append(c);
        }

        return escaped.ToString();
    }
}
