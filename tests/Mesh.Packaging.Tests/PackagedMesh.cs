using System.Collections;
using System.IO.Compression;
using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Mesh.Samples.Processes;

namespace Mesh.Packaging.Tests;

[CollectionDefinition(Name)]
public sealed class PackagedMeshGroup : ICollectionFixture<PackagedMesh>
{
    public const string Name = "packaged mesh";
}

/// <summary>
/// Packs this repository into a temporary local feed, installs the control plane from it as the
/// <c>mesh-control-plane</c> .NET tool, and builds two fresh web apps outside the repository that reference
/// Mesh.Client by version from that feed: <c>frontend</c>, whose Program.cs is the README's quick start verbatim,
/// <c>orders</c>, which answers with the caller's SPIFFE ID, and <c>package-readme</c>, the quick start of the package's own
/// README. Done once for every test in the collection.
/// </summary>
public sealed partial class PackagedMesh : IAsyncLifetime
{
    /// <summary>A Release pack or a first restore on a loaded 2-core machine.</summary>
    private static readonly TimeSpan CommandTimeout = TimeSpan.FromMinutes(10);

    public PackagedMesh()
    {
        RepositoryRoot = typeof(PackagedMesh).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "RepositoryRoot").Value!;
        // Outside the repository, so no Directory.Build.props, global.json or nuget.config of ours applies to the apps.
        WorkDirectory = Path.Combine(Path.GetTempPath(), $"mesh-packages-{Guid.NewGuid():N}");
    }

    public string RepositoryRoot { get; }

    public string WorkDirectory { get; }

    public string Feed => Path.Combine(WorkDirectory, "feed");

    /// <summary>Gets the artifacts folder of the pack (git ignores <c>artifacts/</c>).</summary>
    public string BuildDirectory => Path.Combine(RepositoryRoot, "artifacts", "packaging-tests", Path.GetFileName(WorkDirectory));

    /// <summary>Gets the NuGet packages folder of every restore here, so nothing is taken from (or left in) the user's.</summary>
    public string PackagesFolder => Path.Combine(WorkDirectory, "packages");

    /// <summary>Gets the version the repository's one VersionPrefix gave both packages.</summary>
    public string Version { get; private set; } = "";

    public string ClientPackage => Path.Combine(Feed, $"Mesh.Client.{Version}.nupkg");

    public string ClientSymbols => Path.Combine(Feed, $"Mesh.Client.{Version}.snupkg");

    public string ToolPackage => Path.Combine(Feed, $"Mesh.ControlPlane.{Version}.nupkg");

    public string ToolCommand => Path.Combine(WorkDirectory, "tools", "mesh-control-plane");

    public string FrontendDirectory => Path.Combine(WorkDirectory, "frontend");

    public string FrontendDll => Path.Combine(FrontendDirectory, "bin", "Release", "net10.0", "frontend.dll");

    public string OrdersDll => Path.Combine(WorkDirectory, "orders", "bin", "Release", "net10.0", "orders.dll");

    public string PackageReadmeDll => Path.Combine(WorkDirectory, "package-readme", "bin", "Release", "net10.0", "package-readme.dll");

    public async Task InitializeAsync()
    {
        try
        {
            await PackInstallAndBuildAsync();
        }
        catch
        {
            // xunit does not dispose a fixture whose initialization failed.
            await DisposeAsync();
            throw;
        }
    }

    private async Task PackInstallAndBuildAsync()
    {
        Directory.CreateDirectory(Feed);
        Directory.CreateDirectory(PackagesFolder);
        // Guards: MSBuild and the SDK look for these files upwards from the apps; here the search ends.
        await File.WriteAllTextAsync(Path.Combine(WorkDirectory, "Directory.Build.props"), "<Project />");
        await File.WriteAllTextAsync(Path.Combine(WorkDirectory, "Directory.Build.targets"), "<Project />");
        await File.WriteAllTextAsync(Path.Combine(WorkDirectory, "Directory.Packages.props"), "<Project />");
        await File.WriteAllTextAsync(Path.Combine(WorkDirectory, "global.json"), "{}");

        // Build and restore outputs go to an artifacts folder of their own (inside the repository, so source paths map to
        // /_/ as in any clone), leaving the repository's obj/ and bin/ (and the builds the other test projects run from)
        // as they were; the repository's own NuGet cache serves the restore.
        foreach (var project in new[] { "src/Mesh.Client/Mesh.Client.csproj", "src/Mesh.ControlPlane/Mesh.ControlPlane.csproj" })
        {
            await RunAsync(
                "dotnet",
                ["pack", project, "-c", "Release", "-o", Feed, "--artifacts-path", BuildDirectory, "-nologo", "-p:UseSharedCompilation=false"],
                RepositoryRoot,
                consumer: false);
        }

        Version = ReadVersion(Directory.GetFiles(Feed, "Mesh.Client.*.nupkg").Single());

        // The consumer's own nuget.config: the local feed for Mesh.* and the normal source for everything else.
        await File.WriteAllTextAsync(Path.Combine(WorkDirectory, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{Feed}" />
                <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
              </packageSources>
              <packageSourceMapping>
                <packageSource key="local"><package pattern="Mesh.*" /></packageSource>
                <packageSource key="nuget.org"><package pattern="*" /></packageSource>
              </packageSourceMapping>
            </configuration>
            """);

        await RunAsync("dotnet", ["tool", "install", "Mesh.ControlPlane", "--version", Version, "--tool-path", Path.Combine(WorkDirectory, "tools")], WorkDirectory);
        await CreateAppAsync("frontend", ReadQuickStart("README.md"));
        await CreateAppAsync("orders", OrdersProgram);
        // The package's own README (what nuget.org shows) has a quick start too: it must compile against the package.
        await CreateAppAsync("package-readme", ReadQuickStart("src/Mesh.Client/README.md"));
    }

    public Task DisposeAsync()
    {
        foreach (var directory in new[] { WorkDirectory, BuildDirectory })
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (DirectoryNotFoundException)
            {
                // Initialization failed before making it.
            }
            catch (IOException)
            {
                // A process that has not let go of a file yet; the next clean removes it.
            }
        }

        return Task.CompletedTask;
    }

    /// <summary>Gets the first <c>csharp</c> block of the "Quick start" section of a README in the repository.</summary>
    public string ReadQuickStart(string readme)
    {
        var text = File.ReadAllText(Path.Combine(RepositoryRoot, readme)).ReplaceLineEndings("\n");
        var start = text.IndexOf("\n## Quick start\n", StringComparison.Ordinal);
        Assert.True(start >= 0, $"{readme} has no '## Quick start' section");
        var end = text.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        var section = end < 0 ? text[start..] : text[start..end];
        var block = QuickStartBlock().Match(section);
        Assert.True(block.Success, $"{readme}'s Quick start section has no ```csharp block");
        return block.Groups[1].Value;
    }

    /// <summary>Runs a command to completion (deadline <see cref="CommandTimeout"/>) and returns its output; a non-zero exit fails.</summary>
    public async Task<string> RunAsync(string fileName, IEnumerable<string> args, string workingDirectory, IReadOnlyDictionary<string, string?>? environment = null, bool consumer = true)
    {
        var (exitCode, output) = await RunToExitAsync(fileName, args, workingDirectory, environment, consumer);
        Assert.True(exitCode == 0, $"{fileName} {string.Join(' ', args)} (in {workingDirectory}) exited with {exitCode}:\n{output}");
        return output;
    }

    /// <summary>Runs a command to completion and returns its exit code and output (stdout and stderr interleaved).</summary>
    /// <param name="consumer">Whether the command runs as the user's side (own NuGet packages folder) rather than the repository's build.</param>
    public async Task<(int ExitCode, string Output)> RunToExitAsync(
        string fileName, IEnumerable<string> args, string workingDirectory, IReadOnlyDictionary<string, string?>? environment = null, bool consumer = true)
    {
        var env = Environment(consumer);
        foreach (var (key, value) in environment ?? new Dictionary<string, string?>())
        {
            env[key] = value;
        }

        await using var process = ChildProcess.Start(Path.GetFileName(fileName), fileName, args, env, workingDirectory);
        var exited = await Task.WhenAny(process.Exited, Task.Delay(CommandTimeout));
        Assert.True(exited == process.Exited, $"{fileName} {string.Join(' ', args)} did not finish within {CommandTimeout.TotalMinutes:0} min:\n{process.Output}");
        return (await process.Exited, process.Output);
    }

    /// <summary>
    /// The environment of every process started here, on top of this one's: none of the MSBuild variables this test host
    /// inherits from <c>dotnet test</c> (they would point a child build at the test run's MSBuild), none of the mesh or
    /// ASP.NET Core settings a developer may have exported while following the README, and, for the consumer's
    /// commands, a NuGet packages folder of their own, so no Mesh.Client from an earlier run can be taken from a cache.
    /// </summary>
    public Dictionary<string, string?> Environment(bool consumer = true)
    {
        var env = new Dictionary<string, string?>(StringComparer.Ordinal)
        {
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
            ["MSBUILDDISABLENODEREUSE"] = "1",
        };
        foreach (DictionaryEntry variable in System.Environment.GetEnvironmentVariables())
        {
            var name = (string)variable.Key;
            if ((name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) && name != "MSBUILDDISABLENODEREUSE")
                || name.StartsWith("Mesh__", StringComparison.OrdinalIgnoreCase)
                || name.StartsWith("ControlPlane__", StringComparison.OrdinalIgnoreCase)
                || name.StartsWith("ASPNETCORE_", StringComparison.OrdinalIgnoreCase)
                || name.StartsWith("Kestrel__", StringComparison.OrdinalIgnoreCase))
            {
                env[name] = null;
            }
        }

        if (consumer)
        {
            env["NUGET_PACKAGES"] = PackagesFolder;
        }

        return env;
    }

    private async Task CreateAppAsync(string name, string program)
    {
        await RunAsync("dotnet", ["new", "web", "-o", name, "--no-restore"], WorkDirectory);
        var directory = Path.Combine(WorkDirectory, name);
        await File.WriteAllTextAsync(Path.Combine(directory, "Program.cs"), program);
        var project = Path.Combine(directory, $"{name}.csproj");
        var csproj = XDocument.Load(project);
        csproj.Root!.Add(new XElement("ItemGroup", new XElement("PackageReference", new XAttribute("Include", "Mesh.Client"), new XAttribute("Version", Version))));
        csproj.Save(project);
        await RunAsync("dotnet", ["build", project, "-c", "Release", "-nologo", "-p:UseSharedCompilation=false"], WorkDirectory);
    }

    private static string ReadVersion(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        var nuspec = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using var stream = nuspec.Open();
        var document = XDocument.Load(stream);
        return document.Descendants().Single(e => e.Name.LocalName == "version").Value;
    }

    /// <summary>A mesh service for the quick start to call: it answers with the SPIFFE ID the caller proved over mTLS.</summary>
    private const string OrdersProgram = """
        using Mesh.Client.Security;

        var builder = WebApplication.CreateBuilder(args);
        builder.AddServiceMesh();

        var app = builder.Build();
        app.MapGet("/orders/{id:int}", (int id, HttpContext context) =>
            $"order {id} for {context.User.FindFirst(MeshClaimTypes.SpiffeId)?.Value ?? "a caller without a mesh identity"}");
        app.Run();
        """;

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex QuickStartBlock();
}
