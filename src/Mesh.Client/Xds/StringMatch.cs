using System.Text.RegularExpressions;
using Mesh.Xds.Envoy.Type.Matcher.V3;
using Mesh.Xds.Matching;
using EnvoyHeaderMatcher = Mesh.Xds.Envoy.Config.Route.V3.HeaderMatcher;

namespace Mesh.Client.Xds;

internal enum StringMatchKind
{
    Exact,
    Prefix,
    Suffix,
    Contains,

    /// <summary>Envoy's safe_regex: RE2 syntax, matched against the whole input; ignore_case does not apply.</summary>
    Regex,
}

/// <summary>
/// Envoy's type.matcher.v3.StringMatcher (exact, prefix, suffix, contains, safe_regex; ignore_case), the one
/// implementation used by route path and header matches, RBAC (paths, headers, principals) and upstream SAN matching.
/// Matching allocates nothing; a regex is compiled once, when the matcher is decoded.
/// </summary>
internal sealed record StringMatch(StringMatchKind Kind, string Value, bool IgnoreCase)
{
    // RE2 spelled for .NET's non-backtracking engine (linear time, as RE2), validated when the matcher is decoded.
    private readonly Regex? _regex = Kind == StringMatchKind.Regex ? FullMatch(Value) : null;

    // What every match begins with: an input without it is refused without running the regex (a route table's other
    // routes' paths mostly are).
    private readonly string _regexPrefix = Kind == StringMatchKind.Regex ? Re2Regex.LiteralPrefix(Value) : string.Empty;

    public bool Matches(ReadOnlySpan<char> input)
    {
        var comparison = IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return Kind switch
        {
            StringMatchKind.Exact => input.Equals(Value, comparison),
            StringMatchKind.Prefix => input.StartsWith(Value, comparison),
            StringMatchKind.Suffix => input.EndsWith(Value, comparison),
            StringMatchKind.Regex => input.StartsWith(_regexPrefix, StringComparison.Ordinal) && _regex!.IsMatch(input),
            _ => input.Contains(Value, comparison),
        };
    }

    public bool Equals(StringMatch? other) =>
        other is not null && Kind == other.Kind && IgnoreCase == other.IgnoreCase && string.Equals(Value, other.Value, StringComparison.Ordinal);

    public override int GetHashCode() => HashCode.Combine(Kind, Value, IgnoreCase);

    /// <summary>A safe_regex matcher; null, with an error naming <paramref name="path"/>, when the pattern is not a valid RE2-style regex.</summary>
    public static StringMatch? SafeRegex(string pattern, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(errors);
        if (Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out var error) is null)
        {
            errors.Add($"{path}: {error}");
            return null;
        }

        return new StringMatch(StringMatchKind.Regex, pattern, IgnoreCase: false);
    }

    private static Regex FullMatch(string pattern) =>
        Re2Regex.TryCompileFullMatch(pattern, ignoreCase: false, out var error)
        ?? throw new ArgumentException($"'{pattern}' is not a valid RE2 regex: {error}", nameof(pattern));

    public override string ToString() => Kind == StringMatchKind.Exact
        ? Value
        : $"{Kind.ToString().ToLowerInvariant()}:{Value}{(IgnoreCase ? " (ignore case)" : string.Empty)}";

    /// <summary>Decodes <paramref name="matcher"/>; null (and an error naming <paramref name="path"/>) for a pattern this client does not know or an invalid regex.</summary>
    /// <remarks>Routes and RBAC principal names (Istio's namespace wildcards) pass <paramref name="allowRegex"/>; other RBAC matchers and SAN checks keep refusing safe_regex until they are reviewed for it.</remarks>
    public static StringMatch? Decode(StringMatcher matcher, string path, List<string> errors, bool allowRegex = false)
    {
        ArgumentNullException.ThrowIfNull(matcher);
        ArgumentNullException.ThrowIfNull(errors);
        var match = matcher.MatchPatternCase switch
        {
            StringMatcher.MatchPatternOneofCase.Exact => new StringMatch(StringMatchKind.Exact, matcher.Exact, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Prefix => new StringMatch(StringMatchKind.Prefix, matcher.Prefix, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Suffix => new StringMatch(StringMatchKind.Suffix, matcher.Suffix, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Contains => new StringMatch(StringMatchKind.Contains, matcher.Contains, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.SafeRegex when allowRegex => SafeRegex(matcher.SafeRegex.Regex, $"{path}.safe_regex.regex", errors),
            _ => null,
        };
        if (match is null && !(allowRegex && matcher.MatchPatternCase == StringMatcher.MatchPatternOneofCase.SafeRegex))
        {
            errors.Add($"{path}: no supported match_pattern (exact, prefix, suffix, contains{(allowRegex ? ", safe_regex" : string.Empty)})");
        }

        return match;
    }

    /// <summary>
    /// Decodes the header_match_specifier of an Envoy HeaderMatcher: the value matcher (null for a presence test) and
    /// whether the result is inverted (<c>present_match: false</c> is an inverted presence test). False, with an error
    /// naming <paramref name="path"/>, when no supported specifier is set.
    /// </summary>
    public static bool TryDecodeHeader(EnvoyHeaderMatcher matcher, string path, List<string> errors, out StringMatch? match, out bool invert, bool allowRegex = false)
    {
        ArgumentNullException.ThrowIfNull(matcher);
        ArgumentNullException.ThrowIfNull(errors);
        invert = matcher.InvertMatch;
        match = null;
        switch (matcher.HeaderMatchSpecifierCase)
        {
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.ExactMatch:
                match = new StringMatch(StringMatchKind.Exact, matcher.ExactMatch, IgnoreCase: false);
                return true;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.PrefixMatch:
                match = new StringMatch(StringMatchKind.Prefix, matcher.PrefixMatch, IgnoreCase: false);
                return true;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.SuffixMatch:
                match = new StringMatch(StringMatchKind.Suffix, matcher.SuffixMatch, IgnoreCase: false);
                return true;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.SafeRegexMatch when allowRegex:
                match = SafeRegex(matcher.SafeRegexMatch.Regex, $"{path}.safe_regex_match.regex", errors);
                return match is not null;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.StringMatch:
                match = Decode(matcher.StringMatch, $"{path}.string_match", errors, allowRegex);
                return match is not null;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.PresentMatch:
                invert = matcher.InvertMatch != !matcher.PresentMatch;
                return true;
            default:
                errors.Add($"{path}: no supported header_match_specifier (exact_match, {(allowRegex ? "safe_regex_match, " : string.Empty)}prefix_match, suffix_match, present_match, string_match)");
                return false;
        }
    }
}
