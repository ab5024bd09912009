using Mesh.Xds.Envoy.Type.Matcher.V3;
using EnvoyHeaderMatcher = Mesh.Xds.Envoy.Config.Route.V3.HeaderMatcher;

namespace Mesh.Client.Xds;

internal enum StringMatchKind
{
    Exact,
    Prefix,
    Suffix,
    Contains,
}

/// <summary>
/// Envoy's type.matcher.v3.StringMatcher (exact, prefix, suffix, contains; ignore_case), the one implementation used
/// by route header matches, RBAC (paths, headers, principals) and upstream SAN matching. Matching allocates nothing.
/// </summary>
internal sealed record StringMatch(StringMatchKind Kind, string Value, bool IgnoreCase)
{
    public bool Matches(ReadOnlySpan<char> input)
    {
        var comparison = IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        return Kind switch
        {
            StringMatchKind.Exact => input.Equals(Value, comparison),
            StringMatchKind.Prefix => input.StartsWith(Value, comparison),
            StringMatchKind.Suffix => input.EndsWith(Value, comparison),
            _ => input.Contains(Value, comparison),
        };
    }

    public override string ToString() => Kind == StringMatchKind.Exact
        ? Value
        : $"{Kind.ToString().ToLowerInvariant()}:{Value}{(IgnoreCase ? " (ignore case)" : string.Empty)}";

    /// <summary>Decodes <paramref name="matcher"/>; null (and an error naming <paramref name="path"/>) for a pattern this client does not know, e.g. safe_regex.</summary>
    public static StringMatch? Decode(StringMatcher matcher, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(matcher);
        ArgumentNullException.ThrowIfNull(errors);
        var match = matcher.MatchPatternCase switch
        {
            StringMatcher.MatchPatternOneofCase.Exact => new StringMatch(StringMatchKind.Exact, matcher.Exact, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Prefix => new StringMatch(StringMatchKind.Prefix, matcher.Prefix, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Suffix => new StringMatch(StringMatchKind.Suffix, matcher.Suffix, matcher.IgnoreCase),
            StringMatcher.MatchPatternOneofCase.Contains => new StringMatch(StringMatchKind.Contains, matcher.Contains, matcher.IgnoreCase),
            _ => null,
        };
        if (match is null)
        {
            errors.Add($"{path}: no supported match_pattern (exact, prefix, suffix, contains)");
        }

        return match;
    }

    /// <summary>
    /// Decodes the header_match_specifier of an Envoy HeaderMatcher: the value matcher (null for a presence test) and
    /// whether the result is inverted (<c>present_match: false</c> is an inverted presence test). False, with an error
    /// naming <paramref name="path"/>, when no supported specifier is set.
    /// </summary>
    public static bool TryDecodeHeader(EnvoyHeaderMatcher matcher, string path, List<string> errors, out StringMatch? match, out bool invert)
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
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.StringMatch:
                match = Decode(matcher.StringMatch, $"{path}.string_match", errors);
                return match is not null;
            case EnvoyHeaderMatcher.HeaderMatchSpecifierOneofCase.PresentMatch:
                invert = matcher.InvertMatch != !matcher.PresentMatch;
                return true;
            default:
                errors.Add($"{path}: no supported header_match_specifier (exact_match, prefix_match, suffix_match, present_match, string_match)");
                return false;
        }
    }
}
