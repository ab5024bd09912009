using Mesh.Client.Authorization;

namespace Mesh.Client.Tests.Authorization;

public sealed class PathNormalizerTests
{
    /// <summary>The control plane's default (MERGE_SLASHES, escaped slashes refused).</summary>
    private static readonly PathNormalizationOptions MeshDefault = new(Normalize: true, MergeSlashes: true, EscapedSlashAction.Reject);
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
    [InlineData("/a?b=/../c", "/a")]
    [InlineData("/%252e%252e/a", "/%252e%252e/a")]
    public void Normalize_Path_MatchesEnvoyNormalization(string target, string expected)
    {
        var buffer = new char[target.Length + 1];
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, MeshDefault, out var length));
        Assert.Equal(expected, new string(buffer, 0, length));
    }

    [Theory]
    [InlineData("/a%2Fb")]
    [InlineData("/a%2fb")]
    [InlineData("/a%5Cb")]
    [InlineData("/a%5c..")]
    public void Normalize_EncodedSlash_Rejected(string target)
    {
        Assert.Equal(PathNormalizationResult.EncodedSlash, PathNormalizer.Normalize(target, new char[target.Length], MeshDefault, out _));
    }

    /// <summary>Kestrel keeps a '#' in the path (and resolves the dot segments after it): refused under every setting, as Envoy does.</summary>
    [Theory]
    [InlineData("/a#frag")]
    [InlineData("/public/a#/../../admin/users")]
    [InlineData("/x#/../orders/1")]
    [InlineData("/a?b=1#c")]
    [InlineData("/%23/#")]
    public void Normalize_Fragment_RefusedUnderEverySetting(string target)
    {
        foreach (var options in new[] { MeshDefault, PathNormalizationOptions.Default, new PathNormalizationOptions(Normalize: false, MergeSlashes: false, EscapedSlashAction.Keep) })
        {
            Assert.Equal(PathNormalizationResult.Fragment, PathNormalizer.Normalize(target, new char[target.Length], options, out _));
        }
    }

    /// <summary>Envoy reads a literal '\' as '/', Kestrel does not split on it: every mode that would change it refuses it instead.</summary>
    [Theory]
    [InlineData("/a\\..\\b")]
    [InlineData("/x\\..\\public/secret")]
    [InlineData("/a\\b")]
    [InlineData("/a/b\\")]
    public void Normalize_LiteralBackslash_RefusedWhenNormalizing(string target)
    {
        foreach (var options in new[] { MeshDefault, MeshDefault with { MergeSlashes = false }, MeshDefault with { EscapedSlashes = EscapedSlashAction.Keep }, MeshDefault with { EscapedSlashes = EscapedSlashAction.Unescape } })
        {
            Assert.Equal(PathNormalizationResult.Backslash, PathNormalizer.Normalize(target, new char[target.Length], options, out _));
        }
    }

    [Theory]
    [InlineData("/a%5C..%5Cb", "/a%5C..%5Cb")]
    [InlineData("/a%5cb", "/a%5Cb")]
    public void Normalize_EncodedBackslash_RefusedWhenDecodedAndKeptOtherwise(string target, string kept)
    {
        var buffer = new char[target.Length];
        Assert.Equal(PathNormalizationResult.Backslash, PathNormalizer.Normalize(target, buffer, MeshDefault with { EscapedSlashes = EscapedSlashAction.Unescape }, out _));
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, MeshDefault with { EscapedSlashes = EscapedSlashAction.Keep }, out var length));
        Assert.Equal(kept, new string(buffer, 0, length));
    }

    [Theory]
    [InlineData("")]
    [InlineData("*")]
    [InlineData("http://host/a")]
    [InlineData("?a")]
    public void Normalize_NotOriginForm_Rejected(string target)
    {
        Assert.Equal(PathNormalizationResult.NotOriginForm, PathNormalizer.Normalize(target, new char[target.Length + 1], MeshDefault, out _));
    }

    [Theory]
    [InlineData("/a/%00")]
    [InlineData("/a%00b")]
    public void Normalize_EncodedNul_RejectedInEveryMode(string target)
    {
        foreach (var options in new PathNormalizationOptions[] { MeshDefault, new(false, false, EscapedSlashAction.Keep), new(true, true, EscapedSlashAction.Unescape) })
        {
            Assert.Equal(PathNormalizationResult.EncodedNul, PathNormalizer.Normalize(target, new char[target.Length], options, out _));
        }
    }

    [Theory]
    [InlineData("/a/../b//c/%2e/%61%2f?q", "/a/../b//c/%2e/%61%2f")]
    [InlineData("/a\\b", "/a\\b")]
    public void Normalize_NoneKeepingSlashes_PathAsReceived(string target, string expected)
    {
        var buffer = new char[target.Length];
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, new PathNormalizationOptions(false, false, EscapedSlashAction.Keep), out var length));
        Assert.Equal(expected, new string(buffer, 0, length));
    }

    [Theory]
    [InlineData("/a%2fb/..", "/", "/a/")]
    [InlineData("/a/..%2Fb", "/a/..%2Fb", "/b")]
    [InlineData("/a%2F%2Fb", "/a%2F%2Fb", "/a/b")]
    public void Normalize_EscapedSlashes_KeptOrDecodedBeforeNormalization(string target, string kept, string decoded)
    {
        var buffer = new char[target.Length];
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, MeshDefault with { EscapedSlashes = EscapedSlashAction.Keep }, out var length));
        Assert.Equal(kept, new string(buffer, 0, length));
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, MeshDefault with { EscapedSlashes = EscapedSlashAction.Unescape }, out length));
        Assert.Equal(decoded, new string(buffer, 0, length));
    }

    [Fact]
    public void Normalize_BaseWithoutMerge_KeepsDoubleSlashes()
    {
        const string target = "//a//b/./c";
        var buffer = new char[target.Length];
        Assert.Equal(PathNormalizationResult.Normalized, PathNormalizer.Normalize(target, buffer, MeshDefault with { MergeSlashes = false }, out var length));
        Assert.Equal("//a//b/c", new string(buffer, 0, length));
    }
}
