using Mesh.Client.Authorization;

namespace Mesh.Client.Tests.Authorization;

public sealed class PathNormalizerTests
{
    [Theory]
    [InlineData("/", "/")]
    [InlineData("/a/b", "/a/b")]
    [InlineData("/a/b/", "/a/b/")]
    [InlineData("//a///b", "/a/b")]
    [InlineData("/a/./b", "/a/b")]
    [InlineData("/a/b/..", "/a/")]
    [InlineData("/a/b/../c", "/a/c")]
    [InlineData("/..", "/")]
    [InlineData("/../../a", "/a")]
    [InlineData("/a/.", "/a/")]
    [InlineData("/%61%2d%2E%5f%7E", "/a-._~")]
    [InlineData("/a/%2e%2E/b", "/b")]
    [InlineData("/a%20b", "/a%20b")]
    [InlineData("/a%3fb", "/a%3Fb")]
    [InlineData("/a%zz", "/a%zz")]
    [InlineData("/a%2", "/a%2")]
    [InlineData("/a\\..\\b", "/b")]
    [InlineData("/a?b=/../c", "/a")]
    [InlineData("/a#frag", "/a")]
    [InlineData("/%252e%252e/a", "/%252e%252e/a")]
    public void Normalize_Path_MatchesEnvoyNormalization(string target, string expected)
    {
        var buffer = new char[target.Length + 1];
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, out var length));
        Assert.Equal(expected, new string(buffer, 0, length));
    }

    [Theory]
    [InlineData("/a%2Fb")]
    [InlineData("/a%2fb")]
    [InlineData("/a%5Cb")]
    [InlineData("/a%5c..")]
    public void Normalize_EncodedSlash_Rejected(string target)
    {
        Assert.Equal(PathNormalizationResult.EncodedSlash, PathNormalizer.Normalize(target, new char[target.Length], out _));
    }

    [Theory]
    [InlineData("")]
    [InlineData("*")]
    [InlineData("http://host/a")]
    [InlineData("?a")]
    public void Normalize_NotOriginForm_Rejected(string target)
    {
        Assert.Equal(PathNormalizationResult.NotOriginForm, PathNormalizer.Normalize(target, new char[target.Length + 1], out _));
    }
}
