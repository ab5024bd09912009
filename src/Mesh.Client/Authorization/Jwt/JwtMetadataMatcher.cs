using System.Globalization;
using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Type.Matcher.V3;

namespace Mesh.Client.Authorization.Jwt;

/// <summary>
/// RBAC principal <c>metadata</c> on filter <c>envoy.filters.http.jwt_authn</c>, path <c>[payload, claim…]</c>: how
/// Istio matches request principals (iss, sub), audiences, presenter and claims. Without a validated token the value is
/// absent: no value matcher matches, and <c>invert</c> flips that (Envoy's MetadataMatcher).
/// </summary>
internal sealed class JwtMetadataMatcher(string[] path, JwtValueMatch value, bool invert) : RbacMatcher
{
    public override bool UsesHttp => true;

    public override bool MatchesConnection(in AuthorizationRequest request) => true;

    public const string FilterName = "envoy.filters.http.jwt_authn";
    public const string PayloadKey = "payload";

    public override bool Matches(in AuthorizationRequest request)
    {
        var node = request.RequestPrincipal?.Payload.Find(path);
        return (node is not null && value.Matches(node)) != invert;
    }

    /// <summary>Compiles a MetadataMatcher; only the jwt_authn payload is supported (other filters' metadata does not exist here).</summary>
    public static RbacMatcher Compile(MetadataMatcher matcher, string path, List<string> errors)
    {
        ArgumentNullException.ThrowIfNull(matcher);
        if (matcher.Filter != FilterName)
        {
            errors.Add($"{path}.filter: '{matcher.Filter}' is not supported; only {FilterName} metadata (JWT claims) exists on this client");
        }

        if (matcher.Path.Count < 2 || matcher.Path[0].Key != PayloadKey || matcher.Path.Any(s => string.IsNullOrEmpty(s.Key)))
        {
            errors.Add($"{path}.path: must be [\"{PayloadKey}\", <claim>, …] with non-empty keys");
        }

        if (matcher.Value is null)
        {
            errors.Add($"{path}.value: is required");
            return new JwtMetadataMatcher([], JwtValueMatch.Never, matcher.Invert);
        }

        return new JwtMetadataMatcher([.. matcher.Path.Skip(1).Select(s => s.Key)], JwtValueMatch.Compile(matcher.Value, $"{path}.value", errors, 0), matcher.Invert);
    }
}

/// <summary>A compiled envoy ValueMatcher over a <see cref="JwtClaim"/>.</summary>
internal abstract class JwtValueMatch
{
    public static JwtValueMatch Never { get; } = new PresentValue(false);

    public abstract bool Matches(JwtClaim value);

    public static JwtValueMatch Compile(ValueMatcher matcher, string path, List<string> errors, int depth)
    {
        if (depth > 8)
        {
            errors.Add($"{path}: value matchers nest deeper than 8");
            return Never;
        }

        switch (matcher.MatchPatternCase)
        {
            case ValueMatcher.MatchPatternOneofCase.StringMatch when matcher.StringMatch.MatchPatternCase == StringMatcher.MatchPatternOneofCase.SafeRegex:
                return RegexValue.Compile(matcher.StringMatch, $"{path}.string_match.safe_regex", errors);
            case ValueMatcher.MatchPatternOneofCase.StringMatch:
                return new StringValue(RbacEngine.String(matcher.StringMatch, $"{path}.string_match", errors));
            case ValueMatcher.MatchPatternOneofCase.PresentMatch:
                return new PresentValue(matcher.PresentMatch);
            case ValueMatcher.MatchPatternOneofCase.BoolMatch:
                return new BoolValue(matcher.BoolMatch);
            case ValueMatcher.MatchPatternOneofCase.NullMatch:
                return new NullValue();
            case ValueMatcher.MatchPatternOneofCase.ListMatch when matcher.ListMatch.MatchPatternCase == ListMatcher.MatchPatternOneofCase.OneOf:
                return new ListOneOf(Compile(matcher.ListMatch.OneOf, $"{path}.list_match.one_of", errors, depth + 1));
            case ValueMatcher.MatchPatternOneofCase.OrMatch when matcher.OrMatch.ValueMatchers.Count > 0:
                return new AnyOf([.. matcher.OrMatch.ValueMatchers.Select((m, i) => Compile(m, $"{path}.or_match.value_matchers[{i.ToString(CultureInfo.InvariantCulture)}]", errors, depth + 1))]);
            default:
                errors.Add($"{path}: no supported match_pattern (string_match, present_match, bool_match, null_match, list_match.one_of, or_match)");
                return Never;
        }
    }

    private sealed class StringValue(StringMatch match) : JwtValueMatch
    {
        public override bool Matches(JwtClaim value) => value.Kind == JwtClaimKind.String && match.Matches(value.Text);
    }

    /// <summary>
    /// string_match.safe_regex on a claim (Istio's <c>.+</c> for requestPrincipals <c>*</c>): a full match, as Envoy's,
    /// run by .NET's non-backtracking engine (linear time, like RE2); '.' excludes '\n' in both. Claim matchers only.
    /// </summary>
    private sealed class RegexValue(System.Text.RegularExpressions.Regex regex) : JwtValueMatch
    {
        public override bool Matches(JwtClaim value) => value.Kind == JwtClaimKind.String && regex.IsMatch(value.Text ?? string.Empty);

        public static JwtValueMatch Compile(StringMatcher matcher, string path, List<string> errors)
        {
            var regex = Mesh.Xds.Matching.Re2Regex.TryCompileFullMatch(matcher.SafeRegex.Regex ?? string.Empty, matcher.IgnoreCase, out var error);
            if (regex is null)
            {
                errors.Add($"{path}.regex: {error}");
                return Never;
            }

            return new RegexValue(regex);
        }
    }

    private sealed class PresentValue(bool present) : JwtValueMatch
    {
        // Envoy: present_match matches any value that is set (not null).
        public override bool Matches(JwtClaim value) => present && value.Kind != JwtClaimKind.Null;
    }

    private sealed class BoolValue(bool expected) : JwtValueMatch
    {
        public override bool Matches(JwtClaim value) => value.Kind == JwtClaimKind.Bool && (value.Text == "true") == expected;
    }

    private sealed class NullValue : JwtValueMatch
    {
        public override bool Matches(JwtClaim value) => value.Kind == JwtClaimKind.Null;
    }

    private sealed class ListOneOf(JwtValueMatch inner) : JwtValueMatch
    {
        public override bool Matches(JwtClaim value)
        {
            if (value.Kind != JwtClaimKind.List)
            {
                return false;
            }

            foreach (var item in value.Items)
            {
                if (inner.Matches(item))
                {
                    return true;
                }
            }

            return false;
        }
    }

    private sealed class AnyOf(JwtValueMatch[] matchers) : JwtValueMatch
    {
        public override bool Matches(JwtClaim value)
        {
            foreach (var matcher in matchers)
            {
                if (matcher.Matches(value))
                {
                    return true;
                }
            }

            return false;
        }
    }
}
