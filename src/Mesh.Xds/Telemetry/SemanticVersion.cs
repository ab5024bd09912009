using System.Reflection;

namespace Mesh.Xds.Telemetry;

/// <summary>Version strings as metric labels (the control plane's and the data plane's <c>istio_build</c>, a client's version).</summary>
internal static class SemanticVersion
{
    public const string Unknown = "unknown";

    /// <summary>
    /// The version without its semver build metadata ("1.2.3+sha" → "1.2.3"): .NET's InformationalVersion carries the
    /// commit, which would make every build its own label value.
    /// </summary>
    public static string? WithoutBuildMetadata(string? version)
    {
        var plus = version?.IndexOf('+', StringComparison.Ordinal) ?? -1;
        return plus >= 0 ? version![..plus] : version;
    }

    /// <summary>The version of <paramref name="assembly"/>'s build, as <c>istio_build</c>'s <c>tag</c> (<see cref="Unknown"/> when it has none).</summary>
    public static string Of(Assembly assembly) =>
        WithoutBuildMetadata(assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion) ?? Unknown;
}
