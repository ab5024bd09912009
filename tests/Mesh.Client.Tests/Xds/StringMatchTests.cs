using Mesh.Client.Xds;
using Mesh.Xds.Envoy.Config.Route.V3;
using Mesh.Xds.Envoy.Type.Matcher.V3;

namespace Mesh.Client.Tests.Xds;

/// <summary>The one StringMatcher implementation behind route headers, RBAC and SAN checks.</summary>
public sealed class StringMatchTests
{
    [Theory]
    [InlineData(nameof(StringMatchKind.Exact), "/admin", false, "/admin", true)]
    [InlineData(nameof(StringMatchKind.Exact), "/admin", false, "/Admin", false)]
    [InlineData(nameof(StringMatchKind.Exact), "/admin", true, "/ADMIN", true)]
    [InlineData(nameof(StringMatchKind.Prefix), "spiffe://", false, "spiffe://cluster.local/ns/a/sa/b", true)]
    [InlineData(nameof(StringMatchKind.Prefix), "/api/", true, "/API/x", true)]
    [InlineData(nameof(StringMatchKind.Suffix), ".css", false, "/a.CSS", false)]
    [InlineData(nameof(StringMatchKind.Suffix), ".css", true, "/a.CSS", true)]
    [InlineData(nameof(StringMatchKind.Contains), "/ns/prod/sa/", false, "spiffe://cluster.local/ns/prod/sa/x", true)]
    [InlineData(nameof(StringMatchKind.Contains), "/ns/prod/sa/", false, "spiffe://cluster.local/ns/prod-evil/sa/x", false)]
    public void Matches_EachKind_AsEnvoy(string kind, string value, bool ignoreCase, string input, bool expected) =>
        Assert.Equal(expected, new StringMatch(Enum.Parse<StringMatchKind>(kind), value, ignoreCase).Matches(input));

    [Fact]
    public void Decode_UnsupportedPattern_ErrorNamesThePath()
    {
        var errors = new List<string>();

        Assert.Null(StringMatch.Decode(new StringMatcher { IgnoreCase = true }, "x.match", errors));
        Assert.Equal("x.match: no supported match_pattern (exact, prefix, suffix, contains)", Assert.Single(errors));
    }

    /// <summary>Envoy's safe_regex is a full match: a pattern that only occurs inside the input does not match.</summary>
    [Theory]
    [InlineData("beta-[0-9]+", "beta-12", true)]
    [InlineData("beta-[0-9]+", "xbeta-12", false)]
    [InlineData("beta-[0-9]+", "beta-12x", false)]
    [InlineData("a|ab", "ab", true)]
    [InlineData("\\d+$", "a123", false)]
    [InlineData("/v[0-9]+/orders", "/V2/orders", false)]
    public void SafeRegex_MatchesTheWholeInput(string pattern, string input, bool expected)
    {
        var errors = new List<string>();
        var decoded = StringMatch.Decode(new StringMatcher { SafeRegex = new RegexMatcher { Regex = pattern }, IgnoreCase = true }, "x", errors, allowRegex: true);

        Assert.Empty(errors);
        Assert.Equal(StringMatchKind.Regex, decoded!.Kind);
        Assert.Equal(expected, decoded.Matches(input));
    }

    /// <summary>RBAC and SAN matchers (no allowRegex) still refuse safe_regex rather than apply an unreviewed pattern.</summary>
    [Fact]
    public void Decode_SafeRegexOutsideRoutes_IsRefused()
    {
        var errors = new List<string>();

        Assert.Null(StringMatch.Decode(new StringMatcher { SafeRegex = new RegexMatcher { Regex = "spiffe://.*" } }, "san", errors));
        Assert.Equal("san: no supported match_pattern (exact, prefix, suffix, contains)", Assert.Single(errors));
    }

    /// <summary>Wrapping an unbalanced pattern for a full match must not turn it into another, valid regex.</summary>
    [Theory]
    [InlineData("a)|(b")]
    [InlineData("(")]
    [InlineData("(a)\\1")]
    [InlineData("(?<=a)b")]
    public void SafeRegex_InvalidOrBacktrackingPattern_IsAnErrorNamingThePath(string pattern)
    {
        var errors = new List<string>();

        Assert.Null(StringMatch.Decode(new StringMatcher { SafeRegex = new RegexMatcher { Regex = pattern } }, "x.match", errors, allowRegex: true));
        Assert.StartsWith($"x.match.safe_regex.regex: '{pattern}'", Assert.Single(errors), StringComparison.Ordinal);
    }

    [Fact]
    public void TryDecodeHeader_PresentMatchFalse_IsAnInvertedPresenceTest()
    {
        Assert.True(StringMatch.TryDecodeHeader(new HeaderMatcher { Name = "x", PresentMatch = false }, "h", [], out var match, out var invert));
        Assert.Null(match);
        Assert.True(invert);
    }
}
