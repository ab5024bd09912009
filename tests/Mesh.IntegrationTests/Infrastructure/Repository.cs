namespace Mesh.IntegrationTests.Infrastructure;

internal static class Repository
{
    /// <summary>Gets the repository root (the folder holding Mesh.Client.sln), found upward from the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    public static string App(string name) =>
        LaunchableApps.Paths.TryGetValue(name, out var path)
            ? path
            : throw new InvalidOperationException($"{name} is not a launchable app of this test project.");

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Mesh.Client.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No Mesh.Client.sln above {AppContext.BaseDirectory}.");
    }
}
