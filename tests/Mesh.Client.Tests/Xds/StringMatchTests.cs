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

    [Fact]
    public void TryDecodeHeader_PresentMatchFalse_IsAnInvertedPresenceTest()
    {
        Assert.True(StringMatch.TryDecodeHeader(new HeaderMatcher { Name = "x", PresentMatch = false }, "h", [], out var match, out var invert));
        Assert.Null(match);
        Assert.True(invert);
    }
}
