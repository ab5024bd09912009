namespace Mesh.ControlPlane.Telemetry;

/// <summary>Version strings as metric labels.</summary>
internal static class SemanticVersion
{
    /// <summary>
    /// The version without its semver build metadata ("1.2.3+sha" → "1.2.3"): .NET's InformationalVersion carries the
    /// commit, which would make every build its own label value.
    /// </summary>
    public static string? WithoutBuildMetadata(string? version)
    {
        var plus = version?.IndexOf('+', StringComparison.Ordinal) ?? -1;
        return plus >= 0 ? version![..plus] : version;
    }
}
