using Mesh.Xds.Telemetry;

namespace Mesh.ControlPlane.Tests.Telemetry;

/// <summary>The one rule both version labels (the control plane's own tag, a client's version) strip build metadata by.</summary>
public sealed class SemanticVersionTests
{
    [Theory]
    [InlineData("1.2.3+0123abcd", "1.2.3")]
    [InlineData("1.2.3-beta.1+sha.5", "1.2.3-beta.1")]
    [InlineData("1.2.3", "1.2.3")]
    [InlineData("+sha", "")]
    [InlineData(null, null)]
    public void WithoutBuildMetadata_StripsFromThePlus(string? version, string? expected) =>
        Assert.Equal(expected, SemanticVersion.WithoutBuildMetadata(version));
}
