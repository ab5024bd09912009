using System.IO.Compression;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text;
using System.Xml.Linq;

namespace Mesh.Packaging.Tests;

/// <summary>What <c>unzip -l</c> of the packages shows, and what their nuspecs, docs and symbols promise.</summary>
[Collection(PackagedMeshGroup.Name)]
public sealed class PackageContentsTests(PackagedMesh mesh)
{
    /// <summary>The portable PDB CustomDebugInformation kind that holds the SourceLink JSON.</summary>
    private static readonly Guid SourceLinkKind = new("CC110556-A091-4D38-9FEC-25AB9A351A6A");

    [Fact]
    public void ClientPackage_Files_ReadmeAssembliesAndDocsWithoutSymbols()
    {
        var files = Entries(mesh.ClientPackage);

        Assert.Contains("README.md", files);
        Assert.Contains("lib/net10.0/Mesh.Client.dll", files);
        Assert.Contains("lib/net10.0/Mesh.Client.xml", files);
        // The wire types and identity rules ship inside this package, not as a package of their own.
        Assert.Contains("lib/net10.0/Mesh.Xds.dll", files);
        Assert.DoesNotContain(files, f => f.EndsWith(".pdb", StringComparison.Ordinal));
    }

    [Fact]
    public void ClientPackage_Dependencies_AreNoProjectOfOurs()
    {
        var dependencies = Nuspec(mesh.ClientPackage).Descendants().Where(e => e.Name.LocalName == "dependency")
            .Select(e => e.Attribute("id")!.Value).ToList();

        Assert.NotEmpty(dependencies);
        Assert.DoesNotContain(dependencies, id => id.StartsWith("Mesh.", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public void ClientPackage_AssemblyReferences_AllResolveInTheConsumerApp()
    {
        // Every assembly the packaged Mesh.Client.dll and Mesh.Xds.dll reference must reach a consumer: through the
        // package's dependencies (copied to the app's output) or the shared frameworks it runs on. A dependency of
        // Mesh.Xds that Mesh.Client's package forgot to declare shows up here as a missing file.
        var app = Path.GetDirectoryName(mesh.FrontendDll)!;
        var netCore = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        var shared = Directory.GetParent(netCore)!.Parent!.FullName;
        var aspNetCore = Path.Combine(shared, "Microsoft.AspNetCore.App", Path.GetFileName(netCore));
        Assert.True(Directory.Exists(aspNetCore), $"no ASP.NET Core shared framework at {aspNetCore}");

        var libraries = ExtractLib(mesh.ClientPackage);
        var missing = new List<string>();
        foreach (var assembly in new[] { "Mesh.Client.dll", "Mesh.Xds.dll" })
        {
            using var pe = new PEReader(File.OpenRead(libraries[assembly]));
            var reader = pe.GetMetadataReader();
            foreach (var handle in reader.AssemblyReferences)
            {
                var name = reader.GetString(reader.GetAssemblyReference(handle).Name) + ".dll";
                if (!new[] { app, netCore, aspNetCore }.Any(directory => File.Exists(Path.Combine(directory, name))))
                {
                    missing.Add($"{assembly} -> {name}");
                }
            }
        }

        Assert.Empty(missing);
    }

    [Fact]
    public async Task ClientPackage_Nuspec_HasReadmeLicenseRepositoryAndDescription()
    {
        var metadata = Nuspec(mesh.ClientPackage).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
        string Value(string name) => metadata.Elements().Single(e => e.Name.LocalName == name).Value;

        Assert.Equal("README.md", Value("readme"));
        Assert.Equal("MIT", Value("license"));
        Assert.Contains("AddServiceMesh", Value("description"), StringComparison.Ordinal);
        Assert.Contains("service-mesh", Value("tags"), StringComparison.Ordinal);
        var repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("https://github.com/mesh-dotnet/mesh", repository.Attribute("url")!.Value);
        Assert.Equal(await HeadCommitAsync(), repository.Attribute("commit")!.Value);
    }

    [Fact]
    public void ClientPackage_XmlDocs_DocumentEveryPublicType()
    {
        var files = ExtractLib(mesh.ClientPackage);
        var documented = XDocument.Load(files["Mesh.Client.xml"]).Descendants("member")
            .Where(m => !string.IsNullOrWhiteSpace(m.Element("summary")?.Value))
            .Select(m => m.Attribute("name")!.Value)
            .ToHashSet(StringComparer.Ordinal);

        using var pe = new PEReader(File.OpenRead(files["Mesh.Client.dll"]));
        var reader = pe.GetMetadataReader();
        var publicTypes = reader.TypeDefinitions.Select(reader.GetTypeDefinition)
            .Where(t => (t.Attributes & System.Reflection.TypeAttributes.VisibilityMask) == System.Reflection.TypeAttributes.Public)
            .Select(t => $"T:{reader.GetString(t.Namespace)}.{reader.GetString(t.Name)}")
            .ToList();

        Assert.Contains("T:Microsoft.Extensions.Hosting.ServiceMeshHostingExtensions", publicTypes);
        Assert.DoesNotContain(publicTypes, t => !documented.Contains(t));
        Assert.Contains(documented, m => m.StartsWith("M:Microsoft.Extensions.Hosting.ServiceMeshHostingExtensions.AddServiceMesh", StringComparison.Ordinal));
        Assert.Contains("P:Mesh.Client.ControlPlaneOptions.Address", documented);
    }

    [Fact]
    public void ClientPackage_NoWireTypeIsPublic()
    {
        using var pe = new PEReader(File.OpenRead(ExtractLib(mesh.ClientPackage)["Mesh.Xds.dll"]));
        var reader = pe.GetMetadataReader();
        var publicTypes = reader.TypeDefinitions.Select(reader.GetTypeDefinition)
            .Where(t => (t.Attributes & System.Reflection.TypeAttributes.VisibilityMask) == System.Reflection.TypeAttributes.Public)
            .Select(t => $"{reader.GetString(t.Namespace)}.{reader.GetString(t.Name)}");

        // Anything public here would be API users compile against and package validation would hold us to.
        Assert.Empty(publicTypes);
    }

    [Fact]
    public async Task ClientSymbols_BothAssemblies_SourceLinkToTheBuiltCommit()
    {
        var commit = await HeadCommitAsync();
        // A clone whose remote is a hosted URL (a fork) keeps it; any other clone maps to the public repository.
        var expected = await HasHostedRemoteAsync()
            ? $"/{commit}/*"
            : $"https://raw.githubusercontent.com/mesh-dotnet/mesh/{commit}/*";
        Assert.True(File.Exists(mesh.ClientSymbols), $"{mesh.ClientSymbols} was not produced");
        using var zip = ZipFile.OpenRead(mesh.ClientSymbols);
        foreach (var pdb in new[] { "lib/net10.0/Mesh.Client.pdb", "lib/net10.0/Mesh.Xds.pdb" })
        {
            var entry = zip.GetEntry(pdb);
            Assert.True(entry is not null, $"{pdb} is not in {Path.GetFileName(mesh.ClientSymbols)}");
            using var copy = new MemoryStream();
            using (var stream = entry.Open())
            {
                stream.CopyTo(copy);
            }

            copy.Position = 0;
            using var provider = MetadataReaderProvider.FromPortablePdbStream(copy);
            var reader = provider.GetMetadataReader();
            var sourceLink = reader.GetCustomDebugInformation(EntityHandle.ModuleDefinition)
                .Select(reader.GetCustomDebugInformation)
                .Where(i => reader.GetGuid(i.Kind) == SourceLinkKind)
                .Select(i => Encoding.UTF8.GetString(reader.GetBlobBytes(i.Value)))
                .SingleOrDefault();

            Assert.NotNull(sourceLink);
            Assert.Contains("\"/_/*\":\"https://", sourceLink, StringComparison.Ordinal);
            Assert.Contains(expected, sourceLink, StringComparison.Ordinal);
            // Deterministic paths: no trace of the machine or clone that built it.
            var documents = reader.Documents.Select(d => reader.GetString(reader.GetDocument(d).Name)).ToList();
            Assert.NotEmpty(documents);
            var unmapped = documents.Where(d => !d.StartsWith("/_/", StringComparison.Ordinal)).ToList();
            Assert.True(unmapped.Count == 0, $"{pdb} names source files by build-machine paths: {string.Join(", ", unmapped)}");
        }
    }

    [Fact]
    public void ToolPackage_IsTheMeshControlPlaneDotnetTool()
    {
        var files = Entries(mesh.ToolPackage);
        var packageType = Nuspec(mesh.ToolPackage).Descendants().Single(e => e.Name.LocalName == "packageType");

        Assert.Equal("DotnetTool", packageType.Attribute("name")!.Value);
        Assert.Contains("README.md", files);
        Assert.Contains("tools/net10.0/any/Mesh.ControlPlane.dll", files);
        Assert.Contains("tools/net10.0/any/Mesh.Xds.dll", files);
        Assert.DoesNotContain(files, f => f.EndsWith("web.config", StringComparison.Ordinal));
        using var zip = ZipFile.OpenRead(mesh.ToolPackage);
        using var settings = zip.GetEntry("tools/net10.0/any/DotnetToolSettings.xml")!.Open();
        var command = XDocument.Load(settings).Descendants("Command").Single();
        Assert.Equal("mesh-control-plane", command.Attribute("Name")!.Value);
    }

    [Fact]
    public void Packages_ShareTheRepositoryVersion()
    {
        var props = XDocument.Load(Path.Combine(mesh.RepositoryRoot, "Directory.Build.props"));
        var prefix = props.Descendants("VersionPrefix").Single().Value;

        Assert.Equal(prefix, mesh.Version);
        Assert.True(File.Exists(mesh.ToolPackage), $"{mesh.ToolPackage} was not produced with version {prefix}");
    }

    private static List<string> Entries(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        return zip.Entries.Select(e => e.FullName).ToList();
    }

    private static XDocument Nuspec(string package)
    {
        using var zip = ZipFile.OpenRead(package);
        using var stream = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
        return XDocument.Load(stream);
    }

    /// <summary>Extracts the package's lib/net10.0 files once per package and returns them by file name.</summary>
    private Dictionary<string, string> ExtractLib(string package)
    {
        var target = Path.Combine(mesh.WorkDirectory, "extracted", Path.GetFileNameWithoutExtension(package));
        if (!Directory.Exists(target))
        {
            ZipFile.ExtractToDirectory(package, target);
        }

        return Directory.GetFiles(Path.Combine(target, "lib", "net10.0")).ToDictionary(f => Path.GetFileName(f), f => f, StringComparer.Ordinal);
    }

    private async Task<string> HeadCommitAsync() => (await mesh.RunAsync("git", ["rev-parse", "HEAD"], mesh.RepositoryRoot)).Trim();

    private async Task<bool> HasHostedRemoteAsync()
    {
        var (exitCode, output) = await mesh.RunToExitAsync("git", ["config", "--get", "remote.origin.url"], mesh.RepositoryRoot);
        var url = output.Trim();
        return exitCode == 0 && ((url.Contains("://", StringComparison.Ordinal) && !url.StartsWith("file:", StringComparison.Ordinal)) || url.Contains('@', StringComparison.Ordinal));
    }
}
