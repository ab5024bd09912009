using System.Text.Json;
using Mesh.Client.Authorization.Jwt;
using Mesh.Xds.Envoy.Type.Matcher.V3;

namespace Mesh.Client.Tests.Authorization.Jwt;

/// <summary>string_match.safe_regex on JWT claims (Istio's <c>.+</c> for requestPrincipals <c>*</c>): Envoy's full-match semantics, strings only.</summary>
public sealed class JwtValueMatchTests
{
    private static readonly JwtClaim Payload = JwtClaim.FromPayload(
        JsonDocument.Parse("""{"sub":"alice","empty":"","number":42,"flag":true,"line":"\n"}""").RootElement, new HashSet<string>());

    [Theory]
    [InlineData(".+", "sub", true)]
    [InlineData(".+", "empty", false)] // an empty sub is no principal
    [InlineData(".+", "number", false)] // string_match never matches a number
    [InlineData(".+", "flag", false)]
    [InlineData(".+", "line", false)] // '.' excludes '\n', as in RE2
    [InlineData("al", "sub", false)] // a full match, not a search
    [InlineData("al.*", "sub", true)]
    public void Compile_SafeRegex_FullMatchOnStringClaims(string pattern, string claim, bool expected)
    {
        var errors = new List<string>();
        var match = JwtValueMatch.Compile(Regex(pattern), "value", errors, 0);

        Assert.Empty(errors);
        Assert.Equal(expected, match.Matches(Payload.Find([claim])!));
    }

    [Theory]
    [InlineData("(", "is not a valid RE2 regex")]
    [InlineData("a(?=b)", "lookahead")] // not RE2 (and not linear-time)
    [InlineData("", "must be 1 to 1024 characters")]
    public void Compile_BadSafeRegex_ErrorNamesTheField(string pattern, string expected)
    {
        var errors = new List<string>();
        var match = JwtValueMatch.Compile(Regex(pattern), "rules.policies[p].principals[0].metadata.value", errors, 0);

        var error = Assert.Single(errors);
        Assert.StartsWith("rules.policies[p].principals[0].metadata.value.string_match.safe_regex.regex: ", error, StringComparison.Ordinal);
        Assert.Contains(expected, error, StringComparison.Ordinal);
        Assert.False(match.Matches(Payload.Find(["sub"])!));
    }

    private static ValueMatcher Regex(string pattern) => new() { StringMatch = new StringMatcher { SafeRegex = new RegexMatcher { Regex = pattern } } };
}
